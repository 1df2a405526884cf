#![no_main]
//! Fuzz target: see `tfjsc::fuzzing::legacy_graph` (the stable replay test calls the same function).

libfuzzer_sys::fuzz_target!(|data: &[u8]| tfjsc::fuzzing::legacy_graph(data));
