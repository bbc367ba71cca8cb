//! File reading and writing shared by the corpus, checkpoint, weight and
//! config formats.
//!
//! Writing: [`write_atomically`] (temp file, fsync, rename).
//!
//! Reading: every user file is opened once, through [`Input`], and read
//! through a bound: a regular file's size is checked before anything is
//! read, and a pipe, FIFO or device (`<(cat t.txt)`, `/dev/zero`) is read
//! in chunks, each checked as it arrives (a text's NUL bytes and invalid
//! UTF-8, a safetensors header's length) and stopped at the format's limit.
//! A format's magic is sniffed from the same buffer, so nothing is read
//! twice and a stream loses no bytes. Only regular files are mapped.

use crate::error::{Error, Result};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// The most a text corpus may hold: 2^32 - 1 bytes, so that its characters
/// (at most one a byte) fit the `u32` window starts of [`crate::Windows`].
pub const TEXT_LIMIT: u64 = u32::MAX as u64;

/// The most a `--config` TOML file may hold.
pub const CONFIG_LIMIT: u64 = 1 << 20;

/// The most a weight file (`.npz`) or a bench result may hold when the
/// format does not say its own size: 16 GiB, above any model the kernels
/// run (4H x max(V, H) < 2^32 f32 values a matrix).
pub const WEIGHTS_LIMIT: u64 = 16 << 30;

/// The largest safetensors header the `safetensors` crate accepts.
const SAFETENSORS_HEADER_LIMIT: u64 = 100_000_000;

/// How much is read per chunk from a stream (a pipe, a FIFO, a device).
const CHUNK: usize = 1 << 20;

/// What a kind of input may hold and what to do when it holds more.
#[derive(Clone, Copy, Debug)]
pub struct Limit {
    /// The most bytes read.
    pub bytes: u64,
    /// What the file is meant to be, for the error ("a text corpus").
    pub what: &'static str,
    /// The hint when it is larger.
    pub fix: &'static str,
}

impl Limit {
    /// A text corpus: [`TEXT_LIMIT`].
    pub const TEXT: Limit = Limit {
        bytes: TEXT_LIMIT,
        what: "a text corpus",
        fix: "the window starts are u32: split the text into files under 4 GiB, or train on a part of it",
    };
}

/// A user file opened once: what was read of it so far, and whether it is
/// a regular file (its size known, so it can be mapped).
pub struct Input {
    path: PathBuf,
    file: File,
    regular_len: Option<u64>,
    buf: Vec<u8>,
    eof: bool,
}

impl Input {
    /// Opens `path` (a FIFO blocks here until a writer opens it, as `cat` does).
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            return Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a directory"),
            ));
        }
        Ok(Input {
            path: path.to_path_buf(),
            file,
            regular_len: meta.is_file().then_some(meta.len()),
            buf: Vec::new(),
            eof: false,
        })
    }

    /// The path it was opened as.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file (to map a regular one).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The size of a regular file; `None` for a pipe, FIFO or device.
    pub fn regular_len(&self) -> Option<u64> {
        self.regular_len
    }

    /// The first `n` bytes (fewer at the end of the file), read into the
    /// buffer that [`Input::read_to_end`] continues from.
    pub fn peek(&mut self, n: usize) -> Result<&[u8]> {
        while self.buf.len() < n && !self.eof {
            self.read_chunk(n - self.buf.len())?;
        }
        Ok(&self.buf[..n.min(self.buf.len())])
    }

    /// Reads one chunk of at most `want` bytes; sets `eof` at the end.
    fn read_chunk(&mut self, want: usize) -> Result<()> {
        let start = self.buf.len();
        self.buf.resize(start + want, 0);
        let got = loop {
            match self.file.read(&mut self.buf[start..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(start);
                    return Err(Error::io(&self.path, e));
                }
            }
        };
        self.buf.truncate(start + got);
        self.eof = got == 0;
        Ok(())
    }

    /// Reads the rest of the file, at most `limit.bytes` in all.
    ///
    /// `check` sees everything read so far after each chunk: it fails fast
    /// on content that cannot be the format, or returns the total size the
    /// format says the file has (reading then stops there, so a stream that
    /// never ends is cut where the format ends, and the format's own parser
    /// reports a short or overlong file).
    pub fn read_to_end(
        mut self,
        limit: Limit,
        mut check: impl FnMut(&[u8]) -> Result<Option<u64>>,
    ) -> Result<Vec<u8>> {
        let too_large = |path: &Path| Error::InputTooLarge {
            path: path.into(),
            what: limit.what,
            limit: limit.bytes,
            fix: limit.fix,
        };
        let mut end = limit.bytes;
        if let Some(len) = self.regular_len {
            if len > limit.bytes {
                return Err(too_large(&self.path));
            }
            self.buf
                .reserve_exact((len as usize).saturating_sub(self.buf.len()));
        }
        if let Some(total) = check(&self.buf)? {
            end = end.min(total);
        }
        while !self.eof && (self.buf.len() as u64) < end {
            let want = (end - self.buf.len() as u64).min(CHUNK as u64) as usize;
            self.read_chunk(want)?;
            if let Some(total) = check(&self.buf)? {
                end = end.min(total);
            }
        }
        if !self.eof && end >= limit.bytes {
            // At the limit: one more byte says whether the file goes on.
            self.read_chunk(1)?;
            if !self.eof {
                return Err(too_large(&self.path));
            }
        }
        Ok(self.buf)
    }
}

