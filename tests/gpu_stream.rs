//! `GpuEngine`'s stream mode (issue 18: `queue_train_stream`,
//! `stream_state`, `set_stream_state`) on the simulator, against a
//! reference built here from the CPU's pieces: `ops::Lstm` (f64) from the
//! carried state, the head's math over all B*L rows
//! (`gpu::selftest::head_rows`, f64) and `RmsProp::step` (f64). (The CPU
//! engine's own stream mode is another branch's; once merged, this can
//! compare with it directly.)
//!
//! Three batches of B streams advancing L characters each: the first from
//! h = c = 0 (`carry` false), the next two carrying the state. As in
//! tests/gpu_engine.rs, each step starts from one shared state (weights,
//! RMSprop and the carried (h, c), set on the engine with `set_state` and
//! `set_stream_state`): a step's rounding then cannot compound. Per step:
//! the loss (element bound `1e-5 max|ref| + 1e-4 |ref|`), the weights and
//! RMSprop state as whole tensors (relative L2 1e-4: RMSprop amplifies
//! the error of a near-cancelling gradient element, see gpu_engine.rs), and
//! the carried state after the step (element bound). Random text, shapes
//! and initial weights, fresh every run (seed printed; CHARLSTM_TEST_SEED
//! replays). Also: the engine's own carried state over the three steps
//! (no `set_*` between them) gives the same losses as the shared-state run
//! to rounding, and bad stream batches are clear errors.

mod common;
use common::{Rng, seed};

use charlstm_cuda::corpus::OneHotCorpus;
use charlstm_cuda::cpu::RmsProp;
use charlstm_cuda::gpu::selftest::head_rows;
use charlstm_cuda::gpu::{GpuEngine, SimDevice};
use charlstm_cuda::model::{Hyper, Params, TENSOR_NAMES, Tensor, init_params};
use charlstm_cuda::ops::{LayerWeights, Lstm, LstmInput, Mode};
use charlstm_cuda::{Backend, Engine, StreamBatch};

const WEIGHT_L2: f64 = 1e-4;

/// `|err| <= 1e-5 max|ref| + 1e-4 |ref|` element-wise.
fn check(name: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let scale = want.iter().fold(0f64, |m, &w| m.max(w.abs()));
    let mut worst = 0f64;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (f64::from(g) - w).abs();
        let bound = 1e-5 * scale + 1e-4 * w.abs();
        worst = worst.max(err / (scale.max(f64::MIN_POSITIVE)));
        assert!(
            err <= bound,
            "{name}[{i}]: got {g:e}, want {w:e} (bound {bound:e})"
        );
    }
    println!(
        "  {name:<28} {:>6} values  max err / max|ref| {worst:.1e}",
        got.len()
    );
}

fn check_l2(name: &str, got: &[f32], want: &[f64]) {
    let (mut diff, mut norm) = (0f64, 0f64);
    for (&g, &w) in got.iter().zip(want) {
        diff += (f64::from(g) - w).powi(2);
        norm += w * w;
    }
    let rel = diff.sqrt() / norm.sqrt().max(f64::MIN_POSITIVE);
    println!("  {name:<28} {:>6} values  rel L2 err {rel:.2e}", got.len());
    assert!(rel <= WEIGHT_L2, "{name}: relative L2 error {rel:.3e}");
}

fn random_corpus(rng: &mut Rng, v: usize, len: usize) -> OneHotCorpus {
    let sym = |i: usize| char::from_u32(0xE000 + i as u32).expect("valid char");
    let mut text: String = (0..v).map(sym).collect();
    text.extend((0..len).map(|_| sym(rng.range(0, v))));
    OneHotCorpus::from_text(&text, true).expect("corpus")
}

/// Everything a stream step changes.
#[derive(Clone)]
struct State {
    params: Params<f32>,
    ms: Params<f32>,
    h: Vec<f32>,
    c: Vec<f32>,
}

/// The reference step in f64 from `s` (f32 values, widened): the loss, and
/// the state after the step (weights, RMSprop, carried (h, c)).
fn reference_step(
    s: &State,
    corpus: &OneHotCorpus,
    batch: StreamBatch<'_>,
    opt: &RmsProp,
) -> (f64, Params<f64>, Params<f64>, Vec<f64>, Vec<f64>) {
    let (b, l) = (batch.starts.len(), batch.seq_len);
    let (v, h) = (s.params.vocab, s.params.hidden);
    let classes = |dt: usize| -> Vec<u32> {
        (0..l * b)
            .map(|i| corpus.class_at(batch.starts[i % b] as usize + i / b + dt))
            .collect()
    };
    let (x, y) = (classes(0), classes(1));
    let mut p = s.params.map(f64::from);
    let mut ms = s.ms.map(f64::from);
    let widen = |x: &[f32]| -> Vec<f64> { x.iter().map(|&v| f64::from(v)).collect() };
    let (h0, c0) = match batch.carry {
        true => (widen(&s.h), widen(&s.c)),
        false => (vec![0.0; b * h], vec![0.0; b * h]),
    };
    let lstm = Lstm::new(1, v, h).unwrap();
    let weights = [LayerWeights {
        kernel: &p[Tensor::Kernel],
        recurrent_kernel: &p[Tensor::RecurrentKernel],
        bias: &p[Tensor::Bias],
    }];
    let input = LstmInput::classes(&x, l, b);
    let out = lstm
        .forward(&weights, input, Some(&h0), Some(&c0), Mode::Eval)
        .unwrap();
    let (h_n, c_n) = (out.h_n().to_vec(), out.c_n().to_vec());
    let head = head_rows(&p, out.y(), &y, 1.0 / (b * l) as f64);
    let g = lstm.backward(&weights, out, &head.dh, None, None).unwrap();
    let mut grads = Params::<f64>::zeros(v, h);
    let layer = &g.layers[0];
    grads[Tensor::Kernel].copy_from_slice(&layer.kernel);
    grads[Tensor::RecurrentKernel].copy_from_slice(&layer.recurrent_kernel);
    grads[Tensor::Bias].copy_from_slice(&layer.bias);
    grads[Tensor::DenseKernel].copy_from_slice(&head.d_dense_kernel);
    grads[Tensor::DenseBias].copy_from_slice(&head.d_dense_bias);
    opt.step(&mut p, &mut ms, &grads);
    (head.loss, p, ms, h_n, c_n)
}

