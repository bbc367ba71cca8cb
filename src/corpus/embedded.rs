//! The Keras example's corpus, in the binary: the exact 600,901 bytes of
//! `nietzsche.txt` that Keras' `get_file` downloads (public domain), raw
//! deflate at level 9 (234 KB), so the default job needs no network and no
//! cache. `tests/corpus.rs` checks the inflated bytes' length and SHA-256.
//!
//! Made with `python3 -c "import zlib,sys; c=zlib.compressobj(9,zlib.DEFLATED,-15,9);
//! sys.stdout.buffer.write(c.compress(open('nietzsche.txt','rb').read())+c.flush())"
//! > src/corpus/nietzsche.txt.deflate`.

use std::io::Read;

/// Size of the text in bytes.
pub const NIETZSCHE_LEN: usize = 600_901;
/// SHA-256 of the text, lower-case hex.
pub const NIETZSCHE_SHA256: &str =
    "23cf69874ab69d3d256099ab530ea4be24d47d9675b673bcc67cbcd6298ec647";
/// The name runs and messages give the embedded text (`runs/nietzsche` is
/// the default output directory, as for a `--corpus nietzsche.txt`).
pub const NIETZSCHE_NAME: &str = "nietzsche.txt";

const DEFLATED: &[u8] = include_bytes!("nietzsche.txt.deflate");

/// The text, inflated (about 3 ms).
pub fn nietzsche() -> String {
    let mut text = String::with_capacity(NIETZSCHE_LEN);
    flate2::read::DeflateDecoder::new(DEFLATED)
        .read_to_string(&mut text)
        .expect("the embedded corpus is valid deflate and UTF-8 (tests/corpus.rs)");
    text
}
