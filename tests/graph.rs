//! One training step = one captured graph, replayed; the loss read back only
//! when reported.
//!
//! On the simulator: the same steps with graph replay and launched one by
//! one give bit-identical losses, weights and RMSprop state, across an
//! epoch boundary, a mid-epoch resume, a learning-rate change and a batch
//! regrowth (both recapture), a partial last batch, off-order batches and
//! eval in between; a capture refuses host transfers with a clear error;
//! a recorded list replays in order and runs nothing while recorded; a
//! failed capture falls back to launches; a queue longer than the device
//! loss log loses nothing. Stream steps (their own captured graph per B and
//! L) replayed and launched agree bit for bit too, through a learning-rate
//! change, a fresh start that must not carry, and changes of L and B. The
//! `cuda_` variants run the same bodies on a
//! GPU (SKIPPED without one). The trainer's side (deferred reporting) is
//! tests/deferred_losses.rs.

mod common;
use common::{Rng, seed};

use charlstm_cuda::corpus::{OneHotCorpus, Windows, epoch_order};
use charlstm_cuda::engine::Batch;
use charlstm_cuda::gpu::batch::BatchLauncher;
use charlstm_cuda::gpu::engine::GraphStats;
use charlstm_cuda::gpu::{
    CudaDevice, DeviceError, DevicePtr, GpuDevice, GpuEngine, GraphId, KernelArg, LaunchConfig,
    SimDevice,
};
use charlstm_cuda::model::{Hyper, Params, init_params};
use charlstm_cuda::{Backend, Engine, StreamBatch};
use charlstm_cuda::{Error, Result};

const V: usize = 12;
const H: usize = 8;
const B: usize = 4;
const T: usize = 4;

/// A GPU, or `None` after saying SKIPPED.
fn gpu() -> Option<CudaDevice> {
    if !common::kernels() {
        return None;
    }
    match CudaDevice::new(0) {
        Ok(d) => Some(d),
        Err(e) => {
            println!("SKIPPED: no GPU: {e}");
            None
        }
    }
}

/// Random text over exactly V symbols whose windows (step 1) make four full
/// batches of B and a partial one of 2.
fn corpus(rng: &mut Rng) -> OneHotCorpus {
    let sym = |i: usize| char::from_u32(0xE000 + i as u32).expect("valid char");
    let mut text: String = (0..V).map(sym).collect();
    let len = 4 * B + 2 + T;
    text.extend((V..len).map(|_| sym(rng.range(0, V))));
    OneHotCorpus::from_text(&text, true).expect("corpus")
}

fn hyper(seed: u64) -> Hyper {
    Hyper {
        maxlen: T,
        step: 1,
        hidden: H,
        batch: B,
        seed,
        clip_norm: Some(0.5),
        ..Hyper::default()
    }
}

/// Everything a run produced, as bits.
#[derive(Debug, PartialEq)]
struct Outcome {
    losses: Vec<u32>,
    params: Vec<u32>,
    rmsprop: Vec<u32>,
}

fn bits(p: &Params<f32>) -> Vec<u32> {
    p.tensors().concat().iter().map(|x| x.to_bits()).collect()
}

