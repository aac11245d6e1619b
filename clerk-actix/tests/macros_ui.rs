//! Compile-time behaviour of the macros: the exact errors (with their spans) for each mistake,
//! checked against `tests/ui/fail/*.stderr`. What must compile (`tests/ui/pass/`) is compiled by
//! `macros_pass.rs`, so trybuild only checks (no codegen of the dependencies).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
}
