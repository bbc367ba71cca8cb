//! Stream-mode training on the CPU against the same loop in PyTorch
//! (issue 18: "ours >= 2x faster"), in one run: this crate's stream step
//! (`Engine::queue_train_stream` on the CPU engine) timed batch by batch on
//! the first batches of the first epoch's streams (offset 0), then
//! `scripts/bench_stream.py` on the same batches (nn.LSTM carrying its
//! state, one-hot input, Linear head, mean cross-entropy over B*L,
//! RMSprop lr 0.01 rho 0.9 eps 1e-7), and the ratio of the medians.
//!
//! ```text
//! cargo run --release --example stream_bench -- [--corpus FILE] [--batches N]
//!     [--seq-len L] [--python PYTHON]
//! ```
//!
//! Defaults: `../shared/corpus/nietzsche.txt`, 20 timed batches after 2
//! untimed ones, L = 60, H = 128, B = 128, the training side of a 0.1
//! validation split; the Python is `--python`, else `CHARLSTM_PYTHON`,
//! else `.venv-interop/bin/python`. Both sides use every core (torch's
//! default threads, our engine's); the loss is read every step on both.
//!
//! With `CHARLSTM_LOCKSTEP=1` only our side runs, each batch (the untimed
//! ones too) waiting for a line on stdin and printing `step <seconds>`:
//! `scripts/lockstep.py` then alternates it batch by batch with
//! `scripts/bench_stream.py`, which takes the same handshake.

#[path = "shared/lockstep.rs"]
mod lockstep;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use charlstm_cuda::corpus::Split;
use charlstm_cuda::cpu::CpuEngine;
use charlstm_cuda::model::init_params;
use charlstm_cuda::{Engine, Error, Hyper, OneHotCorpus, Params, Result, StreamBatch, Streams};
use lockstep::Lockstep;

const WARMUP: usize = 2;

fn main() -> Result<()> {
    let mut corpus_path = PathBuf::from("../shared/corpus/nietzsche.txt");
    let (mut batches, mut seq_len) = (20usize, 60usize);
    let mut python = std::env::var_os("CHARLSTM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".venv-interop/bin/python"));
    let bad = |what: String| Error::InvalidArgument {
        name: "stream_bench",
        what,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| bad(format!("{flag} needs a value")))?;
        let number = |v: &str| v.parse::<usize>().map_err(|_| bad(format!("{flag} {v}")));
        match flag.as_str() {
            "--corpus" => corpus_path = value.into(),
            "--batches" => batches = number(&value)?.max(1),
            "--seq-len" => seq_len = number(&value)?,
            "--python" => python = value.into(),
            other => {
                return Err(bad(format!(
                    "unknown flag {other}: use --corpus, --batches, --seq-len or --python"
                )));
            }
        }
    }
    let corpus = OneHotCorpus::load(&corpus_path, true)?;
    let hyper = Hyper::default();
    let split = Split::new(corpus.rows(), 0.1)?;
    let streams = Streams::new(split.train_rows, hyper.batch, seq_len)?;
    if streams.batches < WARMUP + batches {
        return Err(bad(format!(
            "streams of {} characters hold {} batches; asked for {}",
            streams.length,
            streams.batches,
            WARMUP + batches
        )));
    }
    let params = init_params(corpus.vocab().len(), hyper.hidden, hyper.seed);
    let zeros = Params::zeros(params.vocab, params.hidden);
    let mut engine = CpuEngine::new(&corpus, &hyper, params, zeros)?;
    let mut times = Vec::new();
    let mut losses = Vec::new();
    let mut lockstep = Lockstep::from_env();
    for k in 0..WARMUP + batches {
        let starts = streams.starts(0, k);
        if !lockstep.wait() {
            break;
        }
        let started = Instant::now();
        let loss = engine.queue_train_stream(StreamBatch {
            starts: &starts,
            seq_len,
            carry: k > 0,
        })?;
        let took = started.elapsed().as_secs_f64();
        lockstep.done(took);
        if k >= WARMUP {
            times.push(took);
            losses.push(loss.unwrap_or(f32::NAN));
        }
    }
    if times.is_empty() {
        return Err(bad(format!(
            "stdin closed before a timed batch (the first {WARMUP} are untimed); \
             scripts/lockstep.py drives CHARLSTM_LOCKSTEP=1"
        )));
    }
    let batches = times.len();
    times.sort_by(f64::total_cmp);
    let ours = times[times.len() / 2];
    println!(
        "charlstm-cuda cpu: {:.1} ms a batch (median of {batches}; B = {}, L = {seq_len}, H = {}, \
         V = {}), loss {:.4} -> {:.4}",
        ours * 1e3,
        hyper.batch,
        hyper.hidden,
        corpus.vocab().len(),
        losses[0],
        losses[losses.len() - 1]
    );
    if lockstep.is_on() {
        // The driver runs the PyTorch side itself, in turn with ours.
        return Ok(());
    }
    let output = Command::new(&python)
        .arg("scripts/bench_stream.py")
        .args(["--corpus", &corpus_path.to_string_lossy()])
        .args([
            "--batches",
            &batches.to_string(),
            "--warmup",
            &WARMUP.to_string(),
        ])
        .args(["--seq-len", &seq_len.to_string()])
        .args(["--batch", &hyper.batch.to_string()])
        .args(["--hidden", &hyper.hidden.to_string()])
        .output()
        .map_err(|e| bad(format!("{} could not run: {e}", python.display())))?;
    if !output.status.success() {
        return Err(bad(format!(
            "scripts/bench_stream.py failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    let json: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| bad(format!("scripts/bench_stream.py printed no JSON ({e})")))?;
    let torch = json["batch_s_median"]
        .as_f64()
        .ok_or_else(|| bad("no batch_s_median in the script's JSON".into()))?;
    println!(
        "pytorch {} cpu ({} threads): {:.1} ms a batch (median of {}), loss {:.4} -> {:.4}",
        json["torch"].as_str().unwrap_or("?"),
        json["threads"],
        torch * 1e3,
        json["batches"],
        json["first_loss"].as_f64().unwrap_or(f64::NAN),
        json["last_loss"].as_f64().unwrap_or(f64::NAN)
    );
    println!(
        "pytorch / charlstm-cuda = {:.2}x (goal: at least 2x)",
        torch / ours
    );
    Ok(())
}