/// The script both runs follow: epoch 0 queued whole; epoch 1 with a
/// `train_batch`, an eval, an off-order step and a learning-rate change in
/// the middle; a predict that regrows the batch buffers; epoch 2 resumed
/// at its third batch. Every epoch ends with the partial batch.
fn script<D: GpuDevice>(dev: D, graphs: bool, seed: u64) -> (Outcome, GraphStats) {
    let mut rng = Rng(seed);
    let corpus = corpus(&mut rng);
    let hy = hyper(seed);
    let windows = Windows::new(corpus.rows(), T, 1).expect("windows");
    assert_eq!(windows.count, 4 * B + 2, "the corpus must give 4.5 batches");
    let (p, ms) = (init_params(V, H, seed), Params::zeros(V, H));
    let mut e = GpuEngine::new(dev, Backend::Sim, &corpus, &hy, p, ms).expect("engine");
    e.set_graphs(graphs).expect("graphs");
    let mut losses = Vec::new();
    let queue = |e: &mut GpuEngine<'_, D>, batch: Batch<'_>| {
        assert_eq!(e.queue_train(batch).expect("queued"), None);
    };
    for epoch in 0..3 {
        let order = epoch_order(&windows, seed, epoch);
        let from = if epoch == 2 { 2 } else { 0 };
        e.begin_epoch(&order, from * B).expect("begin_epoch");
        for (i, starts) in order.chunks(B).enumerate().skip(from) {
            if epoch == 1 && i == 0 {
                losses.push(e.train(Batch::Next(starts.len())).expect("train"));
                continue;
            }
            if epoch == 1 && i == 2 {
                e.set_learning_rate(hy.lr * 0.5).expect("lr");
            }
            queue(&mut e, Batch::Next(starts.len()));
            if epoch == 1 && i == 2 {
                // Never the order's next batch: windows appear once in it.
                losses.push(e.eval_batch(&[0; B]).expect("eval"));
                queue(&mut e, Batch::Starts(&[1, 1, 2, 2]));
            }
        }
        losses.extend(e.collect_losses().expect("collect"));
        if epoch == 1 {
            let x: Vec<u32> = (0..2 * B * T).map(|i| (i % V) as u32).collect();
            e.predict(&x, T).expect("predict");
        }
    }
    assert!(e.collect_losses().expect("empty").is_empty());
    assert_eq!(losses.len(), 5 + 7 + 3);
    let outcome = Outcome {
        losses: losses.iter().map(|x| x.to_bits()).collect(),
        params: bits(&e.params().expect("params")),
        rmsprop: bits(&e.rmsprop_state().expect("rmsprop")),
    };
    (outcome, e.graph_stats())
}

/// `exact_losses`: the head sums the rows' losses with one float
/// atomicAdd per row, so on a GPU the loss's last bit depends on the order
/// the rows land in; the simulator's interleaving is fixed by its seed.
/// Everything else (weights, RMSprop state) has no atomics and must match
/// bit for bit everywhere.
fn replay_matches_launches<D: GpuDevice>(with: D, without: D, seed: u64, exact_losses: bool) {
    let (replayed, stats) = script(with, true, seed);
    let (launched, off) = script(without, false, seed);
    println!("graph: {stats:?}");
    assert_eq!(off, GraphStats::default(), "graphs off captured something");
    assert_eq!(stats.failed, None);
    // Epoch 0: batch 1 warms up, 2 is captured, 2-4 replay. Epoch 1: 1, 2
    // replay; the new rate makes 3 a warm-up, 4 is captured and replays.
    // The predict regrew the buffers: in epoch 2, 3 warms up, 4 is captured.
    assert_eq!((stats.captures, stats.replays), (3, 7), "{stats:?}");
    assert!(
        replayed
            .losses
            .iter()
            .all(|&l| f32::from_bits(l).is_finite())
    );
    if exact_losses {
        assert_eq!(replayed.losses, launched.losses, "losses");
    } else {
        for (a, b) in replayed.losses.iter().zip(&launched.losses) {
            assert!(
                a.abs_diff(*b) <= 4,
                "losses {a:#x} vs {b:#x}: more than 4 ulp apart"
            );
        }
    }
    assert_eq!(replayed.params, launched.params, "weights");
    assert_eq!(replayed.rmsprop, launched.rmsprop, "RMSprop state");
}

#[test]
fn graph_replay_equals_launches_bit_for_bit() {
    if !common::kernels() {
        return;
    }
    let seed = seed();
    // The same interleaving seed on both: each launch's interleaving
    // depends only on it, so the loss's atomicAdd order is the same.
    replay_matches_launches(SimDevice::new(seed), SimDevice::new(seed), seed, true);
}

#[test]
fn cuda_graph_replay_equals_launches_bit_for_bit() {
    let (Some(a), Some(b)) = (gpu(), gpu()) else {
        return;
    };
    replay_matches_launches(a, b, seed(), false);
}

/// A device whose graphs never instantiate (as a driver might refuse one):
/// the simulator with `end_capture` failing after the recording.
struct CannotInstantiate(SimDevice);

