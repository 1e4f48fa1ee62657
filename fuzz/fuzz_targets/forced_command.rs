#![no_main]
//! cargo fuzz target `forced_command`; the properties are in `fuzz/harness.rs`.

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::forced_command(data));
