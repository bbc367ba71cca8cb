//! `--gen-mode stateful` (issue 18): prime on the seed once, then one LSTM
//! step per character, carrying (h, c). Checked against the window
//! generator and against one forward of the `ops::Lstm` op from a zero
//! state, on a small random model (never the Nietzsche corpus); the CLI on
//! the simulator against the CPU (the kernel itself: tests/generate_kernel.rs).

mod common;
use common::cli::{Dir, ok, run, small_text, stderr, stdout};

use std::ops::ControlFlow;

use charlstm_cuda::cpu::predict;
use charlstm_cuda::device::generate_with;
use charlstm_cuda::gpu::ptx;
use charlstm_cuda::model::{Params, Tensor};
use charlstm_cuda::ops::{LayerWeights, Lstm, LstmInput, Mode};
use charlstm_cuda::sample::{GenMode, GenerateRequest, Strategy, decode, no_progress};
use charlstm_cuda::stateful::{StatefulModel, generate_stateful};
use charlstm_cuda::{Backend, Model, Vocab};

const V: usize = 11;
const H: usize = 16;
const MAXLEN: usize = 12;

fn model(seed: u64) -> Params<f32> {
    common::random_params(V, H, 0.6, seed).map(|x| x as f32)
}

/// Probabilities as their bit patterns: compared for exact equality.
fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|p| p.to_bits()).collect()
}

fn seed_text(n: usize) -> Vec<u32> {
    (0..n).map(|i| ((i * 7 + 3) % V) as u32).collect()
}

/// The notebook's four temperatures.
fn strategies() -> Vec<Strategy> {
    [0.2, 0.5, 1.0, 1.2].map(Strategy::Temperature).to_vec()
}

/// A stateful request; `in_window(req)` is the same in window mode.
fn request<'a>(seed: &'a [u32], strategies: &'a [Strategy], length: usize) -> GenerateRequest<'a> {
    GenerateRequest {
        seed_indices: seed,
        maxlen: MAXLEN,
        length,
        strategies,
        seed: 9,
        stream: 3,
        mode: GenMode::Stateful,
    }
}

