//! Stacked LSTM layers in the trainer (issue 17): hyper-parameters and
//! their errors, the parameter layout and its names, initialisation,
//! checkpoints, the CPU engine's loss and gradients (f64 central
//! differences, with dropout), training and resuming, stateful generation,
//! evaluation without dropout, a checkpoint from before stacks, and the
//! refusal of parameters that do not match the engine's stack.

mod common;

use charlstm_cuda::cpu::{self, stacked_loss, stacked_loss_and_grads};
use charlstm_cuda::model::{
    Checkpoint, GATE_F, Hyper, LayerTensor, ParamLayout, Params, Tensor, TrainState, init_params,
    init_stacked,
};
use charlstm_cuda::ops::Mode;
use charlstm_cuda::rundir::LAST_CHECKPOINT;
use charlstm_cuda::sample::{GenMode, GenerateRequest, Strategy, no_progress};
use charlstm_cuda::train::{BatchEvent, Control, Observer, Silent, TrainConfig, Trainer};
use charlstm_cuda::{Backend, Device, Error, OneHotCorpus};
use common::{random_batch, seed};

fn invalid(h: Hyper) -> String {
    match h.validate() {
        Err(e @ Error::InvalidArgument { .. }) => e.to_string(),
        other => panic!("expected an InvalidArgument, got {other:?}"),
    }
}

#[test]
fn bad_layers_dropout_and_hidden_are_refused_naming_the_limit() {
    let base = Hyper::default();
    assert_eq!((base.layers, base.dropout), (1, 0.0), "the notebook");
    let e = invalid(Hyper {
        layers: 0,
        ..base.clone()
    });
    assert!(e.contains("hyper.layers") && e.contains("1..=16"), "{e}");
    let e = invalid(Hyper {
        layers: 17,
        ..base.clone()
    });
    assert!(e.contains("hyper.layers"), "{e}");
    for p in [1.0, -0.1, 1.5, f32::NAN, f32::INFINITY] {
        let e = invalid(Hyper {
            layers: 2,
            dropout: p,
            ..base.clone()
        });
        assert!(
            e.contains("hyper.dropout") && e.contains("[0, 1)"),
            "{p}: {e}"
        );
    }
    let e = invalid(Hyper {
        hidden: 1025,
        ..base.clone()
    });
    assert!(e.contains("hyper.hidden") && e.contains("1..=1024"), "{e}");
    for ok in [
        Hyper {
            hidden: 1024,
            ..base.clone()
        },
        Hyper {
            layers: 16,
            dropout: 0.999,
            ..base.clone()
        },
        // Allowed, and does nothing: there is no layer above to drop into.
        Hyper {
            dropout: 0.5,
            ..base.clone()
        },
    ] {
        ok.validate().expect("valid");
    }
}

#[test]
fn layer_0_and_the_head_keep_their_offsets_and_names_and_upper_layers_follow() {
    let (v, h) = (7, 5);
    let one = ParamLayout::new(v, h);
    let three = ParamLayout::stacked(v, h, 3);
    assert_eq!(one.ranges(), three.ranges());
    let upper = 8 * h * h + 4 * h;
    assert_eq!(three.len(), one.len() + 2 * upper);
    let names: Vec<String> = three.named().into_iter().map(|t| t.name).collect();
    assert_eq!(
        names,
        [
            "lstm.kernel",
            "lstm.recurrent_kernel",
            "lstm.bias",
            "dense.kernel",
            "dense.bias",
            "lstm_1.kernel",
            "lstm_1.recurrent_kernel",
            "lstm_1.bias",
            "lstm_2.kernel",
            "lstm_2.recurrent_kernel",
            "lstm_2.bias",
        ]
    );
    // Back to back, covering the buffer once.
    let mut end = 0;
    for t in three.named() {
        assert_eq!(t.range.start, end, "{}", t.name);
        assert_eq!(
            t.range.len(),
            t.shape.iter().product::<usize>(),
            "{}",
            t.name
        );
        end = t.range.end;
    }
    assert_eq!(end, three.len());
    assert_eq!(three.layer_range(1, LayerTensor::Kernel).start, one.len());
}

