//! The bit-packed one-hot stream and its file format.
//!
//! Row `r` is the one-hot code of character `r` of the text: bit `v` of the
//! row is set for vocabulary symbol `v` (bit `v % 64` of word `v / 64`), and
//! exactly one bit is set. Rows are `ceil(V/64)` little-endian `u64` words,
//! stored back to back, so the whole stream can be uploaded to a device as is.
//!
//! # Prepared file, format version 1
//!
//! All integers little-endian; offsets in bytes.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `b"CHLSTMOH"` |
//! | 8 | 4 | `version`, u32 = 1 |
//! | 12 | 4 | `flags`, u32: bit 0 = the text was lower-cased; other bits 0 |
//! | 16 | 4 | `vocab_len` V, u32 >= 1 |
//! | 20 | 4 | `vocab_bytes`, u32: byte length of the vocab |
//! | 24 | 8 | `rows`, u64 >= 1 |
//! | 32 | 4 | `words_per_row`, u32 = ceil(V/64) |
//! | 36 | 4 | `crc32` (CRC-32/ISO-HDLC, `crc32fast`) of every byte of the file except these four |
//! | 40 | `vocab_bytes` | the vocab: its V chars as UTF-8, concatenated, sorted, unique |
//! | | 0..7 | zero padding up to the next multiple of 8 |
//! | `data_offset` | rows x words_per_row x 8 | the rows |
//!
//! The file ends right after the data. The 8-aligned data offset plus the
//! page-aligned mapping let the rows be viewed as `&[u64]` without a copy.
//! A vocab symbol need not occur in the rows (a corpus may be encoded with a
//! larger, shared vocab); every row's bit must lie inside the vocab.

use super::text::text_from_input;
use super::{Vocab, normalize, read_text};
use crate::error::{Error, Result};
use crate::io::{Input, Limit, write_atomically};
use memmap2::Mmap;
use std::borrow::Cow;
use std::fs::File;
use std::io::Read;
use std::path::Path;

const MAGIC: &[u8; 8] = b"CHLSTMOH";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 40;
const CRC_AT: usize = 36;
const FLAG_LOWERCASE: u32 = 1;

/// Where the words live: encoded in memory, or a validated mapping of a prepared file.
enum Storage {
    Owned(Vec<u64>),
    Mapped {
        map: Mmap,
        offset: usize,
        words: usize,
    },
}

/// What a corpus file holds: a prepared corpus, or text (not yet normalised).
pub enum CorpusFile {
    /// A prepared corpus (mapped when the file is a regular one).
    Prepared(OneHotCorpus),
    /// The text of a text file, decoded as [`super::read_text`] does.
    Text(String),
}

impl CorpusFile {
    /// Opens `path` once and tells a prepared corpus from text by its magic,
    /// sniffed from the same read: a pipe or FIFO (`<(cat t.txt)`) loses
    /// no bytes, and both kinds are read within their bounds (see
    /// [`crate::io`]).
    pub fn read(path: &Path) -> Result<Self> {
        let mut input = Input::open(path)?;
        if input.peek(MAGIC.len())? != MAGIC {
            return text_from_input(input).map(CorpusFile::Text);
        }
        OneHotCorpus::from_input(input).map(CorpusFile::Prepared)
    }
}

/// One row per character, one bit per vocabulary symbol, `ceil(V/64)` words per row.
pub struct OneHotCorpus {
    vocab: Vocab,
    lowercase: bool,
    rows: usize,
    words_per_row: usize,
    storage: Storage,
}

impl OneHotCorpus {
    /// Encodes a text held in memory (normalised here according to `lowercase`).
    pub fn from_text(text: &str, lowercase: bool) -> Result<Self> {
        let text = normalize(text, lowercase);
        let vocab = Vocab::from_text(&text);
        Self::encode(&text, vocab).map(|c| OneHotCorpus { lowercase, ..c })
    }

