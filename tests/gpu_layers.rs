//! Stacked layers (issue 17) on the device engines: `--layers N --dropout
//! p` trains on the simulator (the real kernels: `gpu::lstm::stack`) as
//! it does on the CPU, in window and stream mode: the same batch losses,
//! validation losses and weights to float rounding over two epochs (the
//! dropout masks keyed by the run's step on both); a stream run with
//! layers stopped inside an epoch and resumed on the simulator equals the
//! one never stopped (the carried [N, B, H] state and the step restored);
//! prediction of a stack on the device, and its generation in window and
//! stateful mode (the latter drawing the CPU's characters). The `*cuda*`
//! twin runs the same comparison on a GPU (the GPU bundle runs it).

mod common;
use common::cli::{Dir, tensors};

use std::path::Path;
use std::sync::{Arc, Mutex};

use charlstm_cuda::engine::Batch;
use charlstm_cuda::gpu::{CudaDevice, GpuDevice, GpuEngine, GpuModel, SimDevice};
use charlstm_cuda::model::{Checkpoint, Hyper, Params, TrainMode, init_stacked};
use charlstm_cuda::rundir::LAST_CHECKPOINT;
use charlstm_cuda::sample::{GenMode, GenerateRequest, Strategy, no_progress};
use charlstm_cuda::train::{BatchEvent, Control, Observer};
use charlstm_cuda::{Backend, Engine, OneHotCorpus, Silent, TrainConfig, Trainer};

/// About 9,000 characters of words.
fn text() -> String {
    words(1800)
}

/// `n` words, about 5n characters.
fn words(n: usize) -> String {
    let words = [
        "the ", "will ", "to ", "power ", "is ", "not ", "what ", "we, ", "free ", "spirit ",
    ];
    (0..n)
        .map(|i| words[(i * 7 + i / 5 + i / 13) % words.len()])
        .collect()
}

fn hyper(layers: usize, dropout: f32) -> Hyper {
    Hyper {
        hidden: 16,
        batch: 8,
        maxlen: 10,
        epochs: 2,
        layers,
        dropout,
        ..Hyper::default()
    }
}

fn config(mode: TrainMode, out: Option<&Path>) -> TrainConfig {
    TrainConfig {
        gen_length: 0,
        out: out.map(Path::to_path_buf),
        val_fraction: 0.2,
        steps_per_epoch: Some(3),
        mode,
        ..TrainConfig::default()
    }
}

const STREAM: TrainMode = TrainMode::Stream { seq_len: 6 };

/// Records the loss of every batch, in order.
struct Losses(Arc<Mutex<Vec<f32>>>);

impl Observer for Losses {
    fn on_batch(&mut self, e: &BatchEvent) -> Control {
        self.0.lock().expect("not poisoned").push(e.loss);
        Control::Continue
    }
}

/// Two epochs of three batches on the CPU and on `device`: the batch and
/// validation losses within 1e-4 (relative), the weights as
/// `common::assert_weights_alike` holds them, as tests/stream_train.rs
/// holds one layer.
fn trains_as_the_cpu_does(device: Backend, hyper: Hyper, mode: TrainMode) {
    let corpus = OneHotCorpus::from_text(&text(), true).expect("corpus");
    let mut runs = Vec::new();
    for b in [Backend::Cpu, device] {
        let losses: Arc<Mutex<Vec<f32>>> = Arc::default();
        let mut t = Trainer::builder(&corpus)
            .hyper(hyper.clone())
            .config(config(mode, None))
            .backend(b)
            .build()
            .expect("trainer");
        assert_eq!(t.backend(), b);
        let summary = t.run(&mut Losses(losses.clone())).expect("run");
        let params = t.engine_mut().params().expect("params");
        assert_eq!(params.layers, hyper.layers);
        let batch = losses.lock().expect("not poisoned").clone();
        runs.push((batch, summary.state.val_losses.clone(), params));
    }
    let (cpu, dev) = (&runs[0], &runs[1]);
    let what = format!(
        "--layers {} --dropout {} {mode:?}",
        hyper.layers, hyper.dropout
    );
    assert_eq!(cpu.0.len(), 6, "{what}: two epochs of three batches");
    assert_eq!(cpu.0.len(), dev.0.len());
    for (i, (a, b)) in cpu.0.iter().zip(&dev.0).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * a.abs(),
            "{what}: batch {i}: cpu {a}, {device} {b}"
        );
    }
    assert_eq!(cpu.1.len(), 2);
    for (a, b) in cpu.1.iter().zip(&dev.1) {
        assert!(
            (a - b).abs() <= 1e-4 * a.abs(),
            "{what}: validation: cpu {a}, {device} {b}"
        );
    }
    common::assert_weights_alike(&what, cpu.2.flat(), dev.2.flat(), hyper.lr);
}

#[test]
fn two_layers_with_dropout_train_on_the_simulator_as_on_the_cpu() {
    if !common::kernels() {
        return;
    }
    for mode in [TrainMode::Window, STREAM] {
        trains_as_the_cpu_does(Backend::Sim, hyper(2, 0.25), mode);
    }
}

