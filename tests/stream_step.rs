//! Stream (truncated-BPTT) training on the CPU: the gradient of a loss at
//! every step from a carried, nonzero initial state against central
//! differences (f64, as tests/gradcheck.rs), the carried state against one
//! long forward, and the engine's step against the function it wraps.

mod common;
use common::random_params;

use charlstm_cuda::cpu::{self, CpuEngine, RmsProp, StreamStep, stream_loss_and_grads};
use charlstm_cuda::model::{Grads, Hyper, Params, TENSOR_NAMES, init_stacked};
use charlstm_cuda::ops::Mode;
use charlstm_cuda::sample::{Purpose, RngStream};
use charlstm_cuda::{Backend, Device, Engine, OneHotCorpus, StreamBatch};

const STEP: f64 = 1e-5;
const TOL: f64 = 1e-6;

/// `n` random classes below `v`.
fn classes(v: usize, n: usize, seed: u64) -> Vec<u32> {
    let mut rng = RngStream::new(seed, Purpose::Sample, 2);
    (0..n).map(|_| rng.below(v as u64) as u32).collect()
}

/// A state [B, H] of values in (-0.8, 0.8): far from zero, so a gradient
/// that ignored h0 or c0 (or a forward that started from zeros) shows.
fn state(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = RngStream::new(seed, Purpose::Sample, 3);
    (0..n).map(|_| 0.8 * (2.0 * rng.next_f64() - 1.0)).collect()
}

#[test]
fn gradient_with_a_loss_at_every_step_and_a_carried_state() {
    check_gradient(5, 3, 4, 3);
}

/// L*B = 280 rows: the head takes its rows in blocks of 128, so this runs
/// two whole blocks and a partial one, and sums their weight gradients.
#[test]
fn gradient_over_several_blocks_of_head_rows() {
    check_gradient(5, 3, 2, 140);
}

/// The thread count changes no bit of a stream step (f32, five blocks of
/// head rows, the last partial, so that 4 threads split them with an empty
/// share; a carried state).
#[test]
fn the_thread_count_changes_no_bit() {
    let (v, h, l, b) = (11, 16, 6, 100);
    let p = init_stacked(v, h, 1, 5);
    let (x, y) = (classes(v, l * b, 31), classes(v, l * b, 32));
    let h0: Vec<f32> = state(b * h, 33).iter().map(|&s| s as f32).collect();
    let c0: Vec<f32> = state(b * h, 34).iter().map(|&s| s as f32).collect();
    let run = |threads: usize| {
        let mut step = StreamStep::new().with_threads(threads);
        let mut grads = p.zeros_like();
        let loss = step
            .loss_and_grads_into(&p, &x, &y, b, Some(&h0), Some(&c0), &mut grads)
            .unwrap();
        let mut bits = vec![loss.to_bits()];
        bits.extend(
            grads
                .tensors()
                .iter()
                .flat_map(|t| t.iter().map(|g| g.to_bits())),
        );
        bits.extend(step.h_n().iter().chain(step.c_n()).map(|s| s.to_bits()));
        bits
    };
    let one = run(1);
    for threads in [2, 3, 4, 7] {
        assert!(run(threads) == one, "{threads} threads changed bits");
    }
}

