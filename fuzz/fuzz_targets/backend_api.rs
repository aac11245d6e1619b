#![no_main]
//! `cargo fuzz run backend_api`: see `clerk_actix::fuzzing::backend_api` for the input and the invariants.

libfuzzer_sys::fuzz_target!(|data: &[u8]| clerk_actix::fuzzing::backend_api(data));