fn narrow(x: &[f64]) -> Vec<f32> {
    x.iter().map(|&v| v as f32).collect()
}

#[test]
fn stream_steps_match_the_cpu_reference_on_the_simulator() {
    if !common::kernels() {
        return;
    }
    let seed = seed();
    let mut rng = Rng(seed);
    // H a multiple of 8 runs the persistent kernels' sequence form, else the per-step ones.
    for (v, h, b, l) in [(13, 16, 3, 5), (70, 12, 2, 4)] {
        println!("V={v} H={h} B={b} L={l}");
        let steps = 3;
        let corpus = random_corpus(&mut rng, v, b * (steps * l + 2) + 8);
        let stride = (corpus.rows() - 1) / b;
        let hyper = Hyper {
            maxlen: l,
            step: 1,
            hidden: h,
            batch: b,
            seed,
            ..Hyper::default()
        };
        let opt = RmsProp::from_hyper(&hyper);
        let params = init_params(v, h, seed);
        let zeros = Params::zeros(v, h);
        let mut engine = GpuEngine::new(
            SimDevice::new(seed),
            Backend::Sim,
            &corpus,
            &hyper,
            params.clone(),
            zeros.clone(),
        )
        .unwrap();
        assert_eq!(engine.stream_state().unwrap(), (Vec::new(), Vec::new()));
        let mut s = State {
            params: params.clone(),
            ms: zeros.clone(),
            h: vec![0.0; b * h],
            c: vec![0.0; b * h],
        };
        let mut shared_losses = Vec::new();
        let starts_at =
            |k: usize| -> Vec<u32> { (0..b).map(|i| (i * stride + k * l) as u32).collect() };
        for k in 0..steps {
            let starts = starts_at(k);
            let batch = StreamBatch {
                starts: &starts,
                seq_len: l,
                carry: k > 0,
            };
            engine.set_state(&s.params, &s.ms).unwrap();
            if k > 0 {
                engine.set_stream_state(&s.h, &s.c).unwrap();
            }
            assert_eq!(engine.queue_train_stream(batch).unwrap(), None);
            let loss = engine.collect_losses().unwrap();
            let (want_loss, p, ms, h_n, c_n) = reference_step(&s, &corpus, batch, &opt);
            println!(
                " step {k} (carry {}): loss {} want {want_loss}",
                k > 0,
                loss[0]
            );
            check("loss", &loss, &[want_loss]);
            let (got_p, got_ms) = (engine.params().unwrap(), engine.rmsprop_state().unwrap());
            for (i, name) in TENSOR_NAMES.iter().enumerate() {
                check_l2(name, got_p.tensors()[i], p.tensors()[i]);
                check_l2(
                    &format!("rmsprop {name}"),
                    got_ms.tensors()[i],
                    ms.tensors()[i],
                );
            }
            let (got_h, got_c) = engine.stream_state().unwrap();
            check("carried h", &got_h, &h_n);
            check("carried c", &got_c, &c_n);
            shared_losses.push(loss[0]);
            s = State {
                params: p.map(|x| x as f32),
                ms: ms.map(|x| x as f32),
                h: narrow(&h_n),
                c: narrow(&c_n),
            };
        }

        // The engine's own carried state, no set_* between the steps.
        engine.set_state(&params, &zeros).unwrap();
        for k in 0..steps {
            let starts = starts_at(k);
            let batch = StreamBatch {
                starts: &starts,
                seq_len: l,
                carry: k > 0,
            };
            engine.queue_train_stream(batch).unwrap();
        }
        let own = engine.collect_losses().unwrap();
        let want: Vec<f64> = shared_losses.iter().map(|&x| f64::from(x)).collect();
        check("losses, own carried state", &own, &want);

        // Bad batches: clear errors naming the problem.
        let starts = starts_at(0);
        let err = |batch: StreamBatch<'_>, engine: &mut GpuEngine<'_, SimDevice>| {
            engine.queue_train_stream(batch).unwrap_err().to_string()
        };
        let other_b = [0u32];
        let e = err(
            StreamBatch {
                starts: &other_b,
                seq_len: l,
                carry: true,
            },
            &mut engine,
        );
        assert!(e.contains("carry") && e.contains("streams"), "{e}");
        let past = [corpus.rows() as u32 - 1];
        let e = err(
            StreamBatch {
                starts: &past,
                seq_len: 1,
                carry: false,
            },
            &mut engine,
        );
        assert!(e.contains("no target inside the corpus"), "{e}");
        let e = err(
            StreamBatch {
                starts: &starts,
                seq_len: 0,
                carry: false,
            },
            &mut engine,
        );
        assert!(e.contains("at least one"), "{e}");
        let e = engine.set_stream_state(&[0.0; 3], &[0.0; 3]).unwrap_err();
        assert!(e.to_string().contains("[B, H]"), "{e}");
    }
}
