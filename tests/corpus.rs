//! The corpus pipeline: text reading, vocab, the prepared one-hot file and
//! every way it can be malformed, windows and the epoch order.

mod common;
use common::nietzsche_file;

use charlstm_cuda::Error;
use charlstm_cuda::corpus::{
    OneHotCorpus, Vocab, Windows, epoch_order, read_text, text_from_bytes,
};
use std::path::{Path, PathBuf};
use std::time::Instant;

const TEXT: &str = "The quick brown Fox.\nJumps over the lazy dog; THE END.\n";

fn saved(text: &str, lowercase: bool) -> (tempfile::TempDir, PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.onehot");
    OneHotCorpus::from_text(text, lowercase)
        .unwrap()
        .save(&path)
        .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (dir, path, bytes)
}

/// Writes `bytes` (optionally with the checksum recomputed) and returns the open error's message.
fn open_error(path: &Path, bytes: &[u8], fix_crc: bool) -> String {
    let mut bytes = bytes.to_vec();
    if fix_crc && bytes.len() >= 40 {
        let mut h = crc32fast::Hasher::new();
        h.update(&bytes[..36]);
        h.update(&bytes[40..]);
        bytes[36..40].copy_from_slice(&h.finalize().to_le_bytes());
    }
    std::fs::write(path, &bytes).unwrap();
    match OneHotCorpus::open(path) {
        Err(e @ Error::CorpusFormat { .. }) => e.to_string(),
        Err(e) => panic!("expected CorpusFormat, got {e:?}"),
        Ok(_) => panic!("a malformed file ({} bytes) was accepted", bytes.len()),
    }
}

fn assert_has(msg: &str, needle: &str) {
    assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
}

/// Header field offsets of format v1.
fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn data_offset(b: &[u8]) -> usize {
    (40 + u32::from_le_bytes(b[20..24].try_into().unwrap()) as usize).next_multiple_of(8)
}

#[test]
fn round_trip_preserves_everything() {
    let mem = OneHotCorpus::from_text(TEXT, true).unwrap();
    let (_dir, path, _) = saved(TEXT, true);
    let disk = OneHotCorpus::open(&path).unwrap();
    assert_eq!(disk.vocab(), mem.vocab());
    assert_eq!(disk.rows(), TEXT.chars().count());
    assert_eq!(disk.words(), mem.words());
    assert!(disk.lowercase());
    assert_eq!(disk.words_per_row(), 1);
    assert_eq!(disk.text(0, disk.rows()), TEXT.to_lowercase());
    assert_eq!(disk.text(4, 5), "quick");
    assert_eq!(disk.text(disk.rows() - 2, 100), ".\n");
    for i in 0..disk.rows() {
        assert_eq!(disk.row(i).iter().map(|w| w.count_ones()).sum::<u32>(), 1);
        assert_eq!(disk.class_at(i), mem.class_at(i));
    }
}

#[test]
fn lowercase_on_and_off() {
    let on = OneHotCorpus::from_text("AbC", true).unwrap();
    assert_eq!(on.vocab().chars(), &['a', 'b', 'c']);
    let off = OneHotCorpus::from_text("AbC", false).unwrap();
    assert_eq!(off.vocab().chars(), &['A', 'C', 'b']);
    assert!(!off.lowercase());
    // A prepared file keeps its own flag whatever `load` is asked.
    let (_dir, path, _) = saved("AbC", false);
    let loaded = OneHotCorpus::load(&path, true).unwrap();
    assert!(!loaded.lowercase());
    assert_eq!(loaded.text(0, 3), "AbC");
}

#[test]
fn load_sniffs_text_and_prepared_files() {
    let dir = tempfile::tempdir().unwrap();
    let txt = dir.path().join("t.txt");
    std::fs::write(&txt, "Hello\r\nWorld\r").unwrap();
    let from_text = OneHotCorpus::load(&txt, true).unwrap();
    assert_eq!(from_text.text(0, 100), "hello\nworld\n");
    let prepared = dir.path().join("t.onehot");
    let p = OneHotCorpus::prepare(&txt, &prepared, true).unwrap();
    assert_eq!(p.words(), from_text.words());
    assert_eq!(
        OneHotCorpus::load(&prepared, false).unwrap().words(),
        p.words()
    );
}