#[test]
fn a_stack_s_layer_0_and_head_are_the_one_layer_init_and_upper_layers_are_keras_like() {
    let (v, h) = (11, 24);
    let one = init_params(v, h, 5);
    let three = init_stacked(v, h, 3, 5);
    for t in Tensor::ALL {
        assert_eq!(one[t], three[t], "{t:?} changed by stacking");
    }
    let g = 4 * h;
    let limit = (6.0f64 / (h + g) as f64).sqrt() as f32;
    let mut kernels = Vec::new();
    for k in 1..3 {
        let kernel = three.layer(k, LayerTensor::Kernel);
        assert!(kernel.iter().all(|x| x.abs() <= limit), "layer {k} kernel");
        let mean = kernel.iter().map(|&x| f64::from(x)).sum::<f64>() / kernel.len() as f64;
        assert!(
            mean.abs() < 0.05 * f64::from(limit),
            "layer {k}: mean {mean}"
        );
        let rk = three.layer(k, LayerTensor::RecurrentKernel);
        // Rows of the [H, 4H] recurrent kernel are orthonormal.
        for i in 0..h {
            for j in 0..=i {
                let dot: f64 = (0..g)
                    .map(|c| f64::from(rk[i * g + c]) * f64::from(rk[j * g + c]))
                    .sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-5, "layer {k}: row {i}.{j} = {dot}");
            }
        }
        let bias = three.layer(k, LayerTensor::Bias);
        for (i, &b) in bias.iter().enumerate() {
            let want = if i / h == GATE_F { 1.0 } else { 0.0 };
            assert_eq!(b, want, "layer {k} bias[{i}]");
        }
        kernels.push(kernel.to_vec());
    }
    assert_ne!(kernels[0], kernels[1], "each layer draws its own stream");
    assert_ne!(
        three.layer(1, LayerTensor::RecurrentKernel),
        &one[Tensor::RecurrentKernel][..]
    );
}

fn checkpoint(layers: usize, dropout: f32) -> Checkpoint {
    let vocab: Vec<char> = "abcdef".chars().collect();
    let hyper = Hyper {
        hidden: 6,
        layers,
        dropout,
        ..Hyper::default()
    };
    let params = init_stacked(vocab.len(), 6, layers, 3);
    let mut rmsprop = params.zeros_like();
    rmsprop
        .flat_mut()
        .iter_mut()
        .enumerate()
        .for_each(|(i, x)| *x = i as f32 * 1e-3);
    Checkpoint {
        vocab,
        hyper,
        params,
        rmsprop,
        state: TrainState::default(),
        run: None,
    }
}

#[test]
fn checkpoints_hold_every_layer_and_a_missing_one_is_named() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("c.safetensors");
    let c = checkpoint(3, 0.25);
    c.save(&path).expect("save");
    let back = Checkpoint::load(&path).expect("load");
    assert_eq!(back, c);
    assert_eq!((back.hyper.layers, back.hyper.dropout), (3, 0.25));

    // A one-layer checkpoint writes no `layers`/`dropout` key: the format
    // older builds read.
    let one = checkpoint(1, 0.0);
    let json = serde_json::to_string(&one.hyper).expect("json");
    assert!(
        !json.contains("layers") && !json.contains("dropout"),
        "{json}"
    );
    one.save(&path).expect("save");
    assert_eq!(Checkpoint::load(&path).expect("load"), one);

    // Drop `lstm_2.recurrent_kernel` from a 3-layer file.
    c.save(&path).expect("save");
    let bytes = std::fs::read(&path).expect("read");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("parse");
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).expect("meta");
    let kept: Vec<(String, safetensors::tensor::TensorView<'_>)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != "lstm_2.recurrent_kernel")
        .collect();
    let cut = safetensors::serialize(kept, header.metadata().clone()).expect("serialize");
    std::fs::write(&path, cut).expect("write");
    let e = Checkpoint::load(&path).expect_err("a layer is missing");
    let text = e.to_string();
    assert!(
        text.contains("`lstm_2.recurrent_kernel` is missing") && text.contains("3 LSTM layers"),
        "{text}"
    );
}

