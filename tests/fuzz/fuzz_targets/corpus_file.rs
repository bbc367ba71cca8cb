//! Arbitrary bytes as a prepared corpus file (`CHLSTMOH`), as given and with
//! the header checksum recomputed so mutations reach the checks behind it.

#![no_main]

#[allow(dead_code)] // each target uses one of the checks
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::corpus_file(data);
});
