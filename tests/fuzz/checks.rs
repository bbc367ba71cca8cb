//! What each fuzz target does with one input, shared by the `cargo fuzz`
//! targets (`tests/fuzz/fuzz_targets/*.rs`) and the regression tests
//! (`tests/fuzz_regressions.rs`), which replay the committed corpus and every
//! input that once crashed.
//!
//! Each function feeds the bytes to the library and panics only when the
//! library breaks one of its own promises: a parser that accepts a file must
//! hand back something consistent, and a refusal must be the typed error the
//! API documents. A panic, hang or unbounded allocation inside the library is
//! what the fuzzer is looking for.

use charlstm_cuda::corpus::{
    OneHotCorpus, Vocab, Windows, epoch_order, normalize, text_from_bytes,
};
use charlstm_cuda::{Checkpoint, Error};
use std::path::Path;

/// How a run over one input ended (for the regression tests' own assertions).
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Refused,
}

/// Header bytes covered by nothing but the checksum field (format v1).
const CRC_AT: usize = 36;
const HEADER_LEN: usize = 40;

/// The input with its prepared-file checksum recomputed, so a mutated file
/// reaches the checks behind the checksum (the fuzzer cannot forge a CRC).
pub fn with_fixed_crc(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < HEADER_LEN {
        return None;
    }
    let mut fixed = data.to_vec();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&fixed[..CRC_AT]);
    crc.update(&fixed[HEADER_LEN..]);
    fixed[CRC_AT..HEADER_LEN].copy_from_slice(&crc.finalize().to_le_bytes());
    (fixed != data).then_some(fixed)
}

/// Arbitrary bytes as a prepared corpus file (`CHLSTMOH`), as given and with
/// the checksum fixed up.
pub fn corpus_file(data: &[u8]) -> Outcome {
    let raw = prepared(data);
    let fixed = with_fixed_crc(data).map(|fixed| prepared(&fixed));
    if raw == Outcome::Accepted || fixed == Some(Outcome::Accepted) {
        Outcome::Accepted
    } else {
        Outcome::Refused
    }
}

fn prepared(data: &[u8]) -> Outcome {
    let name = Path::new("fuzz.onehot");
    let corpus = match OneHotCorpus::from_bytes(data, name) {
        Ok(c) => c,
        Err(Error::CorpusFormat { .. }) => return Outcome::Refused,
        Err(e) => panic!("a malformed corpus file must be a CorpusFormat error, got {e:?}"),
    };
    let (rows, wpr, v) = (corpus.rows(), corpus.words_per_row(), corpus.vocab().len());
    assert!(rows >= 1 && v >= 1);
    assert_eq!(wpr, v.div_ceil(64));
    assert_eq!(corpus.words().len(), rows * wpr);
    for r in 0..rows {
        assert_eq!(corpus.row(r).iter().map(|w| w.count_ones()).sum::<u32>(), 1);
        assert!((corpus.class_at(r) as usize) < v);
    }
    let text = corpus.text(0, rows);
    assert_eq!(text.chars().count(), rows);
    // The format is canonical: saving gives back the very bytes, and the
    // memory-mapped reader agrees with the in-memory one.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("c.onehot");
    corpus.save(&path).expect("an accepted corpus saves");
    assert_eq!(std::fs::read(&path).expect("read back"), data);
    let mapped = OneHotCorpus::open(&path).expect("the mapped reader accepts it too");
    assert_eq!(mapped.words(), corpus.words());
    assert_eq!(mapped.vocab(), corpus.vocab());
    assert_eq!(mapped.lowercase(), corpus.lowercase());
    assert!(OneHotCorpus::is_prepared(&path).expect("sniff"));
    Outcome::Accepted
}

/// Arbitrary bytes as a safetensors checkpoint.
pub fn checkpoint(data: &[u8]) -> Outcome {
    let name = Path::new("fuzz.safetensors");
    let ck = match Checkpoint::from_bytes(data, name) {
        Ok(ck) => ck,
        Err(Error::Checkpoint { .. }) => return Outcome::Refused,
        Err(e) => panic!("a malformed checkpoint must be a Checkpoint error, got {e:?}"),
    };
    let (v, h) = (ck.vocab.len(), ck.hyper.hidden);
    assert!(v >= 1 && ck.vocab.windows(2).all(|w| w[0] < w[1]));
    assert!(ck.hyper.validate().is_ok());
    for p in [&ck.params, &ck.rmsprop] {
        assert_eq!((p.vocab, p.hidden), (v, h));
        for (t, shape) in p.tensors().iter().zip(p.shapes()) {
            assert_eq!(t.len(), shape.iter().product::<usize>());
        }
    }
    // What was accepted writes out and reads back bit for bit (NaNs
    // included, hence the comparison of bits rather than of values; the
    // bytes themselves differ, as the metadata map's order is not fixed).
    let bytes = ck.to_bytes().expect("an accepted checkpoint serialises");
    let back = Checkpoint::from_bytes(&bytes, name).expect("its own bytes load");
    assert_eq!(
        (&back.vocab, &back.hyper, &back.state),
        (&ck.vocab, &ck.hyper, &ck.state)
    );
    let bits = |p: &charlstm_cuda::Params<f32>| -> Vec<Vec<u32>> {
        p.tensors()
            .iter()
            .map(|t| t.iter().map(|x| x.to_bits()).collect())
            .collect()
    };
    assert_eq!(bits(&back.params), bits(&ck.params));
    assert_eq!(bits(&back.rmsprop), bits(&ck.rmsprop));
    Outcome::Accepted
}