impl GpuDevice for CannotInstantiate {
    fn name(&self) -> String {
        self.0.name()
    }
    fn alloc(&mut self, bytes: usize) -> Result<DevicePtr> {
        self.0.alloc(bytes)
    }
    fn alloc_zeroed(&mut self, bytes: usize) -> Result<DevicePtr> {
        self.0.alloc_zeroed(bytes)
    }
    fn free(&mut self, ptr: DevicePtr) -> Result<()> {
        self.0.free(ptr)
    }
    fn upload(&mut self, dst: DevicePtr, bytes: &[u8]) -> Result<()> {
        self.0.upload(dst, bytes)
    }
    fn download(&mut self, src: DevicePtr, out: &mut [u8]) -> Result<()> {
        self.0.download(src, out)
    }
    fn zero(&mut self, dst: DevicePtr, bytes: usize) -> Result<()> {
        self.0.zero(dst, bytes)
    }
    fn launch(&mut self, m: &str, k: &str, cfg: LaunchConfig, args: &[KernelArg]) -> Result<()> {
        self.0.launch(m, k, cfg, args)
    }
    fn synchronize(&mut self) -> Result<()> {
        self.0.synchronize()
    }
    fn max_shared_bytes(&self) -> u32 {
        self.0.max_shared_bytes()
    }
    fn multiprocessors(&self) -> u32 {
        self.0.multiprocessors()
    }
    fn can_capture(&self) -> bool {
        true
    }
    fn begin_capture(&mut self) -> Result<()> {
        self.0.begin_capture()
    }
    fn end_capture(&mut self) -> Result<GraphId> {
        let graph = self.0.end_capture()?;
        self.0.drop_graph(graph)?;
        Err(Error::Device(DeviceError::Backend {
            device: self.name(),
            what: "instantiating the graph: refused for the test".into(),
        }))
    }
    fn replay(&mut self, graph: GraphId) -> Result<()> {
        self.0.replay(graph)
    }
    fn drop_graph(&mut self, graph: GraphId) -> Result<()> {
        self.0.drop_graph(graph)
    }
    fn time<F: FnOnce(&mut Self) -> Result<()>>(&mut self, f: F) -> Result<f64> {
        f(self).map(|()| 0.0)
    }
}

/// A capture that fails is given up for good, with the reason kept, and
/// every step (the failed one too) runs launched: the same bits as graphs off.
#[test]
fn a_failed_capture_falls_back_to_launches() {
    if !common::kernels() {
        return;
    }
    let seed = seed();
    let (fell_back, stats) = script(CannotInstantiate(SimDevice::new(seed)), true, seed);
    let (launched, _) = script(SimDevice::new(seed), false, seed);
    println!("{stats:?}");
    assert_eq!((stats.captures, stats.replays), (0, 0));
    let why = stats.failed.expect("the reason");
    assert!(why.contains("refused for the test"), "{why}");
    assert_eq!(fell_back, launched);
}

/// More queued steps than the device log holds (256): the engine reads the
/// full log back into host memory and keeps logging, so one collect still
/// returns every loss, in order, the same bits `train_batch` reports step
/// by step (a second engine, the same seed and steps).
#[test]
fn a_queue_longer_than_the_device_log_loses_nothing() {
    if !common::kernels() {
        return;
    }
    let seed = seed();
    let mut rng = Rng(seed);
    let corpus = corpus(&mut rng);
    let hy = hyper(seed);
    let windows = Windows::new(corpus.rows(), T, 1).expect("windows");
    let new = || {
        let (p, ms) = (init_params(V, H, seed), Params::zeros(V, H));
        GpuEngine::new(SimDevice::new(seed), Backend::Sim, &corpus, &hy, p, ms).expect("engine")
    };
    let (mut queued, mut stepped) = (new(), new());
    let mut want = Vec::new();
    for epoch in 0..52 {
        let order = epoch_order(&windows, seed, epoch);
        queued.begin_epoch(&order, 0).expect("order");
        stepped.begin_epoch(&order, 0).expect("order");
        for starts in order.chunks(B) {
            let next = Batch::Next(starts.len());
            assert_eq!(queued.queue_train(next).expect("queue"), None);
            want.push(stepped.train(next).expect("step").to_bits());
        }
    }
    let got: Vec<u32> = queued
        .collect_losses()
        .expect("collect")
        .iter()
        .map(|x| x.to_bits())
        .collect();
    assert_eq!(want.len(), 52 * 5);
    assert_eq!(got, want);
    assert_eq!(queued.graph_stats().replays, stepped.graph_stats().replays);
}

