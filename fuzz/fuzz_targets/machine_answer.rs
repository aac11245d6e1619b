#![no_main]
//! `cargo fuzz run machine_answer`: see `clerk_actix::fuzzing::machine_answer` for the input and the invariants.

libfuzzer_sys::fuzz_target!(|data: &[u8]| clerk_actix::fuzzing::machine_answer(data));
