//! `ops::Lstm` forward + backward on the CPU against `torch.nn.LSTM` forward
//! + backward on the CPU, on the same tensors, side by side in one run:
//!
//! ```text
//! CHARLSTM_PYTHON=.venv-interop/bin/python LSTM_OP_THREADS=1 cargo bench --bench lstm_op
//! ```
//!
//! Cases: T = 60, B = 128, In = 57, H = 128 and 256, N = 1 and 2, the input
//! one-hot (class indices for the op, which gathers kernel rows; one-hot
//! rows for PyTorch, which has no index input) and dense (random; both
//! return dx then). f32, random weights, dY random at every step, no
//! initial state, no dropout. The op is timed here (one warm-up, then the
//! median of LSTM_OP_REPS runs, default 5; the best of LSTM_OP_ROUNDS such
//! medians, default 3, each side's rounds alternating with the other's),
//! through `forward_into` /
//! `backward_into` reusing the buffers of the run before, as a training
//! loop would; then scripts/bench_lstm_op.py
//! times nn.LSTM the same way on the tensors this bench wrote, and reports
//! the largest difference to the op's y and gradients (relative to the
//! tensor's largest value), which checks the
//! PyTorch weight mapping of docs/lstm-op.md as well. Both use
//! LSTM_OP_THREADS threads (default 1).
//!
//! Prints a table: each side's median in ms and PyTorch / ours (above 1 =
//! the op is faster). Without a Python that has torch, the op's column alone.

use std::collections::HashMap;
use std::process::Command;
use std::time::Instant;

use charlstm_cuda::ops::{LayerParams, Lstm, LstmGrads, LstmInput, LstmOutput, Mode};
use charlstm_cuda::rng::{Purpose, RngStream};
use safetensors::tensor::{Dtype, TensorView};

const T: usize = 60;
const B: usize = 128;
const IN: usize = 57;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn uniform(rng: &mut RngStream, n: usize, a: f32) -> Vec<f32> {
    (0..n)
        .map(|_| (rng.next_f64() as f32 * 2.0 - 1.0) * a)
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Case {
    layers: usize,
    hidden: usize,
    dense: bool,
}

/// Times the op on `case`; writes the tensors and its results for PyTorch to `path`.
fn run_ours(case: &Case, threads: usize, reps: usize, path: &std::path::Path) -> f64 {
    let (n, h) = (case.layers, case.hidden);
    let lstm = Lstm::new(n, IN, h).unwrap().with_threads(threads);
    let mut rng = RngStream::new(3, Purpose::Init, 0);
    let a = 1.0 / (h as f32).sqrt();
    let layers: Vec<LayerParams<f32>> = (0..n)
        .map(|l| LayerParams {
            kernel: uniform(&mut rng, lstm.layer_input(l) * 4 * h, a),
            recurrent_kernel: uniform(&mut rng, h * 4 * h, a),
            bias: uniform(&mut rng, 4 * h, a),
        })
        .collect();
    let w: Vec<_> = layers.iter().map(LayerParams::weights).collect();
    let classes: Vec<u32> = (0..T * B).map(|_| rng.below(IN as u64) as u32).collect();
    let x: Vec<f32> = if case.dense {
        uniform(&mut rng, T * B * IN, 1.0)
    } else {
        let mut x = vec![0.0; T * B * IN];
        for (k, &c) in classes.iter().enumerate() {
            x[k * IN + c as usize] = 1.0;
        }
        x
    };
    let dy = uniform(&mut rng, T * B * h, 1.0);
    let input = if case.dense {
        LstmInput::dense(&x, T, B)
    } else {
        LstmInput::classes(&classes, T, B)
    };
    // As a training loop calls it: the buffers of the last step reused.
    let (mut out, mut grads) = (LstmOutput::new(), LstmGrads::default());
    let mut step = || {
        lstm.forward_into(&w, input, None, None, Mode::Eval, &mut out)
            .unwrap();
        lstm.backward_into(&w, &mut out, &dy, None, None, &mut grads)
            .unwrap();
    };
    step();
    let mut runs = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        step();
        runs.push(start.elapsed().as_secs_f64());
    }
    let y = out.y().to_vec();

    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = vec![
        ("x".into(), vec![T, B, IN], x),
        ("dy".into(), vec![T, B, h], dy),
        ("ours_y".into(), vec![T, B, h], y),
    ];
    if let Some(dx) = grads.dx {
        tensors.push(("ours_dx".into(), vec![T, B, IN], dx));
    }
    for (k, (p, g)) in layers.iter().zip(grads.layers).enumerate() {
        let i = lstm.layer_input(k);
        for (name, shape, a, b) in [
            ("kernel", vec![i, 4 * h], &p.kernel, g.kernel),
            (
                "recurrent_kernel",
                vec![h, 4 * h],
                &p.recurrent_kernel,
                g.recurrent_kernel,
            ),
            ("bias", vec![4 * h], &p.bias, g.bias),
        ] {
            tensors.push((format!("{name}_l{k}"), shape.clone(), a.clone()));
            tensors.push((format!("ours_d{name}_l{k}"), shape, b));
        }
    }
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, shape, data)| {
            let bytes: &[u8] = bytemuck::cast_slice(data);
            (
                name.clone(),
                TensorView::new(Dtype::F32, shape.clone(), bytes).unwrap(),
            )
        })
        .collect();
    let meta = HashMap::from([
        ("layers".to_string(), n.to_string()),
        ("hidden".to_string(), h.to_string()),
        ("dense".to_string(), case.dense.to_string()),
        ("threads".to_string(), threads.to_string()),
        ("reps".to_string(), reps.to_string()),
    ]);
    std::fs::write(path, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
    median(runs)
}

