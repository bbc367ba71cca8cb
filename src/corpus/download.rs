//! The Keras example's corpus (Nietzsche, 600,901 bytes), fetched once into a
//! cache directory and verified by size and SHA-256 on every use.

use crate::error::{Error, Result};
use crate::io::write_atomically;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where Keras' `get_file` downloads the corpus from.
pub const NIETZSCHE_URL: &str = "https://s3.amazonaws.com/text-datasets/nietzsche.txt";
/// Size of the corpus in bytes.
pub const NIETZSCHE_LEN: u64 = 600_901;
/// SHA-256 of the corpus, lower-case hex.
pub const NIETZSCHE_SHA256: &str =
    "23cf69874ab69d3d256099ab530ea4be24d47d9675b673bcc67cbcd6298ec647";
/// Environment variable that replaces [`NIETZSCHE_URL`] (a mirror, or a test server).
pub const URL_ENV: &str = "CHARLSTM_NIETZSCHE_URL";
/// Environment variable naming the cache directory when none is passed.
pub const CACHE_ENV: &str = "CHARLSTM_CACHE_DIR";

/// A 0.6 MB file: a minute is generous even on a slow link, and bounds a stalled server.
const TIMEOUT: Duration = Duration::from_secs(60);

/// The path of the verified corpus, downloading it first when the cache lacks it.
///
/// The cache is `cache_dir`, else `$CHARLSTM_CACHE_DIR`, else the platform's
/// cache directory; the file is `<cache>/charlstm-cuda/nietzsche.txt`.
pub fn nietzsche(cache_dir: Option<&Path>) -> Result<PathBuf> {
    let url = std::env::var(URL_ENV).unwrap_or_else(|_| NIETZSCHE_URL.into());
    nietzsche_from(&url, cache_dir)
}

/// [`nietzsche`] from an explicit URL (the file must still match the known size and hash).
pub fn nietzsche_from(url: &str, cache_dir: Option<&Path>) -> Result<PathBuf> {
    let dir = cache_root(cache_dir)?.join("charlstm-cuda");
    let path = dir.join("nietzsche.txt");
    // A cached file that fails verification (an interrupted older tool, a
    // corrupted disk) is simply fetched again.
    if let Ok(bytes) = std::fs::read(&path)
        && verify(&bytes).is_ok()
    {
        return Ok(path);
    }
    let bytes = fetch(url)?;
    verify(&bytes).map_err(|what| Error::Download {
        url: url.into(),
        what,
    })?;
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    write_atomically(&path, |w| w.write_all(&bytes))?;
    Ok(path)
}

fn cache_root(cache_dir: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = cache_dir {
        return Ok(dir.into());
    }
    if let Some(dir) = std::env::var_os(CACHE_ENV).filter(|d| !d.is_empty()) {
        return Ok(dir.into());
    }
    dirs::cache_dir().ok_or_else(|| Error::InvalidArgument {
        name: CACHE_ENV,
        what: "this platform has no cache directory; set CHARLSTM_CACHE_DIR".into(),
    })
}

fn fetch(url: &str) -> Result<Vec<u8>> {
    let fail = |what: String| Error::Download {
        url: url.into(),
        what,
    };
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .user_agent(concat!("charlstm-cuda/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent();
    let mut response = agent.get(url).call().map_err(|e| fail(describe(e)))?;
    // Twice the expected size still lets `verify` report the actual length, and
    // keeps a wrong URL from filling memory.
    response
        .body_mut()
        .with_config()
        .limit(2 * NIETZSCHE_LEN)
        .read_to_vec()
        .map_err(|e| fail(describe(e)))
}

fn describe(e: ureq::Error) -> String {
    match e {
        ureq::Error::StatusCode(code) => format!("the server answered HTTP {code}"),
        ureq::Error::BodyExceedsLimit(n) => format!("the file is larger than {n} bytes"),
        ureq::Error::Io(io) => io.to_string(),
        ureq::Error::Timeout(_) => format!("no complete answer within {} s", TIMEOUT.as_secs()),
        other => other.to_string(),
    }
}

/// Size, then hash; the message names expected and actual.
fn verify(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() as u64 != NIETZSCHE_LEN {
        return Err(format!(
            "expected {NIETZSCHE_LEN} bytes, got {}",
            bytes.len()
        ));
    }
    let actual = sha256_hex(bytes);
    if actual != NIETZSCHE_SHA256 {
        return Err(format!(
            "checksum mismatch: expected sha256 {NIETZSCHE_SHA256}, got {actual}"
        ));
    }
    Ok(())
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