/// A checkpoint written before stacks existed loads unchanged: one layer,
/// every tensor read from its old name with its bits, and written back under
/// the same names with no `layers` or `dropout` key. The file is
/// `Checkpoint::save`'s output at 39f4106 (2026-11-29), the fuzz seed
/// `seed-unicode` of that commit (tests/fixtures/README.md).
#[test]
fn a_checkpoint_from_before_stacks_loads_unchanged() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/checkpoint-2026-11-29.safetensors");
    let bytes = std::fs::read(&path).expect("the fixture");
    let file = safetensors::SafeTensors::deserialize(&bytes).expect("parse");
    let hyper_json = |bytes: &[u8]| {
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes).expect("meta");
        header.metadata().as_ref().expect("metadata")["hyper"].clone()
    };
    let hyper_json_old = hyper_json(&bytes);
    assert!(
        !hyper_json_old.contains("layers") && !hyper_json_old.contains("dropout"),
        "the fixture is not of the old format: {hyper_json_old}"
    );
    let mut old_names: Vec<String> = file.names().into_iter().map(str::to_string).collect();
    old_names.sort();

    let c = Checkpoint::load(&path).expect("an old checkpoint loads");
    assert_eq!(
        (c.hyper.layers, c.hyper.dropout, c.params.layers),
        (1, 0.0, 1)
    );
    assert_eq!(c.vocab, [' ', '.', 'a', 'é', '😀']);
    assert_eq!((c.params.vocab, c.params.hidden), (5, 2));
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for t in c.params.layout().named() {
        for (prefix, p) in [("", &c.params), ("rmsprop.", &c.rmsprop)] {
            let name = format!("{prefix}{}", t.name);
            let view = file.tensor(&name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(view.shape(), &t.shape[..], "{name}");
            let want: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                .collect();
            assert_eq!(bits(&p.flat()[t.range.clone()]), bits(&want), "{name}");
        }
    }
    assert_eq!(old_names.len(), 2 * c.params.layout().named().len());

    let dir = tempfile::tempdir().expect("dir");
    let again = dir.path().join("again.safetensors");
    c.save(&again).expect("save");
    let bytes = std::fs::read(&again).expect("read");
    let written = hyper_json(&bytes);
    assert!(
        !written.contains("layers") && !written.contains("dropout"),
        "{written}"
    );
    let mut names: Vec<String> = safetensors::SafeTensors::deserialize(&bytes)
        .expect("parse")
        .names()
        .into_iter()
        .map(str::to_string)
        .collect();
    names.sort();
    assert_eq!(names, old_names, "layer 0 keeps the old names");
    assert_eq!(Checkpoint::load(&again).expect("load"), c);
}

/// Random f64 parameters of a stack, every tensor uniform in [-scale, scale).
fn random_stack(v: usize, h: usize, layers: usize, scale: f64, seed: u64) -> Params<f64> {
    let mut rng = charlstm_cuda::rng::RngStream::new(seed, charlstm_cuda::rng::Purpose::Sample, 7);
    let mut p = Params::<f64>::zeros_for(ParamLayout::stacked(v, h, layers));
    p.flat_mut()
        .iter_mut()
        .for_each(|x| *x = scale * (2.0 * rng.next_f64() - 1.0));
    p
}

const STEP: f64 = 1e-5;
const TOL: f64 = 1e-6;

