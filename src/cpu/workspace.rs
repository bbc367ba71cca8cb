//! Reusable buffers of one batch, so that a training step allocates no tensors.
//!
//! B = batch rows, T = sequence length, H = hidden units, V = vocabulary,
//! S = time slots kept: T when training (backward needs every step), 1 for
//! `loss` / `predict`, which overwrite one slot step after step.
//!
//! | buffer     | shape       | holds                                               |
//! |------------|-------------|-----------------------------------------------------|
//! | `xb`       | [V, 4H]     | `kernel + bias`: the input part of z, one row per class |
//! | `gates`    | [S, B, 4H]  | activated i, f, g, o; backward overwrites them with dz  |
//! | `cs`       | [S, B, H]   | cell state c_t                                      |
//! | `tcs`      | [S, B, H]   | tanh(c_t)                                           |
//! | `hprev`    | [S, B, H]   | h_{t-1} at slot t (zero at t = 0): the GEMM operand |
//! | `hlast`    | [B, H]      | h_{T-1}, input of the dense head                    |
//! | `probs`    | [B, V]      | softmax; backward turns it into dlogits             |
//! | `dh`, `dc` | [B, H]      | backward running gradients of h and c               |
//! | `row_loss` | [B]         | -log p[b, y[b]]                                     |
//!
//! Time-major ([S, B, ...]): one step of a chunk of rows is contiguous, which
//! is what the per-step GEMM and the cell loops stream through (batch-major
//! rows T*4H apart cost a third more time in the forward), and `hprev` and
//! `gates` flattened to [T*B, H] / [T*B, 4H] are the operands of the single
//! `recurrent_kernel` gradient GEMM, summed over k = t*B + b in one fixed
//! order whatever the chunking. Threads own row ranges of every slot
//! through [`Steps`].

use super::steps::Steps;
use super::{Scalar, pages};

/// Below this many rows per thread, splitting a batch costs more than it saves.
const MIN_ROWS_PER_THREAD: usize = 16;

/// Buffers and threading knobs for [`loss_and_grads_into`](super::loss_and_grads_into),
/// [`loss_with`](super::loss_with) and [`predict_into`](super::predict_into).
///
/// Results are bit-identical for every `threads` / `chunk` setting: rows are
/// independent in the recurrence and every sum over rows runs in one fixed
/// order after it.
#[derive(Clone, Debug, Default)]
pub struct Workspace<F> {
    /// Worker threads (0 = `available_parallelism`).
    threads: usize,
    /// Rows per chunk within a thread (0 = all the thread's rows in one chunk).
    chunk: usize,
    pub(super) xb: Vec<F>,
    pub(super) gates: Vec<F>,
    pub(super) cs: Vec<F>,
    pub(super) tcs: Vec<F>,
    pub(super) hprev: Vec<F>,
    pub(super) hlast: Vec<F>,
    pub(super) probs: Vec<F>,
    pub(super) dh: Vec<F>,
    pub(super) dc: Vec<F>,
    pub(super) row_loss: Vec<F>,
    /// recurrent_kernel and its transpose packed for the steps (`packed.rs`).
    pub(super) pack: [Vec<F>; 2],
}

/// Sizes of one call: batch rows, sequence length, slots kept, hidden, vocabulary.
#[derive(Clone, Copy, Debug)]
pub(super) struct Dims {
    pub b: usize,
    pub t: usize,
    pub s: usize,
    pub h: usize,
    pub v: usize,
}

/// Batch rows `[b0, b0 + n)` of every per-row buffer.
pub(super) struct Rows<'a, F> {
    pub b0: usize,
    pub n: usize,
    pub gates: Steps<'a, F>,
    pub cs: Steps<'a, F>,
    pub tcs: Steps<'a, F>,
    pub hprev: Steps<'a, F>,
    pub hlast: &'a mut [F],
    pub probs: &'a mut [F],
    pub dh: &'a mut [F],
    pub dc: &'a mut [F],
    pub row_loss: &'a mut [F],
}

impl<'a, F> Rows<'a, F> {
    /// The first `k` rows and the rest.
    pub fn split_at(self, k: usize, d: Dims) -> (Rows<'a, F>, Rows<'a, F>) {
        assert!(k <= self.n, "split_at({k}) of {} rows", self.n);
        let (g0, g1) = self.gates.split_at(k);
        let (c0, c1) = self.cs.split_at(k);
        let (t0, t1) = self.tcs.split_at(k);
        let (p0, p1) = self.hprev.split_at(k);
        let (l0, l1) = self.hlast.split_at_mut(k * d.h);
        let (q0, q1) = self.probs.split_at_mut(k * d.v);
        let (dh0, dh1) = self.dh.split_at_mut(k * d.h);
        let (dc0, dc1) = self.dc.split_at_mut(k * d.h);
        let (r0, r1) = self.row_loss.split_at_mut(k);
        let head = Rows {
            b0: self.b0,
            n: k,
            gates: g0,
            cs: c0,
            tcs: t0,
            hprev: p0,
            hlast: l0,
            probs: q0,
            dh: dh0,
            dc: dc0,
            row_loss: r0,
        };
        let tail = Rows {
            b0: self.b0 + k,
            n: self.n - k,
            gates: g1,
            cs: c1,
            tcs: t1,
            hprev: p1,
            hlast: l1,
            probs: q1,
            dh: dh1,
            dc: dc1,
            row_loss: r1,
        };
        (head, tail)
    }
}