#[test]
fn three_layers_train_on_the_simulator_as_on_the_cpu() {
    if !common::kernels() {
        return;
    }
    for mode in [TrainMode::Window, STREAM] {
        trains_as_the_cpu_does(Backend::Sim, hyper(3, 0.0), mode);
    }
}

#[test]
fn stacks_train_on_cuda_as_on_the_cpu() {
    match charlstm_cuda::gpu::CudaDevice::new(0) {
        Ok(dev) => {
            drop(dev);
            for (layers, p) in [(2, 0.25), (3, 0.0)] {
                for mode in [TrainMode::Window, STREAM] {
                    trains_as_the_cpu_does(Backend::Cuda, hyper(layers, p), mode);
                }
            }
        }
        Err(e) => println!("SKIPPED: no GPU ({e})"),
    }
}

/// Window-mode steps of a stack as a replayed graph give the bits of the
/// same steps launched one by one, with and without dropout (the masks
/// read their step from a device counter the step advances, so each
/// replay draws the next step's masks).
#[test]
fn a_stack_replays_its_step_graph_bit_for_bit() {
    if !common::kernels() {
        return;
    }
    let corpus = OneHotCorpus::from_text(&words(60), true).expect("corpus");
    let run = |graphs: bool, dropout: f32| {
        let hy = hyper(3, dropout);
        let params = init_stacked(corpus.vocab().len(), hy.hidden, 3, 5);
        let ms = params.zeros_like();
        let dev = SimDevice::new(9);
        let mut e = GpuEngine::new(dev, Backend::Sim, &corpus, &hy, params, ms).expect("engine");
        e.set_graphs(graphs).expect("graphs");
        let order: Vec<u32> = (0..5 * hy.batch as u32).map(|i| i * 3 % 200).collect();
        e.begin_epoch(&order, 0).expect("epoch");
        for _ in 0..5 {
            e.queue_train(Batch::Next(hy.batch)).expect("step");
        }
        let losses = e.collect_losses().expect("losses");
        let bits = |p: Params<f32>| p.flat().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        (losses, bits(e.params().expect("params")), e.graph_stats())
    };
    for p in [0.0, 0.25] {
        let (replayed, launched) = (run(true, p), run(false, p));
        let stats = &replayed.2;
        assert!(stats.replays >= 2 && stats.failed.is_none(), "{stats:?}");
        assert_eq!(replayed.0, launched.0, "losses, dropout {p}");
        assert_eq!(replayed.1, launched.1, "weights, dropout {p}");
    }
}

/// Training a stack on a device with stateful samples after each epoch:
/// the samples come from the device stack, one step a character.
#[test]
fn stateful_samples_of_a_stack_on_a_device_are_drawn() {
    if !common::kernels() {
        return;
    }
    let corpus = OneHotCorpus::from_text(&words(100), true).expect("corpus");
    let mut t = Trainer::builder(&corpus)
        .hyper(hyper(2, 0.0))
        .config(TrainConfig {
            gen_length: 5,
            gen_mode: GenMode::Stateful,
            ..config(TrainMode::Window, None)
        })
        .backend(Backend::Sim)
        .build()
        .expect("a stack trains with stateful samples on a device");
    struct Rows(Vec<charlstm_cuda::rundir::EpochRow>);
    impl Observer for Rows {
        fn on_epoch(&mut self, row: &charlstm_cuda::rundir::EpochRow) -> Control {
            self.0.push(row.clone());
            Control::Continue
        }
    }
    let mut rows = Rows(Vec::new());
    t.run(&mut rows).expect("run");
    let samples = &rows.0.last().expect("an epoch").samples;
    assert!(!samples.is_empty(), "no samples");
    for s in samples {
        assert!(s.text.chars().count() >= 5, "{s:?}");
    }
}

struct StopAt {
    epoch: usize,
    at: usize,
}

impl Observer for StopAt {
    fn on_batch(&mut self, e: &BatchEvent) -> Control {
        match (e.epoch, e.batch) == (self.epoch, self.at) {
            true => Control::Stop,
            false => Control::Continue,
        }
    }
}