    /// Encodes a text with a given vocabulary (a checkpoint's, to evaluate it
    /// on another text); a character outside it is an [`Error::UnknownChar`].
    pub fn from_text_with_vocab(text: &str, vocab: &Vocab, lowercase: bool) -> Result<Self> {
        let text = normalize(text, lowercase);
        if let Some(ch) = text.chars().find(|&c| vocab.index_of(c).is_none()) {
            return Err(Error::UnknownChar { ch });
        }
        Self::encode(&text, vocab.clone()).map(|c| OneHotCorpus { lowercase, ..c })
    }

    /// Encodes normalised text whose every character is in `vocab`.
    fn encode(text: &str, vocab: Vocab) -> Result<Self> {
        if vocab.is_empty() || text.is_empty() {
            return Err(Error::InvalidArgument {
                name: "text",
                what: "the text is empty".into(),
            });
        }
        let wpr = vocab.words_per_row();
        let rows = text.chars().count();
        let too_big = || Error::InvalidArgument {
            name: "text",
            what: format!("{rows} characters x {wpr} words per row do not fit in memory"),
        };
        let mut words = vec![0u64; rows.checked_mul(wpr).ok_or_else(too_big)?];
        let mut ascii = [0u32; 128];
        for (i, &c) in vocab.chars().iter().enumerate() {
            if let Some(slot) = ascii.get_mut(c as usize) {
                *slot = i as u32;
            }
        }
        let index = |c: char| match ascii.get(c as usize) {
            Some(&v) => v,
            None => vocab
                .index_of(c)
                .expect("callers check every character is in the vocab"),
        };
        if wpr == 1 {
            for (w, c) in words.iter_mut().zip(text.chars()) {
                *w = 1 << index(c);
            }
        } else {
            for (row, c) in words.chunks_exact_mut(wpr).zip(text.chars()) {
                let v = index(c) as usize;
                row[v / 64] = 1 << (v % 64);
            }
        }
        Ok(OneHotCorpus {
            vocab,
            lowercase: false,
            rows,
            words_per_row: wpr,
            storage: Storage::Owned(words),
        })
    }

    /// Opens a text file or a prepared corpus file (sniffed by its magic).
    ///
    /// A prepared file was normalised when it was made: its own lower-case
    /// flag wins over `lowercase` (see [`OneHotCorpus::lowercase`]).
    ///
    /// The file is opened and read once ([`CorpusFile::read`]).
    pub fn load(path: &Path, lowercase: bool) -> Result<Self> {
        match CorpusFile::read(path)? {
            CorpusFile::Prepared(c) => Ok(c),
            CorpusFile::Text(text) => Self::from_text(&text, lowercase),
        }
    }

    /// Whether `path` starts with the prepared corpus' magic (else it is text).
    ///
    /// This opens the file on its own: a pipe read after it has lost its
    /// first bytes. [`CorpusFile::read`] sniffs and reads in one go.
    pub fn is_prepared(path: &Path) -> Result<bool> {
        let mut head = Vec::with_capacity(MAGIC.len());
        File::open(path)
            .and_then(|f| f.take(MAGIC.len() as u64).read_to_end(&mut head))
            .map_err(|e| Error::io(path, e))?;
        Ok(head == MAGIC)
    }

    /// Reads a text file, encodes it, writes the prepared file and maps it back.
    pub fn prepare(text_path: &Path, out_path: &Path, lowercase: bool) -> Result<Self> {
        Self::from_text(&read_text(text_path)?, lowercase)?.save(out_path)?;
        Self::open(out_path)
    }

    /// Opens a prepared corpus file with `memmap2`, validating header and checksum.
    ///
    /// Every field is checked, sizes before anything is allocated, then the
    /// checksum, then the vocab and that each row has exactly one valid bit.
    /// A pipe, FIFO or device is read once into memory instead (it cannot
    /// be mapped), as far as its header says the file goes.
    pub fn open(path: &Path) -> Result<Self> {
        Self::from_input(Input::open(path)?)
    }

    /// [`OneHotCorpus::open`] of an opened file: a regular one is mapped, a
    /// stream read as far as its header says the file goes (plus a byte,
    /// so trailing data is still reported) and parsed in memory.
    fn from_input(input: Input) -> Result<Self> {
        let path = input.path().to_path_buf();
        if input.regular_len().is_some() {
            return Self::from_file(input.file(), &path);
        }
        let limit = Limit {
            bytes: u64::MAX,
            what: "a prepared corpus",
            fix: "pass the prepared file itself rather than a stream",
        };
        let bytes =
            input.read_to_end(limit, |b| Ok(prepared_len(b).map(|n| n.saturating_add(1))))?;
        Self::from_bytes(&bytes, &path)
    }