/// A recorded list: select B starts, append the loss, zero the count,
/// append again. Nothing runs while recording; each replay runs it all, in
/// order (the count ends at 1 only in that order).
fn recorded_list_replays_in_order<D: GpuDevice>(mut dev: D) -> Result<()> {
    assert!(dev.can_capture());
    let order: Vec<u32> = (10..10 + 3 * B as u32).collect();
    let d_order = dev.upload_new_u32(&order)?;
    let d_cursor = dev.upload_new_u32(&[0])?;
    let d_starts = dev.upload_new_u32(&[u32::MAX; B])?;
    let d_loss = dev.upload_new_f32(&[1.5])?;
    let d_log = dev.upload_new_f32(&[f32::NAN; 4])?;
    let d_count = dev.upload_new_u32(&[0])?;
    let step = BatchLauncher::default();
    dev.begin_capture()?;
    step.select(&mut dev, d_order, d_cursor, B, d_starts)?;
    step.append_loss(&mut dev, d_loss, d_log, d_count, 4)?;
    dev.zero(d_count, 4)?;
    step.append_loss(&mut dev, d_loss, d_log, d_count, 4)?;
    let graph = dev.end_capture()?;
    let u32s = |dev: &mut D, p, n| -> Result<Vec<u32>> {
        let mut v = vec![0u32; n];
        dev.download(p, bytemuck::cast_slice_mut(&mut v))?;
        Ok(v)
    };
    assert_eq!(u32s(&mut dev, d_cursor, 1)?, [0], "ran while recording");
    assert_eq!(u32s(&mut dev, d_count, 1)?, [0], "ran while recording");
    assert_eq!(u32s(&mut dev, d_starts, B)?, [u32::MAX; B]);
    for round in 1..=2 {
        dev.replay(graph)?;
        assert_eq!(u32s(&mut dev, d_cursor, 1)?, [(round * B) as u32]);
        assert_eq!(
            u32s(&mut dev, d_starts, B)?,
            order[(round - 1) * B..round * B]
        );
        assert_eq!(u32s(&mut dev, d_count, 1)?, [1], "out of order");
        assert_eq!(dev.download_vec_f32(d_log, 1)?, [1.5]);
    }
    dev.drop_graph(graph)?;
    let err = dev.replay(graph).expect_err("a dropped graph");
    assert!(err.to_string().contains("unknown graph"), "{err}");
    for p in [d_order, d_cursor, d_starts, d_loss, d_log, d_count] {
        dev.free(p)?;
    }
    Ok(())
}

#[test]
fn a_recorded_list_replays_in_order() {
    if common::kernels() {
        recorded_list_replays_in_order(SimDevice::new(3)).expect("replay");
    }
}

#[test]
fn cuda_a_recorded_list_replays_in_order() {
    if let Some(dev) = gpu() {
        recorded_list_replays_in_order(dev).expect("replay");
    }
}

/// While capturing, every host transfer, wait and free is refused, naming
/// the operation and the capture; the capture itself survives the refusals.
fn capture_refuses_host_work<D: GpuDevice>(mut dev: D) -> Result<()> {
    let buf = dev.upload_new_f32(&[2.0; 4])?;
    dev.begin_capture()?;
    let mut out = [0u8; 4];
    let refused: Vec<(&str, Result<()>)> = vec![
        ("upload", dev.upload(buf, &[0; 4])),
        ("upload", dev.upload_queued(buf, &[0; 4])),
        ("download", dev.download(buf, &mut out)),
        ("synchronize", dev.synchronize()),
        ("free", dev.free(buf)),
        ("alloc_zeroed", dev.alloc_zeroed(8).map(drop)),
        ("begin_capture", dev.begin_capture()),
    ];
    dev.zero(buf, 8)?;
    let graph = dev.end_capture()?;
    for (op, r) in refused {
        let err = r.expect_err(op);
        let text = err.to_string();
        println!("{op}: {text}\n  hint: {}", err.hint());
        assert!(text.contains(op) && text.contains("captur"), "{text}");
        assert!(matches!(
            err,
            Error::Device(charlstm_cuda::gpu::DeviceError::Capture { .. })
        ));
    }
    assert_eq!(
        dev.download_vec_f32(buf, 4)?,
        [2.0; 4],
        "the zero ran early"
    );
    dev.replay(graph)?;
    assert_eq!(dev.download_vec_f32(buf, 4)?, [0.0, 0.0, 2.0, 2.0]);
    assert!(dev.end_capture().is_err(), "end_capture without a capture");
    dev.drop_graph(graph)?;
    dev.free(buf)
}

