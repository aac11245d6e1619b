#![no_main]
//! `cargo fuzz run claims`: see `clerk_actix::fuzzing::claims` for the input and the invariants.

libfuzzer_sys::fuzz_target!(|data: &[u8]| clerk_actix::fuzzing::claims(data));