    /// [`OneHotCorpus::open`] of a regular file already open.
    fn from_file(file: &File, path: &Path) -> Result<Self> {
        let bad = format_error(path);
        // SAFETY: the mapping is read-only (memmap2 maps an empty file as an
        // empty slice). Mutating the file while it is mapped would be undefined
        // behaviour; this crate only ever replaces prepared files by rename,
        // which leaves a mapped inode untouched.
        let map = unsafe { Mmap::map(file) }.map_err(|e| Error::io(path, e))?;
        let layout = check_layout(&map).map_err(&bad)?;
        let (offset, words) = (layout.data_offset, layout.rows * layout.words_per_row);
        let storage = if cfg!(target_endian = "little") {
            // Page-aligned map + 8-aligned offset; checked here so `words()` cannot panic.
            if let Err(e) = bytemuck::try_cast_slice::<u8, u64>(&map[offset..]) {
                return Err(bad(format!("data cannot be viewed as u64 words ({e:?})")));
            }
            Storage::Mapped { map, offset, words }
        } else {
            Storage::Owned(le_words(&map[offset..]))
        };
        Self::checked(layout, storage, path)
    }

    /// Parses a prepared corpus file held in memory (copying the rows), with
    /// the same checks as [`OneHotCorpus::open`]; `path` only names the
    /// source in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let bad = format_error(path);
        let layout = check_layout(bytes).map_err(bad)?;
        // `check_layout` proved the data runs from the offset to the end, in whole words.
        let words = le_words(&bytes[layout.data_offset..]);
        Self::checked(layout, Storage::Owned(words), path)
    }

    /// The corpus `layout` describes, over `storage`, once its rows pass `check_rows`.
    fn checked(layout: Layout, storage: Storage, path: &Path) -> Result<Self> {
        let corpus = OneHotCorpus {
            vocab: layout.vocab,
            lowercase: layout.lowercase,
            rows: layout.rows,
            words_per_row: layout.words_per_row,
            storage,
        };
        let (words, wpr, v) = (corpus.words(), corpus.words_per_row, corpus.vocab.len());
        check_rows(words, wpr, v).map_err(format_error(path))?;
        Ok(corpus)
    }

    /// Writes the prepared corpus file (temp file + rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let vocab: String = self.vocab.chars().iter().collect();
        let data = le_bytes(self.words());
        let pad = vocab.len().next_multiple_of(8) - vocab.len();
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&VERSION.to_le_bytes());
        let flags = if self.lowercase { FLAG_LOWERCASE } else { 0 };
        header[12..16].copy_from_slice(&flags.to_le_bytes());
        header[16..20].copy_from_slice(&u32_field("vocab_len", self.vocab.len())?.to_le_bytes());
        header[20..24].copy_from_slice(&u32_field("vocab_bytes", vocab.len())?.to_le_bytes());
        header[24..32].copy_from_slice(&(self.rows as u64).to_le_bytes());
        header[32..36]
            .copy_from_slice(&u32_field("words_per_row", self.words_per_row)?.to_le_bytes());
        let mut crc = crc32fast::Hasher::new();
        for part in [&header[..CRC_AT], vocab.as_bytes(), &[0; 8][..pad], &data] {
            crc.update(part);
        }
        header[CRC_AT..].copy_from_slice(&crc.finalize().to_le_bytes());
        write_atomically(path, |w| {
            for part in [&header[..], vocab.as_bytes(), &[0; 8][..pad], &data] {
                w.write_all(part)?;
            }
            Ok(())
        })
    }

    /// The vocabulary.
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }
    /// Whether the text was lower-cased.
    pub fn lowercase(&self) -> bool {
        self.lowercase
    }
    /// Number of rows (characters).
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// `u64` words per row, `ceil(V/64)`.
    pub fn words_per_row(&self) -> usize {
        self.words_per_row
    }
    /// The whole packed stream, `rows * words_per_row` words.
    pub fn words(&self) -> &[u64] {
        match &self.storage {
            Storage::Owned(words) => words,
            // `open` checked that this range is 8-aligned and in bounds.
            Storage::Mapped { map, offset, words } => {
                bytemuck::cast_slice(&map[*offset..*offset + words * 8])
            }
        }
    }
    /// The words of row `i`; panics when `i >= rows()`, like slice indexing.
    pub fn row(&self, i: usize) -> &[u64] {
        &self.words()[i * self.words_per_row..(i + 1) * self.words_per_row]
    }
    /// Class index (the set bit) of row `i`.
    #[inline]
    pub fn class_at(&self, i: usize) -> u32 {
        first_bit(self.row(i))
    }
    /// Decodes rows `start..start + len` back to text (e.g. a seed); stops at the last row.
    pub fn text(&self, start: usize, len: usize) -> String {
        let end = start.saturating_add(len).min(self.rows);
        let chars = self.vocab.chars();
        (start.min(end)..end)
            .map(|r| {
                chars
                    .get(self.class_at(r) as usize)
                    .copied()
                    .unwrap_or('\u{fffd}')
            })
            .collect()
    }
}

