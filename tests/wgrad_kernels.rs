//! kernels/wgrad.cu (the fast LSTM weight gradients) against the reference
//! kernel `lstm_wgrad_bwd_f32` and the f64 CPU reference `cpu::trace`, on
//! the reference's own h, classes and dz (rounded to f32): at edge shapes
//! (one step, one row, V > 64, H and 4H off the 64-wide tile, several
//! splits with a ragged last one) and random ones, fresh every run (seed
//! printed; CHARLSTM_TEST_SEED replays). Every output and the scratch are
//! NaN before each launch, so an element left unwritten fails. Two runs of
//! the fast path must agree to the bit; a V too large for its shared
//! accumulator must fall back to the reference and still be right. Each
//! test has a `cuda` twin (same body on CudaDevice; SKIPPED without a GPU),
//! which also runs the notebook's shape.

mod common;
use charlstm_cuda::model::Tensor;
use common::{Rng, assert_all_pass, seed};

use charlstm_cuda::Result;
use charlstm_cuda::gpu::device::{DevicePtr, GpuDevice, KernelArg, LaunchConfig};
use charlstm_cuda::gpu::lstm::wgrad::WgradLauncher;
use charlstm_cuda::gpu::lstm::{LstmBuffers, LstmDims, LstmLauncher};
use charlstm_cuda::gpu::selftest::{BOUND_F32_KERNEL, Case, SelftestRow, Shape};
use charlstm_cuda::gpu::{CudaDevice, SimDevice};
use charlstm_cuda::model::TENSOR_NAMES;
use charlstm_cuda::sample::{Purpose, RngStream};

/// The case's device-side inputs and outputs of the weight gradients.
struct Wgrad {
    dims: LstmDims,
    bufs: LstmBuffers,
    scratch: DevicePtr,
    all: Vec<DevicePtr>,
}

fn upload<D: GpuDevice>(dev: &mut D, all: &mut Vec<DevicePtr>, data: &[f32]) -> DevicePtr {
    let p = dev
        .upload_new_f32(if data.is_empty() { &[0.0] } else { data })
        .unwrap();
    all.push(p);
    p
}

impl Wgrad {
    fn new<D: GpuDevice>(dev: &mut D, case: &Case) -> Wgrad {
        let (v, h, b, t) = case.shape.vhbt();
        let g = 4 * h;
        let w = &case.want;
        let mut all = Vec::new();
        let f32s = |x: &[f64]| x.iter().map(|&e| e as f32).collect::<Vec<f32>>();
        // t-major classes, as the forward decodes them into `cls`.
        let cls: Vec<u32> = (0..t * b).map(|s| case.x[(s % b) * t + s / b]).collect();
        let cls = dev.upload_new_u32(&cls).unwrap();
        all.push(cls);
        let dims = LstmDims {
            batch: b,
            seq_len: t,
            hidden: h,
            vocab: v,
            words_per_row: v.div_ceil(64),
        };
        let nan = |n: usize| vec![f32::NAN; n.max(1)];
        let n = DevicePtr::NULL;
        let bufs = LstmBuffers {
            corpus_words: n,
            starts: n,
            kernel: n,
            recurrent_kernel: n,
            bias: n,
            gates: n,
            c: n,
            h: upload(dev, &mut all, &f32s(&w.h)),
            cls,
            dz: upload(dev, &mut all, &f32s(&w.dz)),
            dh: n,
            dc: n,
            d_kernel: upload(dev, &mut all, &nan(v * g)),
            d_recurrent_kernel: upload(dev, &mut all, &nan(h * g)),
            d_bias: upload(dev, &mut all, &nan(g)),
            wgrad_scratch: n,
            h0: DevicePtr::NULL,
            c0: DevicePtr::NULL,
            dy: DevicePtr::NULL,
            zx: DevicePtr::NULL,
        };
        let scratch = upload(dev, &mut all, &nan(WgradLauncher::scratch_len(dims)));
        Wgrad {
            dims,
            bufs,
            scratch,
            all,
        }
    }

    fn outputs(&self) -> [(DevicePtr, usize); 3] {
        let (v, h) = (self.dims.vocab, self.dims.hidden);
        let b = &self.bufs;
        [
            (b.d_kernel, 4 * h * v),
            (b.d_recurrent_kernel, 4 * h * h),
            (b.d_bias, 4 * h),
        ]
    }

