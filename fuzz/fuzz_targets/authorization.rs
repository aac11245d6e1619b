#![no_main]
//! `cargo fuzz run authorization`: see `clerk_actix::fuzzing::authorization` for the input and the invariants.

libfuzzer_sys::fuzz_target!(|data: &[u8]| clerk_actix::fuzzing::authorization(data));