/// nn.LSTM's median and its largest difference to the op, or why there is none.
fn run_torch(python: &str, path: &std::path::Path) -> Result<(f64, f64), String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench_lstm_op.py");
    let out = Command::new(python)
        .arg(script)
        .arg(path)
        .output()
        .map_err(|e| format!("{python}: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("bench_lstm_op.py: {e}"))?;
    let diff = v["max_rel_diff"]
        .as_object()
        .map(|m| m.values().filter_map(|d| d.as_f64()).fold(0.0, f64::max))
        .unwrap_or(f64::NAN);
    Ok((v["median_s"].as_f64().unwrap_or(f64::NAN), diff))
}

fn main() {
    let threads = env_or("LSTM_OP_THREADS", 1);
    let reps = env_or("LSTM_OP_REPS", 5).max(1);
    let rounds = env_or("LSTM_OP_ROUNDS", 3).max(1);
    let python = std::env::var("CHARLSTM_PYTHON").unwrap_or_else(|_| "python3".into());
    let dir = tempfile::tempdir().unwrap();
    println!(
        "ops::Lstm vs torch.nn.LSTM, forward + backward on the CPU, f32, T={T} B={B} In={IN}, \
         {threads} thread(s), best of {rounds} rounds of the median of {reps}"
    );
    println!(
        "{:>2} {:>4} {:8} {:>10} {:>10} {:>8} {:>12}",
        "N", "H", "input", "ours ms", "torch ms", "ratio", "max rel diff"
    );
    let mut missing = None;
    for hidden in [128, 256] {
        for layers in [1, 2] {
            for dense in [false, true] {
                let case = Case {
                    layers,
                    hidden,
                    dense,
                };
                let path = dir.path().join("case.safetensors");
                let input = if dense { "dense" } else { "one-hot" };
                // Each side's best median over the rounds, the two sides
                // alternating, so a burst of other load on the machine
                // cannot fall on one side only.
                let mut ours = f64::INFINITY;
                let mut torch: Result<(f64, f64), String> = Err(String::new());
                for _ in 0..rounds {
                    ours = ours.min(run_ours(&case, threads, reps, &path));
                    if missing.is_some() {
                        continue;
                    }
                    torch = match (run_torch(&python, &path), torch) {
                        (Ok((t, d)), Ok((best, _))) => Ok((t.min(best), d)),
                        (r, _) => r,
                    };
                    if let Err(why) = &torch {
                        missing = Some(why.clone());
                    }
                }
                match torch {
                    Ok((t, diff)) => println!(
                        "{layers:>2} {hidden:>4} {input:8} {:>10.1} {:>10.1} {:>7.2}x {diff:>12.1e}",
                        ours * 1e3,
                        t * 1e3,
                        t / ours
                    ),
                    Err(_) => {
                        println!("{layers:>2} {hidden:>4} {input:8} {:>10.1}", ours * 1e3);
                    }
                }
            }
        }
    }
    if let Some(why) = missing {
        println!("no PyTorch column: {why} (set CHARLSTM_PYTHON to a Python with torch)");
    }
}