#[test]
fn capture_refuses_host_transfers_with_a_clear_error() {
    if common::kernels() {
        capture_refuses_host_work(SimDevice::new(4)).expect("capture");
    }
}

#[test]
fn cuda_capture_refuses_host_transfers_with_a_clear_error() {
    if let Some(dev) = gpu() {
        capture_refuses_host_work(dev).expect("capture");
    }
}

/// Queued uploads (the stream step's starts) land in queue order, each
/// from its own copy of the host bytes (the caller's buffer is overwritten
/// right after), also past the device's limit on held copies.
fn queued_uploads_land_in_order<D: GpuDevice>(mut dev: D) -> Result<()> {
    let slots = 300;
    let buf = dev.alloc_zeroed(slots * 4)?;
    let mut host = [0u32; 1];
    for round in 0..2u32 {
        for i in 0..slots {
            host[0] = round * 1000 + i as u32;
            let at = buf.offset(i * 4);
            dev.upload_queued(at, bytemuck::cast_slice(&host))?;
            host[0] = u32::MAX;
        }
    }
    let mut got = vec![0u32; slots];
    dev.download(buf, bytemuck::cast_slice_mut(&mut got))?;
    let want: Vec<u32> = (0..slots as u32).map(|i| 1000 + i).collect();
    assert_eq!(got, want);
    dev.free(buf)
}

#[test]
fn queued_uploads_land_in_order_on_the_simulator() {
    if common::kernels() {
        queued_uploads_land_in_order(SimDevice::new(4)).expect("uploads");
    }
}

#[test]
fn cuda_queued_uploads_land_in_order() {
    if let Some(dev) = gpu() {
        queued_uploads_land_in_order(dev).expect("uploads");
    }
}

/// Everything a run of stream steps produced, as bits: the losses, the
/// carried state after every step, the final weights and RMSprop state.
#[derive(Debug, PartialEq)]
struct StreamOutcome {
    losses: Vec<u32>,
    states: Vec<Vec<u32>>,
    params: Vec<u32>,
    rmsprop: Vec<u32>,
}