fn in_window(req: GenerateRequest<'_>) -> GenerateRequest<'_> {
    GenerateRequest {
        mode: GenMode::Window,
        ..req
    }
}

/// (1) A seed of exactly maxlen characters: the first character's
/// probabilities are window mode's, bit for bit. Both run the same
/// computation from a zero state: the engine's recurrence and the op's
/// share the cell (`cpu::cell::forward_row`), the per-row GEMM and the
/// `kernel + bias` table, and both end in the same head
/// (`cpu::forward::dense_softmax`); so equality is exact, not approximate.
#[test]
fn first_character_probabilities_equal_window_mode() {
    let params = model(common::seed());
    let seed = seed_text(MAXLEN);
    let b = 4;
    let x: Vec<u32> = (0..b).flat_map(|_| seed.iter().copied()).collect();
    let window = predict(&params, &x, MAXLEN);
    let mut m = StatefulModel::new(&params, b).expect("model");
    let stateful = m.prime(&seed).expect("prime");
    assert_eq!(bits(stateful), bits(&window));

    // So the first drawn character (same Philox number) is the same too.
    let s = strategies();
    let req = request(&seed, &s, 1);
    let w =
        generate_with(Backend::Cpu, &params, &in_window(req), &mut no_progress).expect("window");
    let st = generate_stateful(&params, &req, &mut no_progress).expect("stateful");
    assert_eq!(w, st);
}

/// softmax(h @ dense_kernel + dense_bias) of one row, in f64.
fn head_f64(p: &Params<f32>, h: &[f32]) -> Vec<f64> {
    let (k, bias) = (&p[Tensor::DenseKernel], &p[Tensor::DenseBias]);
    let logits: Vec<f64> = (0..V)
        .map(|v| {
            let dot: f64 = (0..H)
                .map(|j| f64::from(h[j]) * f64::from(k[j * V + v]))
                .sum();
            dot + f64::from(bias[v])
        })
        .collect();
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let z: f64 = logits.iter().map(|l| (l - max).exp()).sum();
    logits.iter().map(|l| (l - max).exp() / z).collect()
}

/// (2) The carried state after k characters is the op's final state over
/// seed + those k characters from a zero state in one forward (bit for
/// bit: the same op, one step at a time or all at once, does the same
/// arithmetic per row), and the probabilities are that state's head
/// (within 1e-6 of an f64 head computed here).
#[test]
fn carried_state_equals_one_forward_over_seed_and_generated() {
    let params = model(common::seed());
    let seed = seed_text(7); // shorter than maxlen: stateful primes on all of it
    let s = strategies();
    let b = s.len();
    let k = 30;
    let req = request(&seed, &s, k);
    let out = generate_stateful(&params, &req, &mut no_progress).expect("generate");
    assert!(out.iter().all(|q| q.len() == k));

    // The carried state, stepping through the generated characters.
    let mut m = StatefulModel::new(&params, b).expect("model");
    let mut probs = m.prime(&seed).expect("prime").to_vec();
    for t in 0..k {
        let next: Vec<u32> = out.iter().map(|q| q[t]).collect();
        probs = m.step(&next).expect("step").to_vec();
    }

    // One forward over seed + generated, [T, B] time-major, zero state.
    let t_all = seed.len() + k;
    let seed_ref = &seed;
    let x: Vec<u32> = (0..t_all)
        .flat_map(|t| {
            out.iter().map(move |q| {
                if t < seed_ref.len() {
                    seed_ref[t]
                } else {
                    q[t - seed_ref.len()]
                }
            })
        })
        .collect();
    let lstm = Lstm::new(1, V, H).expect("lstm");
    let w = [LayerWeights {
        kernel: &params[Tensor::Kernel],
        recurrent_kernel: &params[Tensor::RecurrentKernel],
        bias: &params[Tensor::Bias],
    }];
    let once = lstm
        .forward(&w, LstmInput::classes(&x, t_all, b), None, None, Mode::Eval)
        .expect("forward");
    assert_eq!(bits(m.h()), bits(once.h_n()));
    let mut worst = 0.0f64;
    for j in 0..b {
        let want = head_f64(&params, &once.h_n()[j * H..][..H]);
        for (p, q) in probs[j * V..][..V].iter().zip(&want) {
            worst = worst.max((f64::from(*p) - q).abs());
        }
    }
    assert!(worst < 1e-6, "max |p - p_f64| = {worst}");
}

/// (3) The same seed and stream give the same characters; another stream
/// others; progress sees every character and can stop early; and the
/// device-level dispatch in window mode is today's generator.
#[test]
fn reproducible_and_window_mode_unchanged() {
    let params = model(common::seed());
    let seed = seed_text(MAXLEN);
    let s = strategies();
    let req = request(&seed, &s, 200);
    let a = generate_stateful(&params, &req, &mut no_progress).expect("a");
    let b = generate_with(Backend::Cpu, &params, &req, &mut no_progress).expect("b");
    assert_eq!(a, b);
    let other = GenerateRequest { stream: 100, ..req };
    let c = generate_stateful(&params, &other, &mut no_progress).expect("c");
    assert_ne!(a, c);

    let mut calls = 0;
    let cut = generate_stateful(&params, &req, &mut |seqs: &[Vec<u32>]| {
        calls += 1;
        assert!(seqs.iter().all(|q| q.len() == calls));
        if calls == 5 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .expect("cut");
    assert!(cut.iter().zip(&a).all(|(c, a)| c[..] == a[..5]));

    let w = generate_with(Backend::Cpu, &params, &in_window(req), &mut no_progress).expect("w");
    let by_predictor = in_window(req)
        .run_on(charlstm_cuda::cpu::CpuModel::new(&params), V)
        .expect("d");
    assert_eq!(w, by_predictor);
    assert_eq!(GenMode::default(), GenMode::Window);

    // After the first characters the modes condition on different
    // histories: stateful on the seed and everything drawn since (the
    // state carried step to step), window on the last maxlen characters.
    // Compared on the probabilities, not on drawn characters: a model that
    // forgets fast moves them too little to flip any of 800 draws (seed
    // 1796512578191004700 drew the same characters in both modes).
    let long = seed_text(MAXLEN + 5);
    let mut m = StatefulModel::new(&params, 1).expect("model");
    m.prime(&long[..MAXLEN]).expect("prime");
    let mut stateful = Vec::new();
    for &ch in &long[MAXLEN..] {
        stateful = m.step(&[ch]).expect("step").to_vec();
    }
    let window = predict(&params, &long[5..], MAXLEN);
    assert_ne!(
        bits(&stateful),
        bits(&window),
        "stateful mode reads only the last maxlen characters, as window mode does"
    );
}

/// (4) An unknown mode is a clear error.
#[test]
fn errors_unknown_mode() {
    let e = "rolling".parse::<GenMode>().expect_err("unknown");
    let text = e.to_string();
    assert!(
        text.contains("window") && text.contains("stateful"),
        "{text}"
    );
}

/// A checkpoint of random weights, maxlen 5. ±0.5 at H = 8 keeps the
/// recurrence contracting over a long seed plus 60 characters, so the
/// device's and the CPU's rounding cannot grow into different draws (see
/// tests/generate_kernel.rs `random_case_in`).
fn checkpoint(dir: &Dir) -> String {
    let vocab = Vocab::from_text("abc de.");
    let params = common::random_params(vocab.len(), 8, 0.5, common::seed()).map(|x| x as f32);
    Model::new(params, vocab, 5, true)
        .expect("model")
        .save(&dir.path("m.safetensors"))
        .expect("save");
    dir.s("m.safetensors")
}

#[test]
fn cli_generate_gen_mode() {
    let dir = Dir::new();
    let ckpt = checkpoint(&dir);
    let base = ["generate", "--checkpoint", &ckpt, "--seed-text", "abc d"];

    let o = ok(&[
        &base[..],
        &["--gen-mode", "stateful", "--raw", "--length", "30"],
    ]
    .concat());
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines.iter().all(|l| l.chars().count() == 30), "{lines:?}");
    assert!(!stderr(&o).contains("for now"), "{}", stderr(&o));

    let o = run(&[&base[..], &["--gen-mode", "rolling"]].concat());
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("window") && err.contains("stateful"), "{err}");
}

/// `generate --gen-mode stateful --device sim` (the kernel, one launch)
/// prints what `--device cpu` prints: seeds of 1 character, shorter than
/// maxlen (5) and longer, the four temperatures and greedy. The two could
/// differ only where a draw lands within rounding of a cumulative boundary
/// (tests/generate_kernel.rs proves such ties); with these few characters
/// that is below one in 10^4 runs.
#[test]
fn cli_stateful_on_the_simulator_equals_the_cpu() {
    if !common::kernels() {
        return;
    }
    let dir = Dir::new();
    let ckpt = checkpoint(&dir);
    for (seed_text, strategy) in [
        ("a", "temperature"),
        ("abc", "temperature"),
        ("abc de.abc de", "temperature"),
        ("de.", "greedy"),
    ] {
        let args = |device: &str| {
            [
                "generate",
                "--checkpoint",
                &ckpt,
                "--seed-text",
                seed_text,
                "--gen-mode",
                "stateful",
                "--strategy",
                strategy,
                "--raw",
                "--length",
                "60",
                "--seed",
                "7",
                "--device",
                device,
            ]
            .map(String::from)
        };
        let cpu = ok(&args("cpu").iter().map(String::as_str).collect::<Vec<_>>());
        let sim = ok(&args("sim").iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(
            stdout(&sim),
            stdout(&cpu),
            "seed {seed_text:?}, {strategy}: sim vs cpu"
        );
        let want_lines = if strategy == "greedy" { 1 } else { 4 };
        assert_eq!(stdout(&cpu).lines().count(), want_lines);
    }
}

#[test]
fn cli_train_gen_mode() {
    let dir = Dir::new();
    let text = dir.write("t.txt", small_text().as_bytes());
    let args = |out: &str, mode: &str, device: &str| -> Vec<String> {
        [
            "train",
            "--corpus",
            &text,
            "--out",
            out,
            "--epochs",
            "1",
            "--steps-per-epoch",
            "1",
            "--hidden",
            "8",
            "--maxlen",
            "10",
            "--gen-length",
            "20",
            "--gen-mode",
            mode,
            "--device",
            device,
            "--quiet",
        ]
        .map(String::from)
        .to_vec()
    };
    ok(&args(&dir.s("run"), "stateful", "cpu")
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    let metrics = std::fs::read_to_string(dir.path("run/metrics.jsonl")).expect("metrics");
    assert!(metrics.contains("\"temperature\""), "{metrics}");

    // On the simulator the samples come from the stateful kernel.
    if ptx::BUILT_WITH_KERNELS {
        ok(&args(&dir.s("run2"), "stateful", "sim")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>());
        let metrics = std::fs::read_to_string(dir.path("run2/metrics.jsonl")).expect("metrics");
        assert!(metrics.contains("\"temperature\""), "{metrics}");
    }

    let cfg = dir.write("c.toml", b"gen_mode = \"rolling\"\n");
    let o = run(&[
        "train",
        "--config",
        &cfg,
        "--corpus",
        &text,
        "--out",
        &dir.s("run3"),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("--gen-mode") && err.contains("stateful"),
        "{err}"
    );
}

/// (5) The library's stateful generation (`Model::generate_on` with
/// `GenMode::Stateful`): on the CPU the text of `generate_stateful` and of
/// `generate --gen-mode stateful` for the same seed text and `--seed`; on
/// the simulator (the kernel, one launch) the CPU's, as the command's is
/// (ties within rounding as rare as there). Window mode stays what
/// `Model::generate` gives.
#[test]
fn the_library_generates_statefully_as_the_command_does() {
    let dir = Dir::new();
    let ckpt = checkpoint(&dir);
    let model = Model::load(std::path::Path::new(&ckpt)).expect("load");
    let s = strategies();
    let (seed_text, length, seed) = ("abc De.a", 60, 7);
    let text = model
        .generate_on(Backend::Cpu, GenMode::Stateful, seed_text, length, &s, seed)
        .expect("cpu");

    // The function, on the normalised seed (the model lower-cases).
    let indices = model.encode(seed_text).expect("encode");
    let req = GenerateRequest {
        seed_indices: &indices,
        maxlen: model.maxlen(),
        length,
        strategies: &s,
        seed,
        stream: 0,
        mode: GenMode::Stateful,
    };
    let want = generate_stateful(model.params(), &req, &mut no_progress).expect("function");
    assert_eq!(text, decode(model.vocab(), &want));

    // The command.
    let o = ok(&[
        "generate",
        "--checkpoint",
        &ckpt,
        "--seed-text",
        seed_text,
        "--gen-mode",
        "stateful",
        "--raw",
        "--length",
        "60",
        "--seed",
        "7",
        "--device",
        "cpu",
    ]);
    let printed: Vec<String> = stdout(&o).lines().map(String::from).collect();
    assert_eq!(printed, text, "the command prints what the library returns");

    // Window mode is the notebook's, what `generate` gives, and differs:
    // on the probabilities after the 8-character seed (window mode reads
    // its last maxlen = 5), not on the drawn text, which a model that
    // forgets fast leaves unchanged (2 seeds in 40 did).
    let window = model
        .generate_on(Backend::Cpu, GenMode::Window, seed_text, length, &s, seed)
        .expect("window");
    let one = model.generate(seed_text, length, s[0], seed).expect("one");
    assert_eq!(window[0], one);
    let mut m = StatefulModel::new(model.params(), 1).expect("model");
    let stateful = m.prime(&indices).expect("prime").to_vec();
    let last = &indices[indices.len() - model.maxlen()..];
    let windowed = predict(model.params(), last, model.maxlen());
    assert_ne!(bits(&stateful), bits(&windowed));

    if !ptx::BUILT_WITH_KERNELS {
        println!("SKIPPED the simulator: built without kernels");
        return;
    }
    let sim = model
        .generate_on(Backend::Sim, GenMode::Stateful, seed_text, length, &s, seed)
        .expect("sim");
    assert_eq!(sim, text, "the kernel draws the CPU's characters");
}