    /// Outputs and scratch poisoned, then `LstmLauncher::wgrad` with or
    /// without the scratch; the three gradients in TENSOR_NAMES order.
    fn run<D: GpuDevice>(&self, dev: &mut D, launcher: &LstmLauncher, fast: bool) -> [Vec<f32>; 3] {
        for (p, n) in self.outputs() {
            dev.upload_f32(p, &vec![f32::NAN; n]).unwrap();
        }
        let len = WgradLauncher::scratch_len(self.dims).max(1);
        dev.upload_f32(self.scratch, &vec![f32::NAN; len]).unwrap();
        let bufs = LstmBuffers {
            wgrad_scratch: if fast { self.scratch } else { DevicePtr::NULL },
            h0: DevicePtr::NULL,
            c0: DevicePtr::NULL,
            dy: DevicePtr::NULL,
            ..self.bufs
        };
        launcher.wgrad(dev, self.dims, &bufs).unwrap();
        dev.synchronize().unwrap();
        self.outputs()
            .map(|(p, n)| dev.download_vec_f32(p, n).unwrap())
    }

    fn free<D: GpuDevice>(self, dev: &mut D) {
        self.all.into_iter().for_each(|p| dev.free(p).unwrap());
    }
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// Reference and fast path against the CPU, fast against the reference,
/// and a second fast run bit for bit; `expect_fast` says whether the
/// shape should take the fast path (else the fallback).
fn check_case<D: GpuDevice>(dev: &mut D, shape: Shape, rng: &mut RngStream, expect_fast: bool) {
    let case = Case::random(shape, rng).unwrap();
    let launcher = LstmLauncher::default();
    let w = Wgrad::new(dev, &case);
    let planned = launcher.fast_wgrad.plan(w.dims, dev.max_shared_bytes());
    println!("{shape}: plan {planned:?}");
    assert_eq!(planned.is_some(), expect_fast, "{shape}");
    let reference = w.run(dev, &launcher, false);
    let fast = w.run(dev, &launcher, true);
    let again = w.run(dev, &launcher, true);
    w.free(dev);
    let want = [
        &case.want.grads[Tensor::Kernel],
        &case.want.grads[Tensor::RecurrentKernel],
        &case.want.grads[Tensor::Bias],
    ];
    let label = shape.to_string();
    let fast_name = if expect_fast {
        "wgrad.cu fast path"
    } else {
        "fast path fallen back to lstm_wgrad_bwd_f32"
    };
    let mut rows = Vec::new();
    for i in 0..3 {
        let out = format!("d {}", TENSOR_NAMES[i]);
        let row = |kernel: &str, got: &[f32], want: &[f64]| {
            SelftestRow::compare(kernel, &out, &label, &widen(got), want, BOUND_F32_KERNEL)
        };
        rows.push(row("lstm_wgrad_bwd_f32 vs cpu", &reference[i], want[i]));
        rows.push(row(&format!("{fast_name} vs cpu"), &fast[i], want[i]));
        rows.push(row(
            &format!("{fast_name} vs lstm_wgrad_bwd_f32"),
            &fast[i],
            &widen(&reference[i]),
        ));
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
        assert_eq!(
            bits(&fast[i]),
            bits(&again[i]),
            "{out} at {shape}: two runs differ"
        );
    }
    assert_all_pass(rows);
}

fn shape(vocab: usize, hidden: usize, batch: usize, seq_len: usize) -> Shape {
    Shape {
        vocab,
        hidden,
        batch,
        seq_len,
    }
}

/// Edge shapes (V, H, B, T), then random ones; with `full` the notebook's.
fn all_cases<D: GpuDevice>(dev: &mut D, seed: u64, full: bool) {
    let mut rng = Rng(seed);
    let mut stream = RngStream::new(seed, Purpose::Sample, 7);
    let mut cases = vec![
        (5, 3, 1, 1),    // T = 1: no recurrent term, GEMM skipped, zeros written
        (2, 1, 1, 8),    // one unit, one row
        (70, 7, 2, 3),   // V > 64; 4H = 28 inside one tile
        (66, 33, 4, 2),  // H, 4H = 132 off the 64-wide tile
        (9, 20, 16, 12), // 3 GEMM splits of 64 rows (the last 48), 6 class splits
        (3, 65, 5, 3),   // H just past one tile: a second, one-row tile
    ];
    for _ in 0..3 {
        cases.push((
            rng.range(2, 71),
            rng.range(1, 41),
            rng.range(1, 9),
            rng.range(1, 9),
        ));
    }
    if full {
        cases.extend([(57, 128, 128, 60), (57, 128, 7, 60), (100, 200, 33, 17)]);
    }
    for (v, h, b, t) in cases {
        check_case(dev, shape(v, h, b, t), &mut stream, true);
    }
}

/// V = 1000 needs the narrowest column tile (1000 x 64 floats exceed 227
/// KiB); V = 2000 does not fit even that: the launcher falls back to the
/// reference kernel and the answer must still be right.
fn huge_vocab<D: GpuDevice>(dev: &mut D, seed: u64) {
    let mut stream = RngStream::new(seed, Purpose::Sample, 8);
    let limit = dev.max_shared_bytes() as usize;
    for v in [1000, 2000] {
        let fits = v * 32 * 4 <= limit;
        check_case(dev, shape(v, 3, 2, 3), &mut stream, fits);
    }
}

/// With one split the fast path adds every sum in the reference's order (s
/// ascending, FMA for the products, +0 start), so it must give the
/// reference's very bits: a check with no tolerance at all, the 64-wide
/// tiles, the column tiles and the padding included.
fn one_split_is_the_reference_to_the_bit<D: GpuDevice>(dev: &mut D, seed: u64, full: bool) {
    let mut stream = RngStream::new(seed, Purpose::Sample, 11);
    let mut shapes = vec![
        shape(66, 33, 4, 2),
        shape(9, 20, 16, 12),
        shape(3, 65, 5, 3),
    ];
    if full {
        shapes.push(shape(57, 128, 128, 60));
    }
    let reference = LstmLauncher::default();
    let one = LstmLauncher {
        fast_wgrad: WgradLauncher {
            target_blocks: 1,
            ..WgradLauncher::default()
        },
        ..reference
    };
    for s in shapes {
        let case = Case::random(s, &mut stream).unwrap();
        let w = Wgrad::new(dev, &case);
        let plan = one.fast_wgrad.plan(w.dims, dev.max_shared_bytes()).unwrap();
        assert_eq!((plan.rk_splits, plan.cls_splits), (1, 1), "{s}");
        let want = w.run(dev, &reference, false);
        let got = w.run(dev, &one, true);
        w.free(dev);
        for i in 0..3 {
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
            assert_eq!(
                bits(&got[i]),
                bits(&want[i]),
                "d {} at {s}",
                TENSOR_NAMES[i]
            );
        }
        println!("{s}: one split = lstm_wgrad_bwd_f32 bit for bit");
    }
}

#[test]
fn one_split_is_the_reference_to_the_bit_on_the_simulator() {
    let Some(seed) = sim_seed() else { return };
    one_split_is_the_reference_to_the_bit(&mut SimDevice::new(seed), seed, false);
}

#[test]
fn one_split_is_the_reference_to_the_bit_on_cuda() {
    match CudaDevice::new(0) {
        Ok(mut dev) => one_split_is_the_reference_to_the_bit(&mut dev, seed(), true),
        Err(e) => println!("SKIPPED: no GPU ({e})"),
    }
}

fn sim_seed() -> Option<u64> {
    if !common::kernels() {
        return None;
    }
    Some(seed())
}

#[test]
fn fast_wgrad_matches_reference_and_cpu_on_the_simulator() {
    let Some(seed) = sim_seed() else { return };
    all_cases(&mut SimDevice::new(seed), seed, false);
}

#[test]
fn fast_wgrad_matches_reference_and_cpu_on_cuda() {
    match CudaDevice::new(0) {
        Ok(mut dev) => {
            let seed = seed();
            all_cases(&mut dev, seed, true);
            time_notebook(&mut dev, seed);
        }
        Err(e) => println!("SKIPPED: no GPU ({e})"),
    }
}

/// Device time of the reference and the fast path at the notebook's shape
/// (V=57, H=128, B=128, T=60), printed; the fast path must be the faster.
fn time_notebook<D: GpuDevice>(dev: &mut D, seed: u64) {
    let s = shape(57, 128, 128, 60);
    let case = Case::random(s, &mut RngStream::new(seed, Purpose::Sample, 10)).unwrap();
    let w = Wgrad::new(dev, &case);
    let launcher = LstmLauncher::default();
    const REPS: usize = 20;
    let mut secs = [0f64; 2];
    for (fast, t) in [false, true].into_iter().zip(&mut secs) {
        let bufs = LstmBuffers {
            wgrad_scratch: if fast { w.scratch } else { DevicePtr::NULL },
            h0: DevicePtr::NULL,
            c0: DevicePtr::NULL,
            dy: DevicePtr::NULL,
            ..w.bufs
        };
        launcher.wgrad(dev, w.dims, &bufs).unwrap(); // warm-up (module load)
        *t = dev
            .time(|dev| (0..REPS).try_for_each(|_| launcher.wgrad(dev, w.dims, &bufs)))
            .unwrap()
            / REPS as f64;
    }
    w.free(dev);
    println!(
        "{s} on {}: lstm_wgrad_bwd_f32 {:.1} us, fast path {:.1} us per call ({:.1}x)",
        dev.name(),
        secs[0] * 1e6,
        secs[1] * 1e6,
        secs[0] / secs[1]
    );
    assert!(secs[1] < secs[0], "the fast path is not faster: {secs:?}");
}

#[test]
fn huge_vocab_falls_back_on_the_simulator() {
    let Some(seed) = sim_seed() else { return };
    huge_vocab(&mut SimDevice::new(seed), seed);
}

#[test]
fn huge_vocab_falls_back_on_cuda() {
    match CudaDevice::new(0) {
        Ok(mut dev) => huge_vocab(&mut dev, seed()),
        Err(e) => println!("SKIPPED: no GPU ({e})"),
    }
}

/// The simulator, adding up the thread-instructions of every launch.
struct Counting {
    inner: SimDevice,
    instructions: u64,
    launches: usize,
}

impl GpuDevice for Counting {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn alloc(&mut self, bytes: usize) -> Result<DevicePtr> {
        self.inner.alloc(bytes)
    }
    fn alloc_zeroed(&mut self, bytes: usize) -> Result<DevicePtr> {
        self.inner.alloc_zeroed(bytes)
    }
    fn free(&mut self, ptr: DevicePtr) -> Result<()> {
        self.inner.free(ptr)
    }
    fn upload(&mut self, dst: DevicePtr, bytes: &[u8]) -> Result<()> {
        self.inner.upload(dst, bytes)
    }
    fn download(&mut self, src: DevicePtr, out: &mut [u8]) -> Result<()> {
        self.inner.download(src, out)
    }
    fn launch(&mut self, m: &str, k: &str, cfg: LaunchConfig, args: &[KernelArg]) -> Result<()> {
        self.inner.launch(m, k, cfg, args)?;
        let stats = self.inner.last_launch().expect("a launch just ran");
        println!("  {k}: {} thread-instructions", stats.instructions);
        self.instructions += stats.instructions;
        self.launches += 1;
        Ok(())
    }
    fn synchronize(&mut self) -> Result<()> {
        self.inner.synchronize()
    }
    fn max_shared_bytes(&self) -> u32 {
        self.inner.max_shared_bytes()
    }
    fn multiprocessors(&self) -> u32 {
        self.inner.multiprocessors()
    }
    fn time<F: FnOnce(&mut Self) -> Result<()>>(&mut self, f: F) -> Result<f64> {
        let start = std::time::Instant::now();
        f(self)?;
        Ok(start.elapsed().as_secs_f64())
    }
}

/// Thread-instructions of the reference and the fast path at a mid shape
/// (a cost estimate, not a timing): the fast path must do at most half the
/// reference's work. Printed with `--nocapture`.
#[test]
fn fast_wgrad_costs_fewer_instructions_on_the_simulator() {
    let Some(seed) = sim_seed() else { return };
    let mut dev = Counting {
        inner: SimDevice::new(seed),
        instructions: 0,
        launches: 0,
    };
    let s = shape(57, 32, 16, 8);
    let case = Case::random(s, &mut RngStream::new(seed, Purpose::Sample, 9)).unwrap();
    let w = Wgrad::new(&mut dev, &case);
    let launcher = LstmLauncher::default();
    let mut cost = [0u64; 2];
    for (fast, c) in [false, true].into_iter().zip(&mut cost) {
        dev.instructions = 0;
        dev.launches = 0;
        let out = w.run(&mut dev, &launcher, fast);
        assert!(out.iter().flatten().all(|x| x.is_finite()));
        println!(
            "{s}: {} in {} launches: {} thread-instructions",
            if fast {
                "fast path"
            } else {
                "lstm_wgrad_bwd_f32"
            },
            dev.launches,
            dev.instructions
        );
        *c = dev.instructions;
    }
    w.free(&mut dev);
    println!(
        "ratio reference / fast = {:.1}",
        cost[0] as f64 / cost[1] as f64
    );
    assert!(
        cost[1] * 2 < cost[0],
        "fast {} vs reference {}",
        cost[1],
        cost[0]
    );
}
