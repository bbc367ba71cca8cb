//! `--clip-norm`: global gradient-norm clipping before the RMSprop step.
//! The CPU reference on a hand-computed case and in one exact training step,
//! the kernel (`grad_norm_clip_f32` on the simulator) and the GPU engine
//! against it, refusal of nonsense values, and checkpoints with and without
//! the field.

mod common;

use charlstm_cuda::model::Tensor;
use std::path::Path;
use std::process::Command;

use charlstm_cuda::cpu::{CpuEngine, RmsProp, clip_grad_norm};
use charlstm_cuda::gpu::rmsprop::GradClipLauncher;
use charlstm_cuda::gpu::{DevicePtr, GpuDevice, GpuEngine, SimDevice};
use charlstm_cuda::model::ParamLayout;
use charlstm_cuda::model::{Checkpoint, Grads, Hyper, Params, TENSOR_NAMES, init_params};
use charlstm_cuda::{Backend, Engine};
use charlstm_cuda::{Error, OneHotCorpus};

fn text() -> String {
    let mut s = String::new();
    let mut x: u32 = 11;
    for _ in 0..600 {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        s.push(b"abcdefghij ."[(x >> 24) as usize % 12] as char);
    }
    s
}

fn hyper(clip_norm: Option<f32>) -> Hyper {
    Hyper {
        maxlen: 6,
        step: 2,
        hidden: 10,
        batch: 16,
        seed: 5,
        clip_norm,
        ..Hyper::default()
    }
}

/// The L2 norm of all gradients, in f64, written out independently.
fn norm(g: &Grads<f32>) -> f64 {
    g.tensors()
        .iter()
        .flat_map(|t| t.iter())
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt()
}

/// V = 1, H = 1: 14 gradients; two non-zero ones, 3 and 4, norm 5.
#[test]
fn clip_matches_a_hand_computed_case() {
    let mut g = Grads::<f32>::zeros(1, 1);
    assert_eq!(g.len(), 14);
    g[Tensor::Kernel][0] = 3.0;
    g[Tensor::DenseBias][0] = -4.0;
    let before = g.clone();
    // Above the norm: nothing changes, the norm is reported.
    assert_eq!(clip_grad_norm(&mut g, 10.0), 5.0);
    assert_eq!(g, before);
    assert_eq!(clip_grad_norm(&mut g, 5.0), 5.0, "equal to the bound: kept");
    assert_eq!(g, before);
    // Clipped to 1: scaled by 1/5 (rounded to f32 once), so 0.6 and -0.8.
    assert_eq!(clip_grad_norm(&mut g, 1.0), 5.0);
    assert_eq!(g[Tensor::Kernel][0], 3.0 * 0.2f32);
    assert_eq!(g[Tensor::DenseBias][0], -4.0 * 0.2f32);
    assert!(
        (g[Tensor::Kernel][0] - 0.6).abs() < 1e-7 && (g[Tensor::DenseBias][0] + 0.8).abs() < 1e-7
    );
    assert!((norm(&g) - 1.0).abs() < 1e-7, "{}", norm(&g));
    let zeros: usize = g
        .tensors()
        .iter()
        .map(|t| t.iter().filter(|&&x| x == 0.0).count())
        .sum();
    assert_eq!(zeros, 12, "zeros stay zero");
    // The f64 path: the same numbers, in f64.
    let mut g64 = before.map(f64::from);
    assert_eq!(clip_grad_norm(&mut g64, 2.5), 5.0);
    assert_eq!(
        (g64[Tensor::Kernel][0], g64[Tensor::DenseBias][0]),
        (1.5, -2.0)
    );
    // A NaN gradient: the norm is NaN and nothing is scaled.
    let mut nan = before.clone();
    nan[Tensor::Bias][1] = f32::NAN;
    assert!(clip_grad_norm(&mut nan, 1.0).is_nan());
    assert_eq!(nan[Tensor::Kernel][0], 3.0);
}

/// One CPU step with a tiny clip norm: the weights are exactly RMSprop's
/// on the unclipped gradients scaled by `C / ||g||`.
#[test]
fn a_tiny_clip_norm_changes_one_cpu_step_exactly_as_expected() {
    let corpus = OneHotCorpus::from_text(&text(), true).unwrap();
    let v = corpus.vocab().len();
    let c = 1e-3f32;
    let (h0, h1) = (hyper(None), hyper(Some(c)));
    let p0 = init_params(v, h0.hidden, h0.seed);
    let zeros = Params::zeros(v, h0.hidden);
    let starts: Vec<u32> = (0..16).map(|i| i * 7).collect();

    let mut plain = CpuEngine::new(&corpus, &h0, p0.clone(), zeros.clone()).unwrap();
    plain.loss_and_grads(&starts).expect("loss");
    let g = plain.grads().clone();
    let n = norm(&g);
    assert!(
        n > 100.0 * f64::from(c),
        "the gradients ({n}) must be well above the bound"
    );
    // By hand: one scale, computed in f64, rounded to f32, applied to every gradient.
    let scale = (f64::from(c) / n) as f32;
    let clipped = g.map(|x| x * scale);
    assert!((norm(&clipped) / f64::from(c) - 1.0).abs() < 1e-6);
    let (mut want, mut want_ms) = (p0.clone(), zeros.clone());
    RmsProp::from_hyper(&h1).step(&mut want, &mut want_ms, &clipped);

    let mut clipping = CpuEngine::new(&corpus, &h1, p0.clone(), zeros.clone()).unwrap();
    let loss = clipping.train_batch(&starts).unwrap();
    assert!(loss.is_finite());
    assert_eq!(
        clipping.grads(),
        &clipped,
        "the engine's gradients are the clipped ones"
    );
    assert_eq!(
        clipping.params().unwrap(),
        want,
        "weights after the clipped step"
    );
    assert_eq!(clipping.rmsprop_state().unwrap(), want_ms);
    // And clipping mattered: the unclipped step lands elsewhere (eps = 1e-7
    // is no longer negligible next to gradients of 1e-5).
    plain.train_batch(&starts).unwrap();
    assert_ne!(plain.params().unwrap(), want);
}