#[test]
fn large_vocab_uses_several_words_per_row() {
    let mut chars: Vec<char> = (0x21u32..0x7f).filter_map(char::from_u32).collect();
    chars.extend((0x3b1u32..0x3c9).filter_map(char::from_u32)); // Greek lower case
    chars.extend((0x4e00u32..0x4e00 + 82).filter_map(char::from_u32)); // CJK
    chars.truncate(200);
    assert_eq!(chars.len(), 200);
    let text: String = chars.iter().rev().chain(chars.iter()).collect();
    let (_dir, path, _) = saved(&text, false);
    let c = OneHotCorpus::open(&path).unwrap();
    assert_eq!(c.vocab().len(), 200);
    assert_eq!(c.words_per_row(), 4);
    assert_eq!(c.words().len(), 400 * 4);
    assert_eq!(c.text(0, 400), text);
    assert_eq!(c.class_at(0), 199);
    assert_eq!(c.row(0), &[0, 0, 0, 1 << (199 - 192)]);
}

#[test]
fn rejects_wrong_magic_and_version_and_flags() {
    let (_dir, path, bytes) = saved(TEXT, true);
    let mut b = bytes.clone();
    b[..8].copy_from_slice(b"CHLSTMXX");
    assert_has(&open_error(&path, &b, true), "not a charlstm corpus file");
    assert_has(
        &open_error(&path, b"hello", false),
        "not a charlstm corpus file",
    );
    let mut b = bytes.clone();
    put_u32(&mut b, 8, 2);
    assert_has(&open_error(&path, &b, true), "unsupported format version 2");
    let mut b = bytes.clone();
    put_u32(&mut b, 12, 0b101);
    assert_has(&open_error(&path, &b, true), "flags");
}

#[test]
fn rejects_truncation_anywhere() {
    let (_dir, path, bytes) = saved(TEXT, true);
    let off = data_offset(&bytes);
    let cases = [
        (0, "truncated header"),
        (5, "truncated header"),
        (8, "truncated header"),
        (39, "truncated header"),
        (40, "truncated vocab"),
        (45, "truncated vocab"),
        (off, "truncated data"),
        (off + 13, "truncated data"),
        (bytes.len() - 1, "truncated data"),
    ];
    for (len, what) in cases {
        assert_has(&open_error(&path, &bytes[..len], false), what);
    }
}

#[test]
fn rejects_corruption_and_trailing_garbage() {
    let (_dir, path, bytes) = saved(TEXT, true);
    let off = data_offset(&bytes);
    let mut b = bytes.clone();
    b[off + 8 * 7] ^= 0x10;
    assert_has(&open_error(&path, &b, false), "checksum mismatch");
    let mut b = bytes.clone();
    b.extend_from_slice(&[0; 8]);
    assert_has(&open_error(&path, &b, true), "trailing garbage: 8 bytes");
    let mut b = bytes.clone();
    b.push(b'x');
    assert_has(&open_error(&path, &b, false), "trailing garbage: 1 bytes");
}