/// Every element of every gradient of a stream step of L steps of B
/// streams against central differences.
fn check_gradient(v: usize, h: usize, l: usize, b: usize) {
    let p = random_params(v, h, 0.5, 21);
    let (x, y) = (classes(v, l * b, 22), classes(v, l * b, 23));
    let (h0, c0) = (state(b * h, 24), state(b * h, 25));
    let loss = |q: &Params<f64>| {
        stream_loss_and_grads(q, &x, &y, b, Some(&h0), Some(&c0))
            .unwrap()
            .0
    };
    let (_, grads, _, _) = stream_loss_and_grads(&p, &x, &y, b, Some(&h0), Some(&c0)).unwrap();
    // The same loss from a zero state differs: the carried state is used.
    let zero = stream_loss_and_grads(&p, &x, &y, b, None, None).unwrap().0;
    assert!((zero - loss(&p)).abs() > 1e-3, "h0/c0 change nothing");
    for (ti, name) in TENSOR_NAMES.iter().enumerate() {
        let mut worst = 0.0f64;
        for i in 0..grads.tensors()[ti].len() {
            let mut q = p.clone();
            let orig = q.tensors()[ti][i];
            q.tensors_mut()[ti][i] = orig + STEP;
            let plus = loss(&q);
            q.tensors_mut()[ti][i] = orig - STEP;
            let minus = loss(&q);
            let numeric = (plus - minus) / (2.0 * STEP);
            let analytic = grads.tensors()[ti][i];
            let e = (analytic - numeric).abs() / numeric.abs().max(1.0);
            assert!(
                e <= TOL,
                "{name}[{i}]: analytic {analytic} vs numeric {numeric} (scaled error {e:.3e})"
            );
            worst = worst.max(e);
        }
        println!("{name:24} max scaled error {worst:.3e}");
    }
}

/// Two stacked layers with dropout between them (the masks of one fixed
/// training step, so the loss is a smooth function of the weights): every
/// element of every layer's gradient against central differences, from a
/// carried [2, B, H] state.
#[test]
fn gradient_of_a_stack_with_dropout_and_a_carried_state() {
    let (v, h, l, b, layers) = (5, 3, 4, 3, 2);
    let p: Params<f64> = init_stacked(v, h, layers, 31).map(f64::from);
    let (x, y) = (classes(v, l * b, 32), classes(v, l * b, 33));
    let (h0, c0) = (state(layers * b * h, 34), state(layers * b * h, 35));
    let mode = Mode::Train { seed: 7, step: 3 };
    let run = |q: &Params<f64>| {
        let mut step = StreamStep::new();
        step.set_dropout(0.4, mode);
        let mut grads = q.zeros_like();
        let loss = step
            .loss_and_grads_into(q, &x, &y, b, Some(&h0), Some(&c0), &mut grads)
            .unwrap();
        (loss, grads, step.h_n().len())
    };
    let (loss, grads, state_len) = run(&p);
    assert_eq!(state_len, layers * b * h, "the final state is [N, B, H]");
    let mut eval = StreamStep::new();
    let mut g = p.zeros_like();
    let undropped = eval
        .loss_and_grads_into(&p, &x, &y, b, Some(&h0), Some(&c0), &mut g)
        .unwrap();
    assert!((undropped - loss).abs() > 1e-6, "dropout changes nothing");
    let mut worst = 0.0f64;
    for i in 0..p.len() {
        let mut q = p.clone();
        let orig = q.flat()[i];
        q.flat_mut()[i] = orig + STEP;
        let plus = run(&q).0;
        q.flat_mut()[i] = orig - STEP;
        let minus = run(&q).0;
        let numeric = (plus - minus) / (2.0 * STEP);
        let analytic = grads.flat()[i];
        let e = (analytic - numeric).abs() / numeric.abs().max(1.0);
        assert!(
            e <= TOL,
            "element {i}: analytic {analytic} vs numeric {numeric} (scaled error {e:.3e})"
        );
        worst = worst.max(e);
    }
    println!("{} elements, max scaled error {worst:.3e}", p.len());
}

#[test]
fn a_loss_at_every_step_is_the_mean_of_window_losses() {
    // Step t of stream b with a zero state is a window of t + 1 characters
    // from the stream's start: its loss is window mode's on that window.
    let (v, h, l, b) = (6, 4, 5, 2);
    let p = random_params(v, h, 0.5, 31);
    let (x, y) = (classes(v, l * b, 32), classes(v, l * b, 33));
    let (loss, _, _, _) = stream_loss_and_grads(&p, &x, &y, b, None, None).unwrap();
    let mut sum = 0.0;
    for t in 0..l {
        for s in 0..b {
            let window: Vec<u32> = (0..=t).map(|k| x[k * b + s]).collect();
            sum += cpu::loss(&p, &window, &[y[t * b + s]], t + 1);
        }
    }
    let mean = sum / (l * b) as f64;
    assert!((loss - mean).abs() < 1e-12, "{loss} vs {mean}");
}

