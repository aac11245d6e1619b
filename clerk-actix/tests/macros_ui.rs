//! Compile-time behaviour of the macros: what compiles, and the exact errors (with their spans)
//! for each mistake, checked against `tests/ui/**/*.stderr`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
