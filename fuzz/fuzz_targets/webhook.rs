#![no_main]
//! `cargo fuzz run webhook`: see `clerk_actix::fuzzing::webhook` for the input and the invariants.

libfuzzer_sys::fuzz_target!(|data: &[u8]| clerk_actix::fuzzing::webhook(data));