/// Arbitrary bytes through text ingestion: the first byte picks options
/// (lower-casing, window length and step), the rest is the file's contents.
pub fn text(data: &[u8]) -> Outcome {
    let Some((&opts, bytes)) = data.split_first() else {
        return Outcome::Refused;
    };
    let lowercase = opts & 1 != 0;
    let maxlen = 1 + usize::from((opts >> 1) & 7);
    let step = 1 + usize::from(opts >> 4);

    // Whatever the bytes, encoding their lossy decoding never fails or panics.
    let lossy = String::from_utf8_lossy(bytes);
    if !lossy.is_empty() {
        encoded(&lossy, lowercase, maxlen, step);
    }

    let text = match text_from_bytes(bytes.to_vec(), Path::new("fuzz.txt")) {
        Ok(t) => t,
        Err(Error::InvalidUtf8 { offset, .. }) => {
            assert!(std::str::from_utf8(bytes).is_err());
            assert!(std::str::from_utf8(&bytes[..offset]).is_ok());
            return Outcome::Refused;
        }
        Err(Error::BinaryText { offset, .. }) => {
            assert_eq!(bytes[offset], 0);
            return Outcome::Refused;
        }
        Err(Error::EmptyText { .. }) => {
            assert!(bytes.is_empty() || bytes == b"\xef\xbb\xbf");
            return Outcome::Refused;
        }
        Err(e) => panic!("text reading failed with an unexpected error {e:?}"),
    };
    assert!(!text.is_empty() && !text.contains('\r') && !text.contains('\0'));
    assert!(!text.starts_with('\u{feff}') || bytes.starts_with(b"\xef\xbb\xbf\xef\xbb\xbf"));
    encoded(&text, lowercase, maxlen, step);
    Outcome::Accepted
}

/// Encodes a non-empty text and checks the corpus against it.
fn encoded(text: &str, lowercase: bool, maxlen: usize, step: usize) {
    let norm = normalize(text, lowercase);
    let corpus = OneHotCorpus::from_text(text, lowercase).expect("a non-empty text encodes");
    assert_eq!(corpus.lowercase(), lowercase);
    assert_eq!(corpus.rows(), norm.chars().count());
    assert_eq!(corpus.vocab(), &Vocab::from_text(&norm));
    assert_eq!(corpus.text(0, corpus.rows()), norm);
    let chars = corpus.vocab().chars().to_vec();
    assert_eq!(
        &Vocab::from_chars(chars).expect("sorted, unique"),
        corpus.vocab()
    );

    // The same text with its own vocab encodes identically; with a smaller
    // vocab it is refused naming a character that is missing.
    let same = OneHotCorpus::from_text_with_vocab(text, corpus.vocab(), lowercase)
        .expect("the text's own vocab covers it");
    assert_eq!(same.words(), corpus.words());
    let v = corpus.vocab().len();
    if v > 1 {
        let fewer = Vocab::from_chars(corpus.vocab().chars()[1..].to_vec()).expect("sorted");
        match OneHotCorpus::from_text_with_vocab(text, &fewer, lowercase) {
            Err(Error::UnknownChar { ch }) => assert_eq!(ch, corpus.vocab().chars()[0]),
            other => panic!(
                "a missing symbol must be UnknownChar, got {:?}",
                other.err()
            ),
        }
    }

    match Windows::new(corpus.rows(), maxlen, step) {
        Ok(w) => {
            assert!(w.count >= 1);
            assert!(w.target(w.count - 1) < corpus.rows());
            let order = epoch_order(&w, 42, 0);
            assert_eq!(order.len(), w.count);
        }
        Err(Error::TextTooShort { chars, needed }) => {
            assert!(chars < needed && chars == corpus.rows());
        }
        Err(e) => panic!("windows over a short text must be TextTooShort, got {e:?}"),
    }
}