fn random_grads(n: usize, seed: u32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let u = (x >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            // Some zeros, and magnitudes over four decades.
            if i % 9 == 0 {
                0.0
            } else {
                u * 10f32.powi((i % 4) as i32 - 2)
            }
        })
        .collect()
}

/// `grad_norm_clip_f32` on the simulator against `clip_grad_norm`, within
/// 1e-6 relative, at several block sizes and lengths that are not
/// multiples of them; below the bound nothing changes, bit for bit.
#[test]
fn sim_clip_kernel_matches_the_cpu() {
    if !common::kernels() {
        return;
    }
    let mut dev = SimDevice::new(3);
    let layout = ParamLayout::new(13, 7);
    for (n, block, seed) in [(layout.len(), 1024, 1), (1000, 64, 2), (37, 1, 3)] {
        let grads = random_grads(n, seed);
        let total: f64 = grads
            .iter()
            .map(|&g| f64::from(g).powi(2))
            .sum::<f64>()
            .sqrt();
        for max_norm in [(0.3 * total) as f32, (3.0 * total).max(1.0) as f32] {
            let mut want = grads.clone();
            let want_norm = clip_grad_norm(&mut want, f64::from(max_norm));
            let d_g = dev.upload_new_f32(&grads).unwrap();
            let d_norm = dev.upload_new_f32(&[f32::NAN]).unwrap();
            let launcher = GradClipLauncher { block };
            launcher.clip(&mut dev, d_g, n, max_norm, d_norm).unwrap();
            let got = dev.download_vec_f32(d_g, n).unwrap();
            let got_norm = dev.download_vec_f32(d_norm, 1).unwrap()[0];
            dev.free(d_g).unwrap();
            dev.free(d_norm).unwrap();
            let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(1e-30);
            assert!(
                rel(f64::from(got_norm), want_norm) < 1e-6,
                "n={n} block={block}: norm {got_norm} vs {want_norm}"
            );
            let mut worst = 0f64;
            for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                let e = if w == 0.0 {
                    f64::from(g).abs()
                } else {
                    rel(f64::from(g), f64::from(w))
                };
                assert!(
                    e <= 1e-6,
                    "n={n} block={block} C={max_norm}: [{i}] {g} vs {w}"
                );
                worst = worst.max(e);
            }
            if want_norm <= f64::from(max_norm) {
                assert_eq!(got, grads, "below the bound nothing may change");
            }
            println!("n={n:5} block={block:4} C={max_norm:.3e}: max rel err {worst:.1e}");
        }
    }
    // The launcher refuses what the kernel's tree cannot reduce.
    for block in [0, 96, 2048] {
        let err = GradClipLauncher { block }
            .clip(&mut dev, DevicePtr::NULL, 0, 1.0, DevicePtr::NULL)
            .unwrap_err();
        assert!(err.to_string().contains("power of two"), "{err}");
    }
}

/// The GPU engine (simulator) with clipping on against the CPU engine:
/// two steps, gradients (clipped) and weights within the GPU tests' bound.
#[test]
fn sim_engine_with_clipping_matches_the_cpu_engine() {
    if !common::kernels() {
        return;
    }
    let corpus = OneHotCorpus::from_text(&text(), true).unwrap();
    let v = corpus.vocab().len();
    let hy = Hyper {
        batch: 6,
        ..hyper(Some(0.05))
    };
    let p0 = init_params(v, hy.hidden, hy.seed);
    let ms = Params::zeros(v, hy.hidden);
    let mut cpu = CpuEngine::new(&corpus, &hy, p0.clone(), ms.clone()).unwrap();
    let mut gpu = GpuEngine::new(SimDevice::new(1), Backend::Sim, &corpus, &hy, p0, ms).unwrap();
    let close = |what: &str, got: &[f32], want: &[f32]| {
        let scale = want.iter().fold(0f32, |m, w| m.max(w.abs()));
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let bound = 1e-5 * scale + 1e-4 * w.abs();
            assert!((g - w).abs() <= bound, "{what}[{i}]: {g} vs {w}");
        }
    };
    for starts in [[0u32, 9, 17, 40, 88, 130], [3, 5, 77, 200, 301, 411]] {
        let (lc, lg) = (
            cpu.train_batch(&starts).unwrap(),
            gpu.train_batch(&starts).unwrap(),
        );
        assert!((lc - lg).abs() <= 1e-4 * lc.abs(), "loss {lg} vs {lc}");
        let gg = gpu.grads().unwrap();
        assert!(
            (norm(&gg) / 0.05 - 1.0).abs() < 1e-5,
            "clipped norm {}",
            norm(&gg)
        );
        assert!((norm(cpu.grads()) / 0.05 - 1.0).abs() < 1e-6);
        let (pc, pg) = (cpu.params().unwrap(), gpu.params().unwrap());
        for (i, name) in TENSOR_NAMES.iter().enumerate() {
            close(
                &format!("grad {name}"),
                gg.tensors()[i],
                cpu.grads().tensors()[i],
            );
            close(&format!("weight {name}"), pg.tensors()[i], pc.tensors()[i]);
        }
    }
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_charlstm-cuda"));
    c.env("NO_COLOR", "1");
    c
}