/// Reads a whole user file once, bounded by `limit` (no format check).
pub fn read_bounded(path: &Path, limit: Limit) -> Result<Vec<u8>> {
    Input::open(path)?.read_to_end(limit, |_| Ok(None))
}

/// Reads a safetensors file once: its first 8 bytes give the header's
/// length, the header the data's; reading stops one byte past the end the
/// header gives (or at the header's end when it is unreadable, or right
/// after the length when that is over the `safetensors` crate's limit), so
/// `/dev/zero` or an endless pipe cannot make it read forever and the
/// parser still sees a truncated or overlong file as such.
pub fn read_safetensors(path: &Path) -> Result<Vec<u8>> {
    let limit = Limit {
        bytes: WEIGHTS_LIMIT,
        what: "a safetensors file",
        fix: "pass a checkpoint or weight file of at most 16 GiB (larger models do not fit the kernels)",
    };
    Input::open(path)?.read_to_end(limit, |b| Ok(safetensors_end(b)))
}

/// Where a safetensors file read so far says it ends (plus one byte, to
/// see trailing data); `None` while the header is incomplete.
fn safetensors_end(b: &[u8]) -> Option<u64> {
    let n = u64::from_le_bytes(b.get(..8)?.try_into().ok()?);
    if n > SAFETENSORS_HEADER_LIMIT {
        return Some(8);
    }
    let header_end = 8 + n;
    let header = b.get(8..header_end as usize)?;
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(header) else {
        return Some(header_end);
    };
    let data = map
        .iter()
        .filter(|(k, _)| k.as_str() != "__metadata__")
        .filter_map(|(_, v)| v.get("data_offsets")?.get(1)?.as_u64())
        .max()
        .unwrap_or(0);
    Some(header_end.saturating_add(data).saturating_add(1))
}

/// The string metadata of a regular safetensors file, from its header
/// alone; `None` for anything else (not regular, unreadable, not safetensors).
pub fn safetensors_metadata(path: &Path) -> Option<serde_json::Map<String, serde_json::Value>> {
    let mut input = Input::open(path).ok()?;
    input.regular_len()?;
    let n = u64::from_le_bytes(input.peek(8).ok()?.try_into().ok()?);
    if n > SAFETENSORS_HEADER_LIMIT {
        return None;
    }
    let header = input.peek(8 + n as usize).ok()?.get(8..)?.to_vec();
    match serde_json::from_slice(&header).ok()? {
        serde_json::Value::Object(mut map) => match map.remove("__metadata__")? {
            serde_json::Value::Object(meta) => Some(meta),
            _ => None,
        },
        _ => None,
    }
}

/// Writes `path` so that readers see either the old file or the complete new
/// one, never a torn write: a temp file in the same directory, fsynced, then
/// renamed over the target. Readers that mapped the old file keep its inode.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".charlstm-").suffix(".tmp");
    #[cfg(unix)]
    {
        // NamedTempFile defaults to 0600; an output file should get the usual umask mode.
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    let mut tmp = builder.tempfile_in(dir).map_err(|e| Error::io(dir, e))?;
    let written = (|| {
        let mut w = BufWriter::new(tmp.as_file_mut());
        write(&mut w)?;
        w.flush()?;
        drop(w);
        tmp.as_file().sync_all()
    })();
    written.map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    // Makes the rename itself durable; not every platform can open a directory.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn an_endless_stream_stops_at_the_limit() {
        let limit = Limit {
            bytes: 1000,
            what: "a test input",
            fix: "-",
        };
        let e = read_bounded(Path::new("/dev/zero"), limit).unwrap_err();
        assert!(matches!(e, Error::InputTooLarge { limit: 1000, .. }), "{e}");
        // A check that gives the format's end stops the read there.
        let b = Input::open(Path::new("/dev/zero"))
            .unwrap()
            .read_to_end(limit, |_| Ok(Some(10)))
            .unwrap();
        assert_eq!(b.len(), 10);
    }

    #[test]
    fn a_regular_file_over_the_limit_is_refused_and_one_at_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, [7u8; 100]).unwrap();
        let at = |bytes| Limit {
            bytes,
            what: "a test input",
            fix: "-",
        };
        assert!(read_bounded(&p, at(99)).is_err());
        assert_eq!(read_bounded(&p, at(100)).unwrap(), [7u8; 100]);
        let mut input = Input::open(&p).unwrap();
        assert_eq!(input.peek(3).unwrap(), [7, 7, 7]);
        // What was peeked is not read again: the whole file, once.
        assert_eq!(input.read_to_end(at(100), |_| Ok(None)).unwrap().len(), 100);
    }

    #[test]
    fn safetensors_end_follows_the_header() {
        let header =
            br#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"x":"y"}}"#;
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        assert_eq!(safetensors_end(&b), None);
        b.extend_from_slice(header);
        assert_eq!(safetensors_end(&b), Some(8 + header.len() as u64 + 8 + 1));
        assert_eq!(safetensors_end(&[0; 8]), Some(8));
        assert_eq!(safetensors_end(&u64::MAX.to_le_bytes()), Some(8));
    }
}
