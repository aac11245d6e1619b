#![no_main]
//! `cargo fuzz run handshake`: see `clerk_actix::fuzzing::handshake` for the input and the invariants.
libfuzzer_sys::fuzz_target!(|data: &[u8]| clerk_actix::fuzzing::handshake(data));
