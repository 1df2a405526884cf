#![no_main]
//! Fuzz target: see `tfjsc::fuzzing::model_json` (the stable replay test calls the same function).

libfuzzer_sys::fuzz_target!(|data: &[u8]| tfjsc::fuzzing::model_json(data));
