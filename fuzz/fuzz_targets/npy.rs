#![no_main]
//! Fuzz target: see `tfjsc::fuzzing::npy` (the stable replay test calls the same function).

libfuzzer_sys::fuzz_target!(|data: &[u8]| tfjsc::fuzzing::npy(data));