/// 0, negative, NaN: refused by the library (naming the field) and by the
/// CLI (naming the flag); a good value trains and is saved in the checkpoint; a
/// resumed run may change it (inf turns it off) but not the model's flags.
#[test]
fn clip_norm_zero_negative_or_nan_is_refused() {
    for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        let err = hyper(Some(bad)).validate().unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidArgument {
                    name: "hyper.clip_norm",
                    ..
                }
            ),
            "{err}"
        );
        // The library names the field; the CLI (below) its flag.
        assert!(err.to_string().contains("hyper.clip_norm"), "{err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("t.txt");
    std::fs::write(&corpus, text()).unwrap();
    let out = dir.path().join("run");
    let train = |extra: &[&str]| {
        let mut c = bin();
        c.args(["train", "--device", "cpu", "--quiet", "--gen-length", "0"])
            .args([
                "--steps-per-epoch",
                "2",
                "--maxlen",
                "6",
                "--batch-size",
                "16",
            ])
            .arg("--corpus")
            .arg(&corpus)
            .arg("--out")
            .arg(&out)
            .args(extra);
        c.output().unwrap()
    };
    for bad in ["0", "-1", "nan", "-inf", "x"] {
        let flag = format!("--clip-norm={bad}");
        let o = train(&["--epochs", "1", "--hidden", "8", &flag]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{flag} was accepted");
        assert!(
            err.contains("--clip-norm") && !err.contains("panicked"),
            "{bad}: {err}"
        );
        assert!(!out.join("last.safetensors").exists());
    }
    let o = train(&["--epochs", "1", "--hidden", "8", "--clip-norm", "0.5"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("gradients clipped to norm 0.5"), "{err}");
    let last = out.join("last.safetensors");
    assert_eq!(Checkpoint::load(&last).unwrap().hyper.clip_norm, Some(0.5));
    // On resume the model's flags may not change; the clip norm may (inf: off).
    let o = train(&["--resume", "--epochs", "2", "--hidden", "9"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--hidden") && err.contains("differs"),
        "{err}"
    );
    let o = train(&["--resume", "--epochs", "2", "--clip-norm", "inf"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let resumed = Checkpoint::load(&last).unwrap();
    assert_eq!(
        (resumed.state.epochs_done, resumed.hyper.clip_norm),
        (2, None)
    );
}

/// A checkpoint written before `clip_norm` existed loads without clipping;
/// one without clipping is written exactly as before (no key); one with it
/// round-trips.
#[test]
fn checkpoints_with_and_without_clip_norm_load() {
    let old = r#"{"maxlen":60,"step":3,"hidden":128,"batch":128,"lr":0.01,"rho":0.9,"eps":1e-7,"epochs":60,"seed":42,"lowercase":true}"#;
    let h: Hyper = serde_json::from_str(old).unwrap();
    assert_eq!(h, Hyper::default());
    assert!(!serde_json::to_string(&h).unwrap().contains("clip_norm"));

    let dir = tempfile::tempdir().unwrap();
    let vocab: Vec<char> = "abc".chars().collect();
    for clip in [None, Some(0.25)] {
        let hyper = Hyper {
            hidden: 4,
            clip_norm: clip,
            ..Hyper::default()
        };
        let c = Checkpoint {
            params: init_params(3, 4, 1),
            rmsprop: Params::zeros(3, 4),
            vocab: vocab.clone(),
            hyper,
            state: Default::default(),
            run: None,
        };
        let path = dir.path().join("c.safetensors");
        c.save(&path).unwrap();
        let (_, meta) =
            safetensors::SafeTensors::read_metadata(&std::fs::read(&path).unwrap()).unwrap();
        let meta = meta.metadata().clone().unwrap();
        assert_eq!(
            meta["hyper"].contains("clip_norm"),
            clip.is_some(),
            "{}",
            meta["hyper"]
        );
        assert_eq!(Checkpoint::load(Path::new(&path)).unwrap(), c);
    }
}
