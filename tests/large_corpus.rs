//! A prepared corpus much larger than what the CPU path keeps in memory:
//! `OneHotCorpus::open` maps the file (memmap2) instead of reading it into
//! the heap, and a training step reads only its windows' rows.
//!
//! What is measured, honestly: `open` does read every page once, through the
//! mapping (checksum and row validation), so the file's pages become
//! resident as page cache (`RssFile`), which the kernel evicts under memory
//! pressure; the heap (`RssAnon`) does not grow with the file. The epoch
//! order is a heap vector of 4 bytes per window (1/6 of the file at step 3
//! with one word per row), the one allocation proportional to the corpus.
//!
//! One test in its own binary: the process' RSS is the measure, so no other
//! test may run beside it.
#![cfg(target_os = "linux")]

use std::io::{BufWriter, Write};
use std::path::Path;

use charlstm_cuda::Engine;
use charlstm_cuda::corpus::{OneHotCorpus, Windows, epoch_order};
use charlstm_cuda::cpu::CpuEngine;
use charlstm_cuda::model::{Hyper, Params, init_params};

const MIB: f64 = 1024.0 * 1024.0;

/// A field of /proc/self/status, in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .expect("a number of kB");
    kb * 1024
}

/// (heap and other anonymous memory, mapped file pages), bytes.
fn rss() -> (u64, u64) {
    (status_bytes("RssAnon:"), status_bytes("RssFile:"))
}

/// Writes a prepared corpus file of `rows` rows over 32 symbols (one u64
/// word a row) in chunks, following the format in `corpus::onehot`,
/// without ever holding it in memory.
fn write_prepared(path: &Path, rows: u64) {
    let vocab = "0123456789abcdefghijklmnopqrstuv"; // sorted, 32 symbols, 32 bytes
    let mut header = [0u8; 40];
    header[..8].copy_from_slice(b"CHLSTMOH");
    header[8..12].copy_from_slice(&1u32.to_le_bytes()); // version
    header[12..16].copy_from_slice(&1u32.to_le_bytes()); // lower-cased
    header[16..20].copy_from_slice(&32u32.to_le_bytes());
    header[20..24].copy_from_slice(&32u32.to_le_bytes());
    header[24..32].copy_from_slice(&rows.to_le_bytes());
    header[32..36].copy_from_slice(&1u32.to_le_bytes()); // words per row
    let row = |r: u64| 1u64 << ((r * 7 + r / 11) % 32);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header[..36]);
    crc.update(vocab.as_bytes()); // 32 bytes: no padding before the data
    let chunk = 1 << 20;
    let mut buf: Vec<u8> = Vec::with_capacity(chunk * 8);
    let mut r = 0;
    while r < rows {
        buf.clear();
        let end = (r + chunk as u64).min(rows);
        buf.extend((r..end).flat_map(|i| row(i).to_le_bytes()));
        crc.update(&buf);
        r = end;
    }
    header[36..].copy_from_slice(&crc.finalize().to_le_bytes());
    let mut w = BufWriter::new(std::fs::File::create(path).expect("create"));
    w.write_all(&header).unwrap();
    w.write_all(vocab.as_bytes()).unwrap();
    let mut r = 0;
    while r < rows {
        buf.clear();
        let end = (r + chunk as u64).min(rows);
        buf.extend((r..end).flat_map(|i| row(i).to_le_bytes()));
        w.write_all(&buf).unwrap();
        r = end;
    }
    w.flush().unwrap();
}

#[test]
fn a_large_prepared_corpus_is_mapped_not_read_into_memory() {
    let rows: u64 = 32 << 20; // 33.5 million characters: a 256 MiB file
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("large.ohc");
    write_prepared(&path, rows);
    let file_bytes = std::fs::metadata(&path).unwrap().len();
    let (anon0, file0) = rss();

    let corpus = OneHotCorpus::open(&path).expect("a valid prepared corpus");
    assert_eq!(corpus.rows() as u64, rows);
    let (anon1, file1) = rss();
    let opened = anon1.saturating_sub(anon0);
    println!(
        "file {:.0} MiB; open: heap +{:.1} MiB, mapped pages +{:.0} MiB (page cache)",
        file_bytes as f64 / MIB,
        opened as f64 / MIB,
        file1.saturating_sub(file0) as f64 / MIB
    );
    assert!(
        opened < 8 << 20,
        "open grew the heap by {opened} bytes for a {file_bytes}-byte file"
    );

    let hyper = Hyper {
        hidden: 8,
        batch: 64,
        ..Hyper::default()
    };
    let windows = Windows::new(corpus.rows(), hyper.maxlen, hyper.step).unwrap();
    let order = epoch_order(&windows, hyper.seed, 0);
    let (anon2, _) = rss();
    let order_bytes = (windows.count * 4) as u64;
    println!(
        "epoch order: {} windows, heap +{:.1} MiB (4 bytes a window = {:.1} MiB)",
        windows.count,
        anon2.saturating_sub(anon1) as f64 / MIB,
        order_bytes as f64 / MIB
    );
    assert!(anon2.saturating_sub(anon1) < order_bytes + (8 << 20));

    // One CPU training step reads its 64 windows' rows from the mapping.
    let v = corpus.vocab().len();
    let params = init_params(v, hyper.hidden, hyper.seed);
    let ms = Params::zeros(v, hyper.hidden);
    let mut engine = CpuEngine::new(&corpus, &hyper, params, ms).unwrap();
    let loss = engine.train_batch(&order[..hyper.batch]).unwrap();
    let (anon3, _) = rss();
    println!(
        "one training step: loss {loss:.3}, heap +{:.1} MiB",
        anon3.saturating_sub(anon2) as f64 / MIB
    );
    assert!(loss.is_finite());
    assert!(anon3.saturating_sub(anon2) < 8 << 20);
    assert!(
        anon3.saturating_sub(anon0) < order_bytes + (16 << 20),
        "the heap grew with the corpus"
    );
}
