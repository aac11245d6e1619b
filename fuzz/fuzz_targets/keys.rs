#![no_main]
//! `cargo fuzz run keys`: see `clerk_actix::fuzzing::keys` for the input and the invariants.

libfuzzer_sys::fuzz_target!(|data: &[u8]| clerk_actix::fuzzing::keys(data));