/// The trainer's whole loss for N layers, with dropout in training mode
/// (a fixed mask: the same seed and step), against central differences
/// of its own loss, every element of every tensor.
fn gradient_check(layers: usize, dropout: f64) {
    let (v, h, t, b) = (5, 3, 4, 3);
    let p = random_stack(v, h, layers, 0.5, 20 + layers as u64);
    let (x, y) = random_batch(v, b, t, 21);
    let mode = Mode::Train { seed: 9, step: 4 };
    let (_, grads) = stacked_loss_and_grads(&p, (&x, &y, t), dropout, mode).expect("grads");
    let mut ws = cpu::StackedWorkspace::new();
    let mut loss =
        |q: &Params<f64>| stacked_loss(q, (&x, &y, t), dropout, mode, &mut ws).expect("loss");
    let mut q = p.clone();
    let mut worst = 0.0f64;
    for tensor in p.layout().named() {
        for i in tensor.range.clone() {
            let orig = p.flat()[i];
            q.flat_mut()[i] = orig + STEP;
            let plus = loss(&q);
            q.flat_mut()[i] = orig - STEP;
            let minus = loss(&q);
            q.flat_mut()[i] = orig;
            let numeric = (plus - minus) / (2.0 * STEP);
            let analytic = grads.flat()[i];
            let e = (analytic - numeric).abs() / numeric.abs().max(1.0);
            assert!(
                e <= TOL,
                "N={layers} p={dropout}: {}[{}]: analytic {analytic} vs numeric {numeric}",
                tensor.name,
                i - tensor.range.start
            );
            worst = worst.max(e);
        }
    }
    println!(
        "N={layers} dropout={dropout}: {} elements, worst scaled error {worst:.3e}",
        p.len()
    );
}

#[test]
fn gradients_of_two_layers_with_dropout_match_central_differences() {
    gradient_check(2, 0.3);
}

#[test]
fn gradients_of_three_layers_with_dropout_match_central_differences() {
    gradient_check(3, 0.4);
}

#[test]
fn dropout_changes_training_only_and_each_step_draws_new_masks() {
    let (v, h, t, b) = (6, 4, 5, 8);
    let p = random_stack(v, h, 2, 0.5, 30);
    let (x, y) = random_batch(v, b, t, 31);
    let mut ws = cpu::StackedWorkspace::new();
    let mut loss =
        |dropout: f64, mode| stacked_loss(&p, (&x, &y, t), dropout, mode, &mut ws).expect("loss");
    let eval = loss(0.5, Mode::Eval);
    let no_dropout = loss(0.0, Mode::Train { seed: 1, step: 0 });
    assert_eq!(eval, no_dropout, "p = 0 in training is evaluation");
    let a = loss(0.5, Mode::Train { seed: 1, step: 0 });
    let again = loss(0.5, Mode::Train { seed: 1, step: 0 });
    let next = loss(0.5, Mode::Train { seed: 1, step: 1 });
    assert_eq!(a, again, "the same (seed, step) draws the same masks");
    assert_ne!(a, eval);
    assert_ne!(a, next, "a new step draws new masks");
    // The library's loss (no mode) of a stack is evaluation.
    assert_eq!(cpu::loss(&p, &x, &y, t), eval);
}

#[test]
fn the_stacked_path_at_one_layer_agrees_with_the_fused_one() {
    let (v, h, t, b) = (9, 8, 7, 20);
    let p = random_stack(v, h, 1, 0.5, 40);
    let (x, y) = random_batch(v, b, t, 41);
    let (fused_loss, fused) = cpu::loss_and_grads(&p, &x, &y, t);
    let (loss, grads) = stacked_loss_and_grads(&p, (&x, &y, t), 0.0, Mode::Eval).expect("grads");
    assert!((loss - fused_loss).abs() < 1e-12, "{loss} vs {fused_loss}");
    for (i, (a, b)) in grads.flat().iter().zip(fused.flat()).enumerate() {
        assert!((a - b).abs() < 1e-12, "[{i}] {a} vs {b}");
    }
}

