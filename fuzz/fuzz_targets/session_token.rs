#![no_main]
//! `cargo fuzz run session_token`: see `clerk_actix::fuzzing::session_token` for the input and the invariants.

libfuzzer_sys::fuzz_target!(|data: &[u8]| clerk_actix::fuzzing::session_token(data));