#[test]
fn huge_row_counts_fail_before_allocating() {
    let (_dir, path, bytes) = saved(TEXT, true);
    let mut b = bytes.clone();
    b[24..32].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert_has(&open_error(&path, &b, true), "truncated data");
    b[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_has(&open_error(&path, &b, true), "rows");
    b[24..32].copy_from_slice(&0u64.to_le_bytes());
    assert_has(&open_error(&path, &b, true), "rows: 0");
}

#[test]
fn rejects_bad_vocab_fields() {
    let (_dir, path, bytes) = saved("abcd", false);
    let vocab_at = 40;
    let mut b = bytes.clone();
    b.swap(vocab_at, vocab_at + 1);
    assert_has(&open_error(&path, &b, true), "sorted and unique");
    let mut b = bytes.clone();
    b[vocab_at + 1] = b'a';
    assert_has(&open_error(&path, &b, true), "occurs twice");
    let mut b = bytes.clone();
    b[vocab_at + 2] = 0xff;
    assert_has(&open_error(&path, &b, true), "vocab: not valid UTF-8");
    let mut b = bytes.clone();
    put_u32(&mut b, 16, 3);
    assert_has(
        &open_error(&path, &b, true),
        "vocab: 4 chars, but vocab_len says 3",
    );
    let mut b = bytes.clone();
    put_u32(&mut b, 16, 0);
    assert_has(&open_error(&path, &b, true), "vocab_len: 0");
    let mut b = bytes.clone();
    put_u32(&mut b, 20, 17);
    assert_has(&open_error(&path, &b, true), "vocab_bytes");
    let mut b = bytes.clone();
    put_u32(&mut b, 32, 2);
    assert_has(
        &open_error(&path, &b, true),
        "words_per_row: 2, but 4 symbols need 1",
    );
    let mut b = bytes.clone();
    b[44] = 1; // padding after the 4 vocab bytes
    assert_has(&open_error(&path, &b, true), "padding");
}

#[test]
fn rejects_rows_without_exactly_one_valid_bit() {
    let (_dir, path, bytes) = saved("abcd", false);
    let row3 = data_offset(&bytes) + 3 * 8;
    let mut b = bytes.clone();
    b[row3] |= 0b1; // row 3 is 'd' = bit 3; add bit 0
    assert_has(&open_error(&path, &b, true), "row 3: 2 bits set");
    let mut b = bytes.clone();
    b[row3..row3 + 8].fill(0);
    assert_has(&open_error(&path, &b, true), "row 3: 0 bits set");
    let mut b = bytes.clone();
    b[row3..row3 + 8].copy_from_slice(&(1u64 << 63).to_le_bytes());
    assert_has(
        &open_error(&path, &b, true),
        "row 3: bit 63 set, but the vocab has only 4",
    );
}

#[test]
fn vocab_from_chars_validates() {
    assert!(Vocab::from_chars(vec!['a', 'b', 'é']).is_ok());
    for (chars, what) in [
        (vec![], "empty"),
        (vec!['b', 'a'], "'a' comes after 'b'"),
        (vec!['a', 'a'], "twice"),
    ] {
        let msg = Vocab::from_chars(chars).unwrap_err().to_string();
        assert_has(&msg, what);
    }
    assert_eq!(
        Vocab::from_text("héllo wörld").chars(),
        &[' ', 'd', 'h', 'l', 'o', 'r', 'w', 'é', 'ö']
    );
    assert!(Vocab::from_text("").is_empty());
}

/// `len(range(0, n - maxlen, step))` as Python computes it.
fn python_range_len(n: usize, maxlen: usize, step: usize) -> usize {
    let stop = n as i64 - maxlen as i64;
    (0..)
        .map(|i| i * step as i64)
        .take_while(|&s| s < stop)
        .count()
}

#[test]
fn window_count_matches_python() {
    for n in [1usize, 2, 3, 10, 61, 62, 63, 64, 100, 601, 1000] {
        for maxlen in [1usize, 2, 5, 60] {
            for step in [1usize, 2, 3, 7, 60, 1000] {
                let want = python_range_len(n, maxlen, step);
                match Windows::new(n, maxlen, step) {
                    Ok(w) => {
                        assert_eq!(w.count, want, "n={n} maxlen={maxlen} step={step}");
                        assert!(w.target(w.count - 1) < n);
                        assert_eq!(w.start(2), 2 * step);
                    }
                    Err(Error::TextTooShort { chars, needed }) => {
                        assert_eq!((want, chars, needed), (0, n, maxlen + 1));
                    }
                    Err(e) => panic!("n={n} maxlen={maxlen} step={step}: {e}"),
                }
            }
        }
    }
    assert!(matches!(
        Windows::new(10, 0, 1),
        Err(Error::InvalidArgument { name: "maxlen", .. })
    ));
    assert!(matches!(
        Windows::new(10, 3, 0),
        Err(Error::InvalidArgument { name: "step", .. })
    ));
    if usize::BITS > 32 {
        assert!(matches!(
            Windows::new(1 << 33, 60, 3),
            Err(Error::InvalidArgument { .. })
        ));
    }
}

#[test]
fn epoch_order_is_a_deterministic_permutation() {
    let w = Windows::new(1000, 60, 3).unwrap();
    let a = epoch_order(&w, 42, 0);
    assert_eq!(a, epoch_order(&w, 42, 0));
    assert_ne!(a, epoch_order(&w, 42, 1));
    assert_ne!(a, epoch_order(&w, 43, 0));
    let mut sorted = a.clone();
    sorted.sort_unstable();
    let starts: Vec<u32> = (0..w.count).map(|i| w.start(i) as u32).collect();
    assert_eq!(sorted, starts);
    assert_ne!(a, starts, "a shuffle of 314 elements left them in order");
    let one = Windows::new(61, 60, 3).unwrap();
    assert_eq!(epoch_order(&one, 1, 5), vec![0]);
}

#[test]
fn read_text_names_each_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let p = file("bad.txt", b"abc\xffdef");
    let e = read_text(&p).unwrap_err();
    assert!(matches!(e, Error::InvalidUtf8 { offset: 3, .. }), "{e:?}");
    assert_has(
        &e.to_string(),
        "not valid UTF-8 (first bad byte at offset 3)",
    );
    let e = read_text(&file("empty.txt", b"")).unwrap_err();
    assert!(matches!(e, Error::EmptyText { .. }), "{e:?}");
    assert_has(&e.to_string(), "empty");
    let e = read_text(&file("bom.txt", b"\xef\xbb\xbf")).unwrap_err();
    assert!(matches!(e, Error::EmptyText { .. }), "{e:?}");
    let e = read_text(&file("bin.dat", b"ab\0c\xff")).unwrap_err();
    assert!(matches!(e, Error::BinaryText { offset: 2, .. }), "{e:?}");
    assert_has(&e.to_string(), "binary");
    let e = read_text(&dir.path().join("missing.txt")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    assert_has(&e.to_string(), "missing.txt");
    assert_has(&e.hint(), "existing file");
    let ok = read_text(&file("ok.txt", "\u{feff}Ünï\r\ncode\r".as_bytes())).unwrap();
    assert_eq!(ok, "Ünï\ncode\n");
    let e = OneHotCorpus::load(&dir.path().join("missing.txt"), true)
        .err()
        .unwrap();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
}

#[test]
fn nietzsche_counts_and_prepare_time() {
    let Some(txt) = nietzsche_file() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nietzsche.onehot");
    let t = Instant::now();
    let c = OneHotCorpus::prepare(&txt, &out, true).unwrap();
    let elapsed = t.elapsed();
    eprintln!(
        "prepare(nietzsche.txt): {:.1} ms",
        elapsed.as_secs_f64() * 1e3
    );
    assert_eq!(std::fs::metadata(&txt).unwrap().len(), 600_901); // bytes, some multi-byte
    assert_eq!(c.rows(), 600_893); // chars
    assert_eq!(c.vocab().len(), 57);
    assert_eq!(c.words_per_row(), 1);
    assert_eq!(Windows::new(c.rows(), 60, 3).unwrap().count, 200_278);
    let text = std::fs::read_to_string(&txt).unwrap().to_lowercase();
    assert_eq!(c.text(0, 60), text.chars().take(60).collect::<String>());
    assert_eq!(c.text(0, c.rows()), text);
    assert_eq!(
        std::fs::metadata(&out).unwrap().len(),
        40 + 64 + 600_893 * 8
    );
}

#[test]
fn from_bytes_agrees_with_open_and_names_the_source() {
    let (_dir, path, bytes) = saved(TEXT, true);
    let disk = OneHotCorpus::open(&path).unwrap();
    let mem = OneHotCorpus::from_bytes(&bytes, Path::new("mem.onehot")).unwrap();
    assert_eq!(mem.words(), disk.words());
    assert_eq!(mem.vocab(), disk.vocab());
    assert_eq!(mem.lowercase(), disk.lowercase());
    assert_eq!(mem.rows(), disk.rows());
    let mut bad = bytes.clone();
    bad[HEADER_END] ^= 1;
    match OneHotCorpus::from_bytes(&bad, Path::new("mem.onehot")) {
        Err(e @ Error::CorpusFormat { .. }) => {
            let msg = e.to_string();
            assert_has(&msg, "mem.onehot");
            assert_has(&msg, "checksum");
        }
        other => panic!("expected CorpusFormat, got {:?}", other.err()),
    }
}

#[test]
fn text_from_bytes_is_read_text_without_the_file() {
    let name = Path::new("mem.txt");
    assert_eq!(
        text_from_bytes(b"\xef\xbb\xbfa\r\nb\rc".to_vec(), name).unwrap(),
        "a\nb\nc"
    );
    match text_from_bytes(b"ab\xffc".to_vec(), name) {
        Err(Error::InvalidUtf8 { path, offset: 2 }) => assert_eq!(path, name),
        other => panic!("expected InvalidUtf8 at 2, got {other:?}"),
    }
    assert!(matches!(
        text_from_bytes(b"a\0".to_vec(), name),
        Err(Error::BinaryText { offset: 1, .. })
    ));
    assert!(matches!(
        text_from_bytes(b"\xef\xbb\xbf".to_vec(), name),
        Err(Error::EmptyText { .. })
    ));
}

/// First byte after the fixed header (the vocab's first byte).
const HEADER_END: usize = 40;

/// The built-in text is the exact file Keras downloads: its length and
/// SHA-256, and (where the file is here) the same bytes, so a run without
/// `--corpus` trains on what `--corpus nietzsche.txt` does.
#[test]
fn the_built_in_corpus_is_the_keras_file() {
    use charlstm_cuda::corpus::embedded::{NIETZSCHE_LEN, NIETZSCHE_SHA256, nietzsche};
    use sha2::{Digest, Sha256};
    let text = nietzsche();
    assert_eq!(text.len(), NIETZSCHE_LEN);
    let hex: String = Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(hex, NIETZSCHE_SHA256);
    let c = OneHotCorpus::from_text(&text, true).unwrap();
    assert_eq!((c.rows(), c.vocab().len()), (600_893, 57));
    let Some(txt) = nietzsche_file() else {
        eprintln!(
            "SKIPPED (the comparison with the file): ../shared/corpus/nietzsche.txt not found"
        );
        return;
    };
    assert_eq!(std::fs::read(txt).unwrap(), text.as_bytes());
}