fn text() -> String {
    let mut s = String::new();
    let mut x: u32 = 3;
    for _ in 0..2000 {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        s.push(b"abcdefgh ."[(x >> 24) as usize % 10] as char);
    }
    s
}

fn hyper(layers: usize, dropout: f32) -> Hyper {
    Hyper {
        maxlen: 8,
        step: 2,
        hidden: 12,
        batch: 40,
        epochs: 2,
        seed: 9,
        layers,
        dropout,
        ..Hyper::default()
    }
}

fn config(out: &std::path::Path) -> TrainConfig {
    TrainConfig {
        gen_length: 5,
        out: Some(out.into()),
        ..TrainConfig::default()
    }
}

struct StopAfter(usize, usize);

impl Observer for StopAfter {
    fn on_batch(&mut self, _: &BatchEvent) -> Control {
        self.1 += 1;
        if self.1 == self.0 {
            Control::Stop
        } else {
            Control::Continue
        }
    }
}

#[test]
fn two_layers_with_dropout_train_on_the_cpu_and_resume_bit_for_bit() {
    let corpus = OneHotCorpus::from_text(&text(), true).expect("corpus");
    let fresh = |dir: &std::path::Path| {
        Trainer::builder(&corpus)
            .hyper(hyper(2, 0.3))
            .config(config(dir))
            .backend(Backend::Cpu)
            .build()
            .expect("trainer")
    };
    let straight = tempfile::tempdir().expect("dir");
    let summary = fresh(straight.path()).run(&mut Silent).expect("run");
    let losses = &summary.state.epoch_losses;
    assert!(losses[1] < losses[0], "the loss goes down: {losses:?}");

    let dir = tempfile::tempdir().expect("dir");
    let mut first = fresh(dir.path());
    let per_epoch = first.batches_per_epoch();
    let stopped = first.run(&mut StopAfter(per_epoch + 3, 0)).expect("run");
    assert!(stopped.stopped);
    drop(first);
    let ckpt = Checkpoint::load(&dir.path().join(LAST_CHECKPOINT)).expect("checkpoint");
    assert_eq!((ckpt.hyper.layers, ckpt.hyper.dropout), (2, 0.3));
    let mut resumed = Trainer::builder(&corpus)
        .resume(ckpt)
        .config(config(dir.path()))
        .device(Device::Exact(Backend::Cpu))
        .build()
        .expect("resume");
    resumed.run(&mut Silent).expect("resumed run");
    let a = Checkpoint::load(&straight.path().join(LAST_CHECKPOINT)).expect("a");
    let b = Checkpoint::load(&dir.path().join(LAST_CHECKPOINT)).expect("b");
    assert_eq!(
        a.params, b.params,
        "the dropout masks of a resumed run differ"
    );
    assert_eq!(a.state, b.state);
}

/// The device engines run a stack (issue 17): its next-character
/// probabilities on the simulator are the CPU's to rounding (training on
/// the device: tests/gpu_layers.rs).
#[test]
fn the_simulator_predicts_a_stack_as_the_cpu_does() {
    if !common::kernels() {
        return;
    }
    let params = init_stacked(5, 4, 2, 1);
    let batches: [(&[u32], usize); 1] = [(&[0, 1, 2, 3, 4, 0], 3)];
    let cpu = charlstm_cuda::device::predict(Backend::Cpu, &params, &batches).expect("cpu");
    let sim = charlstm_cuda::device::predict(Backend::Sim, &params, &batches).expect("sim");
    let worst = cpu[0]
        .iter()
        .zip(&sim[0])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "probabilities differ by {worst}");
}

