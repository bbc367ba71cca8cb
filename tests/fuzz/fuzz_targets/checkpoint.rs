//! Arbitrary bytes as a safetensors checkpoint (`Checkpoint::from_bytes`);
//! what is accepted must round-trip bit for bit.

#![no_main]

#[allow(dead_code)] // each target uses one of the checks
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::checkpoint(data);
});
