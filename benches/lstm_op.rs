//! `ops::Lstm` forward + backward against `torch.nn.LSTM` forward +
//! backward, on the same tensors, side by side in one run: on the CPU (the
//! default), or on a GPU (`LSTM_OP_DEVICE=cuda`: the op as a cudarc crate
//! calls it, `ops::LstmCuda` on the bench's stream, against nn.LSTM on
//! cuDNN in strict fp32):
//!
//! ```text
//! CHARLSTM_PYTHON=.venv-interop/bin/python LSTM_OP_THREADS=1 cargo bench --bench lstm_op
//! LSTM_OP_DEVICE=cuda cargo bench --bench lstm_op      # a GPU (scripts/gpu-check.sh's op part)
//! ```
//!
//! Cases: T = 60, B = 128, In = 57, H = 128 and 256 (and on a GPU 512, and
//! 256 again with the forward on the cluster kernel, "+cl": LstmPath::Cluster),
//! N = 1 and 2, the input one-hot (class indices for the op, which gathers
//! kernel rows; one-hot rows for PyTorch, which has no index input) and
//! dense (random; both return dx then). f32, random weights, dY random at
//! every step, no initial state, no dropout. The op is timed here (one
//! warm-up, then the median of LSTM_OP_REPS runs, default 5; the best of
//! LSTM_OP_ROUNDS such medians, default 3, each side's rounds alternating
//! with the other's), through `forward_into` / `backward_into` reusing the
//! buffers of the run before, as a training loop would (on a GPU:
//! `LstmCuda::forward` / `backward` on device buffers allocated once, each
//! run ended by a stream synchronisation; class indices go from the host,
//! as that API takes them); then scripts/bench_lstm_op.py (LSTM_OP_SCRIPT
//! to name another copy), one process a round for all the cases, times
//! nn.LSTM the same way on the tensors this bench wrote, and reports the
//! largest difference to the op's y and gradients (relative to the tensor's
//! largest value), which checks the PyTorch weight mapping of
//! docs/lstm-op.md as well. Both use LSTM_OP_THREADS threads (default 1) on
//! the CPU.
//!
//! Prints a table: each side's median in ms and PyTorch / ours (above 1 =
//! the op is faster). Without a Python that has torch, the op's column
//! alone, unless LSTM_OP_REQUIRE_TORCH=1 (then that is an error). Exits
//! non-zero when a difference exceeds LSTM_OP_MAX_DIFF (default 1e-4: both
//! sides sum in f32 in different orders; the CPU has stayed below 5e-6).

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use charlstm_cuda::cudarc::driver::{CudaContext, CudaSlice, CudaStream};
use charlstm_cuda::gpu::CudaDevice;
use charlstm_cuda::gpu::lstm::LstmPath;
use charlstm_cuda::ops::{
    CudaLayer, CudaLayerGrads, LayerParams, Lstm, LstmCuda, LstmGrads, LstmInput, LstmOutput, Mode,
};
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
    /// On a GPU: the forward on the cluster kernel (`LstmPath::Cluster`),
    /// not the default path.
    cluster: bool,
}

impl Case {
    fn input(&self) -> &'static str {
        match (self.dense, self.cluster) {
            (false, false) => "one-hot",
            (true, false) => "dense",
            (false, true) => "one-hot+cl",
            (true, true) => "dense+cl",
        }
    }

    /// The case as messages name it.
    fn label(&self) -> String {
        format!("N={} H={} {}", self.layers, self.hidden, self.input())
    }
}

/// Where the op runs: the CPU with `threads` threads, or the bench's
/// cudarc stream.
enum Device {
    Cpu { threads: usize },
    Cuda(Arc<CudaStream>),
}

impl Device {
    fn name(&self) -> &'static str {
        match self {
            Device::Cpu { .. } => "cpu",
            Device::Cuda(_) => "cuda",
        }
    }
}