#[test]
fn stateful_generation_of_a_stack_starts_where_window_mode_does() {
    let (v, h, maxlen) = (6, 8, 5);
    let params = init_stacked(v, h, 3, seed());
    let seed_indices: Vec<u32> = (0..maxlen as u32).map(|i| i % v as u32).collect();
    let strategies = [Strategy::Greedy];
    let req = GenerateRequest {
        seed_indices: &seed_indices,
        maxlen,
        length: 1,
        strategies: &strategies,
        seed: 1,
        stream: 0,
        mode: GenMode::Window,
    };
    let stateful =
        charlstm_cuda::stateful::generate_stateful(&params, &req, &mut no_progress).expect("gen");
    let window = charlstm_cuda::device::generate(Backend::Cpu, &params, &req).expect("gen");
    assert_eq!(stateful, window);
    // And its probabilities are window mode's predict.
    let mut model = charlstm_cuda::stateful::StatefulModel::new(&params, 1).expect("model");
    let probs = model.prime(&seed_indices).expect("prime").to_vec();
    let want = cpu::predict(&params, &seed_indices, maxlen);
    for (a, b) in probs.iter().zip(&want) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
    assert_eq!(model.h().len(), 3 * h, "[N, B, H]");
}

#[test]
fn the_engine_evaluates_and_predicts_a_stack_without_dropout() {
    let corpus = OneHotCorpus::from_text(&text(), true).expect("corpus");
    let h = hyper(3, 0.5);
    let params = init_stacked(corpus.vocab().len(), h.hidden, 3, 4);
    let mut engine =
        cpu::CpuEngine::new(&corpus, &h, params.clone(), params.zeros_like()).expect("engine");
    use charlstm_cuda::Engine;
    let starts: Vec<u32> = (0..16).map(|i| i * 7).collect();
    let (x, y) = cpu::gather(&corpus, &starts, h.maxlen);
    let eval = engine.eval_batch(&starts).expect("eval");
    assert_eq!(
        eval,
        cpu::loss(&params, &x, &y, h.maxlen),
        "eval is dropout-free"
    );
    let probs = engine.predict(&x, h.maxlen).expect("predict");
    assert_eq!(probs, cpu::predict(&params, &x, h.maxlen));
    // Training draws masks: its loss differs from evaluation's.
    let trained = engine.train_batch(&starts).expect("train");
    assert_ne!(trained, eval);
    // A mismatched stack is refused, not run.
    let e = cpu::CpuEngine::new(&corpus, &hyper(2, 0.0), params.clone(), params.zeros_like())
        .err()
        .expect("refused");
    assert!(e.to_string().contains("3 LSTM layer(s)"), "{e}");
}

/// The largest `--hidden` runs on the simulator's kernels (the per-step
/// path; the persistent one takes H <= 128), the same step as the CPU's.
#[test]
fn the_simulator_runs_the_largest_hidden_size_like_the_cpu() {
    let corpus =
        OneHotCorpus::from_text("abcdefgh abcdefgh abcdefgh abcdefgh", true).expect("corpus");
    let h = Hyper {
        hidden: charlstm_cuda::model::MAX_HIDDEN,
        maxlen: 3,
        batch: 2,
        ..Hyper::default()
    };
    let params = init_params(corpus.vocab().len(), h.hidden, 7);
    let starts = [0u32, 5];
    let mut losses = Vec::new();
    for backend in [Backend::Cpu, Backend::Sim] {
        let opened =
            Device::Exact(backend).open_engine(&corpus, &h, params.clone(), params.zeros_like());
        let (mut engine, _) = match opened {
            Ok(e) => e,
            // A build without kernels has no simulator to ask.
            Err(Error::NoKernels { .. }) => return,
            Err(e) => panic!("{backend:?}: {e}"),
        };
        losses.push(engine.train_batch(&starts).expect("step"));
    }
    assert!(
        (losses[0] - losses[1]).abs() < 1e-5,
        "cpu {} vs sim {}",
        losses[0],
        losses[1]
    );
}