/// A header field that must fit in u32.
fn u32_field(name: &'static str, value: usize) -> Result<u32> {
    u32::try_from(value).map_err(|_| Error::InvalidArgument {
        name,
        what: format!("{value} does not fit the file format's 32 bits"),
    })
}

/// The words as little-endian bytes, borrowed where the host already is little-endian.
fn le_bytes(words: &[u64]) -> Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        Cow::Borrowed(bytemuck::cast_slice(words))
    } else {
        Cow::Owned(words.iter().flat_map(|w| w.to_le_bytes()).collect())
    }
}

/// The error of a prepared corpus file at `path` that `what` is wrong with.
fn format_error(path: &Path) -> impl Fn(String) -> Error + '_ {
    move |what| Error::CorpusFormat {
        path: path.into(),
        what,
    }
}

/// Little-endian bytes as words (`b` holds whole words).
fn le_words(b: &[u8]) -> Vec<u64> {
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    b.chunks_exact(8).map(word).collect()
}

/// What the header and vocab say, once checked against the file's length and checksum.
struct Layout {
    lowercase: bool,
    vocab: Vocab,
    rows: usize,
    words_per_row: usize,
    data_offset: usize,
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The length of the prepared file whose header `b` starts with; `None`
/// while fewer than [`HEADER_LEN`] bytes are there. Fields that overflow
/// give the header's length: reading stops and [`check_layout`] names them.
fn prepared_len(b: &[u8]) -> Option<u64> {
    let header = b.get(..HEADER_LEN)?;
    let vocab_bytes = u64::from(le_u32(header, 20));
    let rows = u64::from_le_bytes(header[24..32].try_into().expect("8 bytes"));
    let wpr = u64::from(le_u32(header, 32));
    let data_offset = (HEADER_LEN as u64 + vocab_bytes).next_multiple_of(8);
    let end = rows
        .checked_mul(wpr)
        .and_then(|w| w.checked_mul(8))
        .and_then(|d| d.checked_add(data_offset));
    Some(end.unwrap_or(HEADER_LEN as u64))
}

/// Checks everything but the rows' bits; the error names the field.
fn check_layout(b: &[u8]) -> Result<Layout, String> {
    let len = b.len() as u64;
    let n = b.len().min(MAGIC.len());
    if b[..n] != MAGIC[..n] {
        return Err("not a charlstm corpus file (wrong magic; expected \"CHLSTMOH\")".into());
    }
    if b.len() < HEADER_LEN {
        return Err(format!(
            "truncated header: the file has {len} bytes, the header alone needs {HEADER_LEN}"
        ));
    }
    let version = le_u32(b, 8);
    if version != VERSION {
        return Err(format!(
            "unsupported format version {version} (this build reads version {VERSION})"
        ));
    }
    let flags = le_u32(b, 12);
    if flags & !FLAG_LOWERCASE != 0 {
        return Err(format!("flags: unknown bits set (0x{flags:08x})"));
    }
    let v = u64::from(le_u32(b, 16));
    let vocab_bytes = u64::from(le_u32(b, 20));
    let rows = u64::from_le_bytes(b[24..32].try_into().expect("8 bytes"));
    let wpr = u64::from(le_u32(b, 32));
    if v == 0 {
        return Err("vocab_len: 0, but a corpus has at least one symbol".into());
    }
    if vocab_bytes < v || vocab_bytes > 4 * v {
        return Err(format!(
            "vocab_bytes: {vocab_bytes} bytes cannot hold {v} chars of 1 to 4 bytes each"
        ));
    }
    if wpr != v.div_ceil(64) {
        return Err(format!(
            "words_per_row: {wpr}, but {v} symbols need {}",
            v.div_ceil(64)
        ));
    }
    if rows == 0 {
        return Err("rows: 0, but a corpus has at least one character".into());
    }
    let vocab_end = HEADER_LEN as u64 + vocab_bytes;
    if vocab_end > len {
        return Err(format!(
            "truncated vocab: it needs bytes up to {vocab_end}, the file has {len}"
        ));
    }
    let data_offset = vocab_end.next_multiple_of(8);
    let data_bytes = rows.checked_mul(wpr).and_then(|w| w.checked_mul(8));
    let end = data_bytes.and_then(|d| d.checked_add(data_offset));
    let Some((data_bytes, end)) = data_bytes.zip(end) else {
        return Err(format!(
            "rows: {rows} rows of {wpr} words is more than any file can hold"
        ));
    };
    if end > len {
        return Err(format!(
            "truncated data: {rows} rows need {data_bytes} bytes from offset {data_offset}, \
             the file ends {} bytes short",
            end - len
        ));
    }
    if end < len {
        return Err(format!(
            "trailing garbage: {} bytes after the end of the data",
            len - end
        ));
    }
    // From here on every size is bounded by the file's length, so fits usize.
    let (vocab_end, data_offset) = (vocab_end as usize, data_offset as usize);
    let stored = le_u32(b, CRC_AT);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&b[..CRC_AT]);
    crc.update(&b[HEADER_LEN..]);
    let actual = crc.finalize();
    if stored != actual {
        return Err(format!(
            "checksum mismatch: the header says {stored:08x}, the contents hash to {actual:08x}"
        ));
    }
    if b[vocab_end..data_offset].iter().any(|&x| x != 0) {
        return Err("padding after the vocab is not zero".into());
    }
    let vocab = std::str::from_utf8(&b[HEADER_LEN..vocab_end])
        .map_err(|e| format!("vocab: not valid UTF-8 (at vocab byte {})", e.valid_up_to()))?;
    let chars: Vec<char> = vocab.chars().collect();
    if chars.len() as u64 != v {
        return Err(format!(
            "vocab: {} chars, but vocab_len says {v}",
            chars.len()
        ));
    }
    let vocab = Vocab::from_chars(chars).map_err(|e| match e {
        Error::InvalidArgument { what, .. } => format!("vocab: {what}"),
        other => format!("vocab: {other}"),
    })?;
    Ok(Layout {
        lowercase: flags & FLAG_LOWERCASE != 0,
        vocab,
        rows: rows as usize,
        words_per_row: wpr as usize,
        data_offset,
    })
}

/// Every row has exactly one bit set, and it names a vocab symbol.
fn check_rows(words: &[u64], wpr: usize, v: usize) -> Result<(), String> {
    for (r, row) in words.chunks_exact(wpr).enumerate() {
        let ones: u32 = row.iter().map(|w| w.count_ones()).sum();
        if ones != 1 {
            return Err(format!(
                "row {r}: {ones} bits set, but every row has exactly one"
            ));
        }
        let bit = first_bit(row) as usize;
        if bit >= v {
            return Err(format!(
                "row {r}: bit {bit} set, but the vocab has only {v} symbols"
            ));
        }
    }
    Ok(())
}

/// Index of the lowest set bit of a row (`64 * words` when none is).
#[inline]
fn first_bit(row: &[u64]) -> u32 {
    let mut base = 0;
    for &w in row {
        if w != 0 {
            return base + w.trailing_zeros();
        }
        base += 64;
    }
    base
}