/// One case's tensors, made the same way on every device.
struct Data {
    lstm: Lstm,
    layers: Vec<LayerParams<f32>>,
    classes: Vec<u32>,
    /// Dense `[T, B, IN]`: random, or the one-hot rows of `classes`.
    x: Vec<f32>,
    dy: Vec<f32>,
}

fn data(case: &Case) -> Data {
    let (n, h) = (case.layers, case.hidden);
    let lstm = Lstm::new(n, IN, h).unwrap();
    let mut rng = RngStream::new(3, Purpose::Init, 0);
    let a = 1.0 / (h as f32).sqrt();
    let layers: Vec<LayerParams<f32>> = (0..n)
        .map(|l| LayerParams {
            kernel: uniform(&mut rng, lstm.layer_input(l) * 4 * h, a),
            recurrent_kernel: uniform(&mut rng, h * 4 * h, a),
            bias: uniform(&mut rng, 4 * h, a),
        })
        .collect();
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
    Data {
        lstm,
        layers,
        classes,
        x,
        dy,
    }
}

/// The op's median on the CPU, its y and its gradients.
fn time_cpu(d: &Data, dense: bool, threads: usize, reps: usize) -> (f64, Vec<f32>, LstmGrads<f32>) {
    let lstm = d.lstm.clone().with_threads(threads);
    let w: Vec<_> = d.layers.iter().map(LayerParams::weights).collect();
    let input = if dense {
        LstmInput::dense(&d.x, T, B)
    } else {
        LstmInput::classes(&d.classes, T, B)
    };
    // As a training loop calls it: the buffers of the last step reused.
    let (mut out, mut grads) = (LstmOutput::new(), LstmGrads::default());
    let mut step = || {
        lstm.forward_into(&w, input, None, None, Mode::Eval, &mut out)
            .unwrap();
        lstm.backward_into(&w, &mut out, &d.dy, None, None, &mut grads)
            .unwrap();
    };
    step();
    let mut runs = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        step();
        runs.push(start.elapsed().as_secs_f64());
    }
    (median(runs), out.y().to_vec(), grads)
}