#[test]
fn two_carried_halves_end_in_the_state_of_one_long_forward() {
    let (v, h, l, b) = (7, 8, 6, 5);
    let p = random_params(v, h, 0.5, 41).map(|w| w as f32);
    let (x, y) = (classes(v, 2 * l * b, 42), classes(v, 2 * l * b, 43));
    let (h0, c0): (Vec<f32>, Vec<f32>) = (
        state(b * h, 44).iter().map(|&s| s as f32).collect(),
        state(b * h, 45).iter().map(|&s| s as f32).collect(),
    );
    let mut g = Grads::zeros(v, h);
    let mut long = StreamStep::new();
    long.loss_and_grads_into(&p, &x, &y, b, Some(&h0), Some(&c0), &mut g)
        .unwrap();
    let mut halves = StreamStep::new();
    let (first, second) = (0..l * b, l * b..2 * l * b);
    halves
        .loss_and_grads_into(
            &p,
            &x[first.clone()],
            &y[first],
            b,
            Some(&h0),
            Some(&c0),
            &mut g,
        )
        .unwrap();
    let (h1, c1) = (halves.h_n().to_vec(), halves.c_n().to_vec());
    assert_ne!(h1, long.h_n(), "half way is not the end");
    halves
        .loss_and_grads_into(
            &p,
            &x[second.clone()],
            &y[second],
            b,
            Some(&h1),
            Some(&c1),
            &mut g,
        )
        .unwrap();
    assert_eq!(halves.h_n(), long.h_n());
    assert_eq!(halves.c_n(), long.c_n());
}

/// A text whose every character is in the vocabulary, long enough for a few streams.
fn corpus() -> OneHotCorpus {
    let text = "the free spirit laughs at the weight of old truths; ".repeat(12);
    OneHotCorpus::from_text(&text, true).unwrap()
}

#[test]
fn the_engine_step_is_the_function_then_rmsprop_and_it_carries() {
    let corpus = corpus();
    let hyper = Hyper {
        hidden: 6,
        ..Hyper::default()
    };
    let v = corpus.vocab().len();
    let p0 = random_params(v, hyper.hidden, 0.3, 51).map(|w| w as f32);
    let zeros = Params::zeros(v, hyper.hidden);
    let mut engine = CpuEngine::new(&corpus, &hyper, p0.clone(), zeros.clone()).unwrap();
    assert_eq!(engine.stream_state().unwrap(), (Vec::new(), Vec::new()));
    let (starts, l) = ([0u32, 100, 200], 7);
    let gather = |shift: u32| {
        let mut x = Vec::new();
        let mut y = Vec::new();
        for t in 0..l as u32 {
            for &s in &starts {
                x.push(corpus.class_at((s + shift + t) as usize));
                y.push(corpus.class_at((s + shift + t + 1) as usize));
            }
        }
        (x, y)
    };
    // Carrying before any batch is an error, not a zero state.
    let early = StreamBatch {
        starts: &starts,
        seq_len: l,
        carry: true,
    };
    let err = engine.queue_train_stream(early).unwrap_err().to_string();
    assert!(err.contains("carry = false"), "{err}");

    let first = StreamBatch {
        starts: &starts,
        seq_len: l,
        carry: false,
    };
    let loss = engine.queue_train_stream(first).unwrap().unwrap();
    let (x, y) = gather(0);
    let (want, grads, h1, c1) = stream_loss_and_grads(&p0, &x, &y, 3, None, None).unwrap();
    assert_eq!(loss, want);
    let (mut p1, mut ms) = (p0.clone(), zeros.clone());
    RmsProp::from_hyper(&hyper).step(&mut p1, &mut ms, &grads);
    assert_eq!(engine.params().unwrap(), p1);
    assert_eq!(engine.stream_state().unwrap(), (h1.clone(), c1.clone()));

    let next: Vec<u32> = starts.iter().map(|s| s + l as u32).collect();
    let second = StreamBatch {
        starts: &next,
        seq_len: l,
        carry: true,
    };
    let loss = engine.queue_train_stream(second).unwrap().unwrap();
    let (x, y) = gather(l as u32);
    let want = stream_loss_and_grads(&p1, &x, &y, 3, Some(&h1), Some(&c1))
        .unwrap()
        .0;
    assert_eq!(loss, want);

    // A state set from outside is the one carried.
    let (hs, cs) = (vec![0.25f32; 3 * 6], vec![-0.5f32; 3 * 6]);
    engine.set_stream_state(&hs, &cs).unwrap();
    assert_eq!(engine.stream_state().unwrap(), (hs, cs));
    let err = engine.set_stream_state(&[0.0; 5], &[0.0; 5]).unwrap_err();
    assert!(err.to_string().contains("[N, B, H]"), "{err}");
    // A batch of another B cannot carry it.
    let two = StreamBatch {
        starts: &starts[..2],
        seq_len: l,
        carry: true,
    };
    let err = engine.queue_train_stream(two).unwrap_err().to_string();
    assert!(
        err.contains("the kept state is of 3 streams, this batch has 2"),
        "{err}"
    );
    // A stream running past the text is refused.
    let past = [corpus.rows() as u32 - 3];
    let late = StreamBatch {
        starts: &past,
        seq_len: l,
        carry: false,
    };
    let err = engine.queue_train_stream(late).unwrap_err().to_string();
    assert!(err.contains("no target inside the corpus"), "{err}");
}