impl<F: Scalar> Workspace<F> {
    /// Empty buffers (they grow on first use), threads = available cores.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses at most `threads` worker threads (0 = one per available core).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Runs the recurrence over chunks of `rows` batch rows (0 = one chunk per
    /// thread). A tuning and testing knob: results do not depend on it.
    pub fn with_chunk(mut self, rows: usize) -> Self {
        self.chunk = rows;
        self
    }

    /// How many threads split a batch of `b` rows.
    pub(super) fn threads_for(&self, b: usize) -> usize {
        threads_for(self.threads, b)
    }

    /// Rows per chunk for a thread that owns `rows` rows.
    pub(super) fn chunk_for(&self, rows: usize) -> usize {
        if self.chunk == 0 {
            rows.max(1)
        } else {
            self.chunk
        }
    }

    /// Sizes every buffer for `d` (growing only when needed) and computes `xb`.
    pub(super) fn prepare(&mut self, d: Dims, kernel: &[F], bias: &[F]) {
        let g = 4 * d.h;
        self.xb.clear();
        for row in kernel.chunks_exact(g) {
            self.xb.extend(row.iter().zip(bias).map(|(&k, &b)| k + b));
        }
        let zero = F::zero();
        pages::resize(&mut self.gates, d.b * d.s * g, zero);
        pages::resize(&mut self.cs, d.b * d.s * d.h, zero);
        pages::resize(&mut self.tcs, d.b * d.s * d.h, zero);
        pages::resize(&mut self.hprev, d.b * d.s * d.h, zero);
        self.hlast.resize(d.b * d.h, zero);
        self.probs.resize(d.b * d.v, zero);
        self.dh.resize(d.b * d.h, zero);
        self.dc.resize(d.b * d.h, zero);
        self.row_loss.resize(d.b, zero);
    }

    /// All rows of every per-row buffer (after [`prepare`](Self::prepare)).
    pub(super) fn rows(&mut self, d: Dims) -> (&[F], Rows<'_, F>) {
        let rows = Rows {
            b0: 0,
            n: d.b,
            gates: Steps::new(&mut self.gates, d.s, d.b, 4 * d.h),
            cs: Steps::new(&mut self.cs, d.s, d.b, d.h),
            tcs: Steps::new(&mut self.tcs, d.s, d.b, d.h),
            hprev: Steps::new(&mut self.hprev, d.s, d.b, d.h),
            hlast: &mut self.hlast,
            probs: &mut self.probs,
            dh: &mut self.dh,
            dc: &mut self.dc,
            row_loss: &mut self.row_loss,
        };
        (&self.xb, rows)
    }
}

/// How many threads split a batch of `b` rows when `requested` were asked
/// for (0 = one per available core, but none with fewer than
/// `MIN_ROWS_PER_THREAD` rows; an explicit count is only capped at `b`).
pub(crate) fn threads_for(requested: usize, b: usize) -> usize {
    // Asked once per process: on Linux the answer reads cgroup files.
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let want = if requested == 0 {
        *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    } else {
        requested
    };
    let by_size = if requested == 0 {
        b / MIN_ROWS_PER_THREAD
    } else {
        b
    };
    want.min(by_size).max(1)
}

/// Runs `job` on the calling thread when it is the last share of a split
/// (the caller would only wait for the others), else on a new thread of
/// `scope`. The threads are not pinned to cores: pinned, the stacked step
/// took 4-8 % longer on the 2-core VM (docs/measured.md, 2026-12-07 12:32
/// UTC on).
pub(crate) fn run_or_spawn<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    last: bool,
    job: impl FnOnce() + Send + 'scope,
) {
    if last {
        job()
    } else {
        scope.spawn(job);
    }
}

/// Splits `0..n` into `parts` contiguous ranges whose inner boundaries are
/// multiples of `align` (some may be empty).
pub(crate) fn split_range(
    n: usize,
    parts: usize,
    align: usize,
) -> impl Iterator<Item = (usize, usize)> {
    let per = n.div_ceil(parts.max(1)).div_ceil(align) * align;
    (0..parts.max(1)).map(move |i| ((i * per).min(n), ((i + 1) * per).min(n)))
}