/// The op's median on the GPU (`LstmCuda` on `stream`, each run from its
/// launch to the stream's end), its y and its gradients.
fn time_cuda(
    stream: &Arc<CudaStream>,
    d: &Data,
    case: &Case,
    reps: usize,
) -> Result<(f64, Vec<f32>, LstmGrads<f32>), String> {
    let dense = case.dense;
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let up = |v: &[f32]| stream.clone_htod(v).map_err(|x| e(&x));
    let zeros = |n: usize| stream.alloc_zeros::<f32>(n).map_err(|x| e(&x));
    let (n, h) = (d.lstm.layers(), d.lstm.hidden());
    let w = d
        .layers
        .iter()
        .map(|p| Ok([up(&p.kernel)?, up(&p.recurrent_kernel)?, up(&p.bias)?]))
        .collect::<Result<Vec<_>, String>>()?;
    let weights: Vec<CudaLayer<'_>> = w
        .iter()
        .map(|[kernel, recurrent_kernel, bias]| CudaLayer {
            kernel,
            recurrent_kernel,
            bias,
        })
        .collect();
    let mut op = LstmCuda::new(&d.lstm, stream.clone()).map_err(|x| e(&x))?;
    if case.cluster {
        op = op.with_path(LstmPath::Cluster);
    }
    let (x, dy) = (up(&d.x)?, up(&d.dy)?);
    let state = n * B * h;
    let (mut y, mut h_n, mut c_n) = (zeros(T * B * h)?, zeros(state)?, zeros(state)?);
    let (mut dx, mut dh0, mut dc0) = (zeros(T * B * IN)?, zeros(state)?, zeros(state)?);
    let mut gw = (0..n)
        .map(|l| {
            let i = d.lstm.layer_input(l);
            Ok([zeros(i * 4 * h)?, zeros(h * 4 * h)?, zeros(4 * h)?])
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut runs = Vec::with_capacity(reps);
    {
        let mut grads: Vec<CudaLayerGrads<'_>> = gw
            .iter_mut()
            .map(|[kernel, recurrent_kernel, bias]| CudaLayerGrads {
                kernel,
                recurrent_kernel,
                bias,
            })
            .collect();
        let mut step = || -> Result<f64, String> {
            stream.synchronize().map_err(|x| e(&x))?;
            let start = Instant::now();
            let out = (&mut y, &mut h_n, &mut c_n);
            if dense {
                op.forward(&weights, &x, (T, B), None, None, Mode::Eval, out)
            } else {
                op.forward_classes(&weights, &d.classes, (T, B), None, None, Mode::Eval, out)
            }
            .map_err(|x| e(&x))?;
            let dx = dense.then_some(&mut dx);
            op.backward(
                &weights,
                &dy,
                None,
                None,
                dx,
                (&mut dh0, &mut dc0),
                &mut grads,
            )
            .map_err(|x| e(&x))?;
            stream.synchronize().map_err(|x| e(&x))?;
            Ok(start.elapsed().as_secs_f64())
        };
        step()?;
        for _ in 0..reps {
            runs.push(step()?);
        }
    }
    let down = |s: &CudaSlice<f32>| stream.clone_dtoh(s).map_err(|x| e(&x));
    let layers = gw
        .iter()
        .map(|[k, r, b]| {
            Ok(LayerParams {
                kernel: down(k)?,
                recurrent_kernel: down(r)?,
                bias: down(b)?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let grads = LstmGrads {
        dx: if dense { Some(down(&dx)?) } else { None },
        dh0: down(&dh0)?,
        dc0: down(&dc0)?,
        layers,
    };
    Ok((median(runs), down(&y)?, grads))
}

/// Times the op on `case`; writes the tensors and its results for PyTorch to `path`.
fn run_ours(case: &Case, dev: &Device, reps: usize, path: &std::path::Path) -> Result<f64, String> {
    let d = data(case);
    let (time, y, grads) = match dev {
        Device::Cpu { threads } => time_cpu(&d, case.dense, *threads, reps),
        Device::Cuda(stream) => time_cuda(stream, &d, case, reps)?,
    };
    let h = case.hidden;
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = vec![
        ("x".into(), vec![T, B, IN], d.x),
        ("dy".into(), vec![T, B, h], d.dy),
        ("ours_y".into(), vec![T, B, h], y),
    ];
    if let Some(dx) = grads.dx {
        tensors.push(("ours_dx".into(), vec![T, B, IN], dx));
    }
    for (k, (p, g)) in d.layers.iter().zip(grads.layers).enumerate() {
        let i = d.lstm.layer_input(k);
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
    let threads = match dev {
        Device::Cpu { threads } => *threads,
        Device::Cuda(_) => 1,
    };
    let meta = HashMap::from([
        ("layers".to_string(), case.layers.to_string()),
        ("hidden".to_string(), h.to_string()),
        ("dense".to_string(), case.dense.to_string()),
        ("threads".to_string(), threads.to_string()),
        ("reps".to_string(), reps.to_string()),
        ("device".to_string(), dev.name().to_string()),
    ]);
    std::fs::write(path, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
    Ok(time)
}

/// nn.LSTM's median and its largest difference to the op, for each case
/// file in `paths` (one Python process for all), or why there are none.
fn run_torch(
    python: &str,
    script: &str,
    paths: &[std::path::PathBuf],
) -> Result<Vec<(f64, f64)>, String> {
    let out = Command::new(python)
        .arg(script)
        .args(paths)
        .output()
        .map_err(|e| format!("{python}: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let v: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("bench_lstm_op.py: {e}"))?;
    if v.len() != paths.len() {
        return Err(format!(
            "bench_lstm_op.py: {} results for {} cases",
            v.len(),
            paths.len()
        ));
    }
    Ok(v.iter()
        .map(|v| {
            // A missing or non-finite difference counts as the largest
            // (NaN), so that the bound below fails it.
            let diffs = v["max_rel_diff"]
                .as_object()
                .map(|m| m.values().map(|d| d.as_f64().unwrap_or(f64::NAN)).collect())
                .unwrap_or_else(|| vec![f64::NAN]);
            let diff = diffs.into_iter().fold(0.0, |a: f64, d| {
                if d.is_nan() || a.is_nan() {
                    f64::NAN
                } else {
                    a.max(d)
                }
            });
            (v["median_s"].as_f64().unwrap_or(f64::NAN), diff)
        })
        .collect())
}

/// The device `LSTM_OP_DEVICE` names, or why it cannot be used.
fn device(threads: usize) -> Result<Device, String> {
    match std::env::var("LSTM_OP_DEVICE").as_deref() {
        Err(_) | Ok("cpu") => Ok(Device::Cpu { threads }),
        Ok("cuda") => {
            let gpu = CudaDevice::probe().map_err(|why| format!("cuda unavailable: {why}"))?;
            let ctx = CudaContext::new(0).map_err(|e| format!("cuda unavailable: {gpu}: {e}"))?;
            let stream = ctx
                .new_stream()
                .map_err(|e| format!("cuda unavailable: {gpu}: {e}"))?;
            println!("GPU: {gpu}");
            Ok(Device::Cuda(stream))
        }
        Ok(other) => Err(format!(
            "LSTM_OP_DEVICE={other}: not a device; use cpu (the default) or cuda"
        )),
    }
}

fn fail(why: &str) -> ! {
    eprintln!("lstm_op bench: {why}");
    std::process::exit(1);
}

fn main() {
    let threads = env_or("LSTM_OP_THREADS", 1);
    let reps = env_or("LSTM_OP_REPS", 5).max(1);
    let rounds = env_or("LSTM_OP_ROUNDS", 3).max(1);
    let python = std::env::var("CHARLSTM_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = std::env::var("LSTM_OP_SCRIPT").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench_lstm_op.py").into()
    });
    let require_torch = std::env::var("LSTM_OP_REQUIRE_TORCH").is_ok_and(|v| v == "1");
    let max_diff = match std::env::var("LSTM_OP_MAX_DIFF") {
        Err(_) => 1e-4,
        Ok(v) => match v.parse::<f64>() {
            Ok(b) if b > 0.0 => b,
            _ => fail(&format!(
                "LSTM_OP_MAX_DIFF={v}: not a positive number (default 1e-4)"
            )),
        },
    };
    let dev = device(threads).unwrap_or_else(|why| fail(&why));
    let dir = tempfile::tempdir().unwrap();
    let on = match dev {
        Device::Cpu { threads } => format!("the CPU, {threads} thread(s)"),
        Device::Cuda(_) => "cuda (nn.LSTM: cuDNN, strict fp32)".into(),
    };
    println!(
        "ops::Lstm vs torch.nn.LSTM, forward + backward on {on}, f32, T={T} B={B} In={IN}, \
         best of {rounds} rounds of the median of {reps}"
    );
    println!(
        "{:>2} {:>4} {:8} {:>10} {:>10} {:>8} {:>12}",
        "N", "H", "input", "ours ms", "torch ms", "ratio", "max rel diff"
    );
    // On a GPU also H = 512: the per-step kernels' scaling above the
    // persistent kernels' H <= 128 (on the CPU it would only lengthen CI).
    let hiddens: &[usize] = match dev {
        Device::Cpu { .. } => &[128, 256],
        Device::Cuda(_) => &[128, 256, 512],
    };
    let mut cases = Vec::new();
    for &hidden in hiddens {
        for layers in [1, 2] {
            for dense in [false, true] {
                cases.push(Case {
                    layers,
                    hidden,
                    dense,
                    cluster: false,
                });
            }
        }
    }
    let table = Table {
        dev: &dev,
        reps,
        rounds,
        python: &python,
        script: &script,
        require_torch,
        max_diff,
        dir: dir.path(),
    };
    let mut problems = Vec::new();
    let mut missing = table.run(&cases, "").unwrap_or_else(|why| fail(&why));
    // On a GPU, H = 256 again with the recurrence on the cluster kernels
    // (LstmPath::Cluster: never run on a GPU before, not yet the default),
    // after the table above so that a failure here cannot lose it.
    if let Device::Cuda(_) = dev {
        let mut cl = Vec::new();
        for layers in [1, 2] {
            for dense in [false, true] {
                cl.push(Case {
                    layers,
                    hidden: 256,
                    dense,
                    cluster: true,
                });
            }
        }
        match table.run(&cl, "cl") {
            Ok(m) => missing = missing.or(m),
            Err(why) => problems.push(why),
        }
    }
    if let Some(why) = missing {
        println!("no PyTorch column: {why} (set CHARLSTM_PYTHON to a Python with torch)");
    }
    if !problems.is_empty() {
        fail(&problems.join("; "));
    }
}

/// What one table of cases runs with.
struct Table<'a> {
    dev: &'a Device,
    reps: usize,
    rounds: usize,
    python: &'a str,
    script: &'a str,
    require_torch: bool,
    max_diff: f64,
    dir: &'a std::path::Path,
}

impl Table<'_> {
    /// Times `cases` (case files named with `tag`), prints their rows;
    /// returns why there is no PyTorch column, or an error naming the cases
    /// that failed or differ from PyTorch by more than `max_diff`.
    fn run(&self, cases: &[Case], tag: &str) -> Result<Option<String>, String> {
        let paths: Vec<_> = (0..cases.len())
            .map(|i| self.dir.join(format!("case{tag}{i}.safetensors")))
            .collect();
        // Each side's best median over the rounds, the two sides alternating
        // (every case of ours, then every case of PyTorch's), so that a burst
        // of other load on the machine cannot fall on one side only.
        let mut ours = vec![f64::INFINITY; cases.len()];
        let mut torch: Vec<Option<(f64, f64)>> = vec![None; cases.len()];
        let mut missing = None;
        for _ in 0..self.rounds {
            for ((case, path), best) in cases.iter().zip(&paths).zip(&mut ours) {
                let t = run_ours(case, self.dev, self.reps, path)
                    .map_err(|why| format!("{}: the op failed: {why}", case.label()))?;
                *best = best.min(t);
            }
            if missing.is_some() {
                continue;
            }
            match run_torch(self.python, self.script, &paths) {
                Ok(results) => {
                    for (slot, (t, d)) in torch.iter_mut().zip(results) {
                        *slot = Some(match *slot {
                            Some((best, _)) => (t.min(best), d),
                            None => (t, d),
                        });
                    }
                }
                Err(why) => {
                    if self.require_torch {
                        return Err(format!(
                            "{why}; LSTM_OP_REQUIRE_TORCH=1 wants the PyTorch column"
                        ));
                    }
                    missing = Some(why);
                }
            }
        }
        let mut over = Vec::new();
        for ((case, ours), torch) in cases.iter().zip(&ours).zip(&torch) {
            let (layers, hidden, input) = (case.layers, case.hidden, case.input());
            match torch {
                Some((t, diff)) => {
                    println!(
                        "{layers:>2} {hidden:>4} {input:8} {:>10.2} {:>10.2} {:>7.2}x {diff:>12.1e}",
                        ours * 1e3,
                        t * 1e3,
                        t / ours
                    );
                    if diff.is_nan() || *diff > self.max_diff {
                        over.push(format!("{}: {diff:.1e}", case.label()));
                    }
                }
                None => println!("{layers:>2} {hidden:>4} {input:8} {:>10.2}", ours * 1e3),
            }
        }
        if !over.is_empty() {
            return Err(format!(
                "PyTorch differs from the op by more than LSTM_OP_MAX_DIFF={:e} in {}",
                self.max_diff,
                over.join(", ")
            ));
        }
        Ok(missing)
    }
}
