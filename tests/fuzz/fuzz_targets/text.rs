//! Arbitrary bytes through text ingestion: UTF-8 and NUL checks, BOM and
//! newline handling, lower-casing, vocab, one-hot encoding and windows.

#![no_main]

#[allow(dead_code)] // each target uses one of the checks
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::text(data);
});