/// A stream batch of `starts`.
fn streams(starts: &[u32], seq_len: usize, carry: bool) -> StreamBatch<'_> {
    StreamBatch {
        starts,
        seq_len,
        carry,
    }
}

/// `StreamBatch::check` is the one check of a stream batch: the CPU engine
/// and the device engine (on the simulator) refuse the same bad batches
/// with the same words, each naming the problem and the fix.
#[test]
fn every_engine_refuses_a_bad_stream_batch_in_the_same_words() {
    let corpus = corpus();
    let rows = corpus.rows();
    let hyper = Hyper {
        hidden: 4,
        ..Hyper::default()
    };
    let v = corpus.vocab().len();
    let p0 = random_params(v, hyper.hidden, 0.3, 52).map(|w| w as f32);
    let zeros = Params::zeros(v, hyper.hidden);
    let starts = [0u32, 100, 200];
    let past = [0u32, rows as u32 - 5];
    // Before any batch (no state to carry), then after one batch of B = 3.
    let before = [
        (
            streams(&starts, 3, true),
            "no stream batch completed before this one",
        ),
        (
            streams(&[], 3, false),
            "needs at least one stream and one step",
        ),
        (
            streams(&starts, 0, false),
            "needs at least one stream and one step",
        ),
        (streams(&past, 5, false), "no target inside the corpus"),
    ];
    let after = [(
        streams(&starts[..2], 3, true),
        "the kept state is of 3 streams",
    )];
    let mut said: Vec<Vec<String>> = Vec::new();
    for device in [Backend::Cpu, Backend::Sim] {
        let (mut engine, _) = Device::Exact(device)
            .open_engine(&corpus, &hyper, p0.clone(), zeros.clone())
            .unwrap();
        let mut words = Vec::new();
        let mut refuse = |engine: &mut dyn Engine, b: StreamBatch<'_>, want: &str| {
            let err = engine.queue_train_stream(b).unwrap_err().to_string();
            assert!(err.contains(want), "{device}: {err}");
            words.push(err);
        };
        for (b, want) in before {
            refuse(engine.as_mut(), b, want);
        }
        engine
            .queue_train_stream(streams(&starts, 3, false))
            .unwrap();
        for (b, want) in after {
            refuse(engine.as_mut(), b, want);
        }
        said.push(words);
    }
    assert_eq!(said[0], said[1], "cpu and sim word the refusals alike");
    // Each says what to do: where the starts must stay, or carry = false.
    let below = format!("every start must be below {}", rows - 5);
    assert!(said[0][3].contains(&below), "{}", said[0][3]);
    for k in [0, 4] {
        assert!(said[0][k].contains("carry = false"), "{}", said[0][k]);
    }
    assert!(said[0][1].contains("seq_len >= 1"), "{}", said[0][1]);
}