/// A 2-layer stream run with dropout on the simulator, stopped inside its
/// second epoch and resumed from the checkpoint, ends with the weights of
/// the run never stopped, to the bit (the kernels sum in fixed orders; the
/// carried [N, B, H] state and the dropout step come back with the resume).
/// Epochs of about 40 batches: a device engine reads losses back 32
/// batches at a time, and a stop takes effect only inside an epoch.
#[test]
fn a_stacked_stream_run_on_the_simulator_resumes_bit_for_bit() {
    if !common::kernels() {
        return;
    }
    let corpus = OneHotCorpus::from_text(&words(420), true).expect("corpus");
    let hyper = Hyper {
        hidden: 8,
        ..hyper(2, 0.25)
    };
    let d = Dir::new();
    let (full, cut) = (d.path("full"), d.path("cut"));
    let train = |out: &Path, resume: Option<Checkpoint>, observer: &mut dyn Observer| {
        let b = Trainer::builder(&corpus)
            .hyper(hyper.clone())
            .config(TrainConfig {
                steps_per_epoch: None,
                val_fraction: 0.05,
                ..config(STREAM, Some(out))
            })
            .backend(Backend::Sim);
        let b = match resume {
            Some(c) => b.resume(c),
            None => b,
        };
        b.build().expect("trainer").run(observer).expect("run")
    };
    let whole = train(&full, None, &mut Silent);
    assert!(!whole.stopped);
    let part = train(&cut, None, &mut StopAt { epoch: 2, at: 2 });
    assert!(part.stopped);
    let saved = Checkpoint::load(&cut.join(LAST_CHECKPOINT)).expect("last");
    assert_eq!(saved.state.epochs_done, 1);
    assert!(saved.state.batch > 0, "stopped inside the epoch");
    println!("stopped at batch {} of epoch 2", saved.state.batch);
    let carried = saved
        .state
        .stream
        .clone()
        .expect("the carried state is saved");
    assert_eq!(carried.h.len(), 2 * 8 * 8, "[N, B, H]");
    assert!(carried.c.iter().any(|&v| v != 0.0));
    let resumed = train(&cut, Some(saved), &mut Silent);
    assert_eq!(resumed.state, whole.state);
    assert_eq!(
        tensors(&full.join(LAST_CHECKPOINT)),
        tensors(&cut.join(LAST_CHECKPOINT))
    );
}

/// A stack's next-character probabilities on the simulator are the CPU's
/// (to rounding); it samples in window mode over predict and in stateful
/// mode from the carried state.
#[test]
fn a_stack_predicts_and_samples_on_the_simulator() {
    if !common::kernels() {
        return;
    }
    let (v, h) = (9, 16);
    let params: Params<f32> = init_stacked(v, h, 3, 7);
    let x: Vec<u32> = (0..4 * 6).map(|i| (i * 5 % v) as u32).collect();
    let want = charlstm_cuda::cpu::predict(&params, &x, 6);
    let mut model = GpuModel::new(SimDevice::new(1), Backend::Sim, &params).expect("model");
    let got = model.predict(&x, 6).expect("predict");
    let worst = want
        .iter()
        .zip(&got)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "probabilities differ by {worst}");

    let strategies = [Strategy::Greedy];
    let req = |mode| GenerateRequest {
        seed_indices: &[0, 1, 2],
        maxlen: 5,
        length: 6,
        strategies: &strategies,
        seed: 3,
        stream: 0,
        mode,
    };
    let out = model.generate(&req(GenMode::Window)).expect("window mode");
    assert_eq!(out[0].len(), 6);
    let out = model
        .generate(&req(GenMode::Stateful))
        .expect("stateful mode");
    assert_eq!(out[0].len(), 6);
}

/// Stateful generation of a stack on a device (the seed once, then one
/// step a character from the carried state, `GpuModel::predict_carried`)
/// draws the CPU generator's characters, at every strategy, N = 2 and 3.
fn stateful_stack_matches_cpu<D: GpuDevice>(dev: impl Fn() -> D, backend: Backend) {
    let strategies = [
        Strategy::Temperature(0.2),
        Strategy::Temperature(0.5),
        Strategy::Temperature(1.0),
        Strategy::Temperature(1.2),
        Strategy::Greedy,
    ];
    for (layers, h, v) in [(2, 16, 11), (3, 24, 7)] {
        let params: Params<f32> = init_stacked(v, h, layers, 40 + layers as u64);
        let seed: Vec<u32> = (0..9).map(|i| (i * 4 % v) as u32).collect();
        let req = GenerateRequest {
            seed_indices: &seed,
            maxlen: 9,
            length: 40,
            strategies: &strategies,
            seed: 17,
            stream: 2,
            mode: GenMode::Stateful,
        };
        let want = charlstm_cuda::stateful::generate_stateful(&params, &req, &mut no_progress)
            .expect("cpu");
        let mut model = GpuModel::new(dev(), backend, &params).expect("model");
        let got = model.generate(&req).expect("device");
        assert_eq!(got, want, "N = {layers}: the device drew other characters");
        // The model is reusable after it (the state buffer freed, predict intact).
        assert_eq!(model.generate(&req).expect("again"), want);
        // And a window generation from the same model still works.
        let window = GenerateRequest {
            mode: GenMode::Window,
            ..req
        };
        assert_eq!(model.generate(&window).expect("window")[0].len(), 40);
    }
}

#[test]
fn a_stack_samples_statefully_on_the_simulator_as_on_the_cpu() {
    if common::kernels() {
        stateful_stack_matches_cpu(|| SimDevice::new(5), Backend::Sim);
    }
}

#[test]
fn a_stack_samples_statefully_on_cuda_as_on_the_cpu() {
    match CudaDevice::new(0) {
        Ok(_) => stateful_stack_matches_cpu(|| CudaDevice::new(0).expect("gpu"), Backend::Cuda),
        Err(e) => println!("SKIPPED: no GPU ({e})"),
    }
}