/// The stream script both runs follow, over a text of 100 characters: B = 3
/// streams of L = 4 carried for five batches (a learning-rate change before
/// the fourth), a window step in between, a fresh start (`carry` false:
/// the state zeroed in front of the replay) and one carried batch, L = 6
/// (the batch buffers regrow), then B = 2 (the state is reallocated).
fn stream_script<D: GpuDevice>(dev: D, graphs: bool, seed: u64) -> (StreamOutcome, GraphStats) {
    let mut rng = Rng(seed);
    let sym = |i: usize| char::from_u32(0xE000 + i as u32).expect("valid char");
    let mut text: String = (0..V).map(sym).collect();
    text.extend((V..100).map(|_| sym(rng.range(0, V))));
    let corpus = OneHotCorpus::from_text(&text, true).expect("corpus");
    let hy = hyper(seed);
    let (p, ms) = (init_params(V, H, seed), Params::zeros(V, H));
    let mut e = GpuEngine::new(dev, Backend::Sim, &corpus, &hy, p, ms).expect("engine");
    e.set_graphs(graphs).expect("graphs");
    let mut out = StreamOutcome {
        losses: Vec::new(),
        states: Vec::new(),
        params: Vec::new(),
        rmsprop: Vec::new(),
    };
    let mut step = |e: &mut GpuEngine<'_, D>, first: &[u32], k: u32, seq_len: usize| {
        let starts: Vec<u32> = first.iter().map(|s| s + k * seq_len as u32).collect();
        let batch = StreamBatch {
            starts: &starts,
            seq_len,
            carry: k > 0,
        };
        assert_eq!(e.queue_train_stream(batch).expect("stream step"), None);
        let (h, c) = e.stream_state().expect("state");
        out.states
            .push(h.iter().chain(&c).map(|x| x.to_bits()).collect());
    };
    for k in 0..5 {
        if k == 3 {
            e.set_learning_rate(hy.lr * 0.5).expect("lr");
        }
        step(&mut e, &[0, 30, 60], k, 4);
    }
    // `train` reads the log back: the stream losses so far wait in the
    // engine for `collect_losses`, the window step's comes back here.
    let window = e.train(Batch::Starts(&[0, 1, 2, 3])).expect("window step");
    for k in 0..2 {
        step(&mut e, &[5, 35, 65], k, 4);
    }
    for k in 0..2 {
        step(&mut e, &[2, 32, 62], k, 6);
    }
    for k in 0..3 {
        step(&mut e, &[10, 50], k, 6);
    }
    out.losses = e
        .collect_losses()
        .expect("collect")
        .into_iter()
        .chain([window])
        .map(|x| x.to_bits())
        .collect();
    assert_eq!(out.losses.len(), 12 + 1);
    out.params = bits(&e.params().expect("params"));
    out.rmsprop = bits(&e.rmsprop_state().expect("rmsprop"));
    (out, e.graph_stats())
}

/// Stream steps replayed as their captured graph and launched one by one
/// give the same bits (losses, carried state after every step, weights,
/// RMSprop state). The stream loss is summed in a fixed order (no
/// atomics), so this holds on a GPU too.
fn stream_replay_matches_launches<D: GpuDevice>(with: D, without: D, seed: u64) {
    let (replayed, stats) = stream_script(with, true, seed);
    let (launched, off) = stream_script(without, false, seed);
    println!("graph: {stats:?}");
    assert_eq!(off, GraphStats::default(), "graphs off captured something");
    assert_eq!(stats.failed, None);
    // B 3, L 4: batch 1 warms up, 2 is captured, 3 replays; the new rate
    // makes 4 a warm-up, 5 is captured; the fresh start and its carried
    // batch replay it (the window step runs uncaptured, in its own slot).
    // L 6 and then B 2 each warm up once and are captured once.
    assert_eq!(
        (stats.stream_captures, stats.stream_replays),
        (4, 8),
        "{stats:?}"
    );
    assert_eq!((stats.captures, stats.replays), (0, 0), "{stats:?}");
    assert!(
        replayed
            .losses
            .iter()
            .all(|&l| f32::from_bits(l).is_finite())
    );
    assert_eq!(replayed.losses, launched.losses, "losses");
    assert_eq!(replayed.states, launched.states, "carried state");
    assert_eq!(replayed.params, launched.params, "weights");
    assert_eq!(replayed.rmsprop, launched.rmsprop, "RMSprop state");
}

#[test]
fn stream_graph_replay_equals_launches_bit_for_bit() {
    if !common::kernels() {
        return;
    }
    let seed = seed();
    stream_replay_matches_launches(SimDevice::new(seed), SimDevice::new(seed), seed);
}

#[test]
fn cuda_stream_graph_replay_equals_launches_bit_for_bit() {
    let (Some(a), Some(b)) = (gpu(), gpu()) else {
        return;
    };
    stream_replay_matches_launches(a, b, seed());
}

/// A stream step whose capture fails gives capturing up with the reason
/// kept and runs launched: the same bits as graphs off.
#[test]
fn a_failed_stream_capture_falls_back_to_launches() {
    if !common::kernels() {
        return;
    }
    let seed = seed();
    let (fell_back, stats) = stream_script(CannotInstantiate(SimDevice::new(seed)), true, seed);
    let (launched, _) = stream_script(SimDevice::new(seed), false, seed);
    assert_eq!((stats.stream_captures, stats.stream_replays), (0, 0));
    let why = stats.failed.expect("the reason");
    assert!(why.contains("refused for the test"), "{why}");
    assert_eq!(fell_back, launched);
}
