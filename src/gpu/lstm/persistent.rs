//! Launcher of `kernels/lstm_persistent.cu`: the whole forward recurrence
//! (`lstm_persistent_fwd_f32`) and the whole backward recurrence
//! (`lstm_persistent_bwd_f32`) in one launch each, the recurrent weights on
//! chip for all T steps. Read the kernel file's header for the why.
//!
//! [`PersistentPlan::new`] decides whether a shape fits and how many batch
//! rows a block carries; [`super::LstmLauncher`] falls back to the
//! per-step kernels when it does not fit (H not a multiple of 8, H > 128,
//! or the weights' share of shared memory over the device's limit).

use super::{LstmBuffers, LstmDims};
use crate::error::Result;
use crate::gpu::contract::lstm_persistent::{
    self as contract, LstmPersistentBwdF32, LstmPersistentFwdF32, LstmPersistentSeqBwdF32,
    LstmPersistentSeqDenseFwdF32, LstmPersistentSeqFwdF32,
};
use crate::gpu::device::{DevicePtr, GpuDevice, LaunchConfig, kernel_u32};

/// Floats of `recurrent_kernel` per thread kept in registers.
pub const KREG: usize = contract::KREG as usize;
/// Most batch rows one block carries.
pub const MAX_ROWS: usize = contract::MAX_ROWS as usize;
/// Largest hidden size: the block has 4H threads and `__launch_bounds__(512)`.
pub const MAX_HIDDEN: usize = 128;

const F32: usize = std::mem::size_of::<f32>();

/// How a batch maps onto the persistent kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PersistentPlan {
    /// Batch rows per block (1..=[`MAX_ROWS`]).
    pub rows: usize,
    /// Rows (forward) / columns per gate (backward) of `recurrent_kernel` in
    /// shared memory; the other `H - ms` are in registers.
    pub ms: usize,
    /// Blocks: `ceil(B / rows)`.
    pub blocks: usize,
    /// Dynamic shared memory of the forward kernel, bytes.
    pub fwd_shared: usize,
    /// Dynamic shared memory of the backward kernel, bytes.
    pub bwd_shared: usize,
    /// H = [`SPECIALIZED_HIDDEN`]: the kernels compiled for that H.
    pub specialized: bool,
}

/// The hidden size with kernels compiled for it (the Keras job's): a
/// constant H lets ptxas fold the shared-memory offsets into the loads,
/// about half the instructions per weight (see the kernel file).
pub const SPECIALIZED_HIDDEN: usize = 128;

impl PersistentPlan {
    /// Forward shared memory: the weights' rows, h and the gates of each row,
    /// every step's input classes.
    pub fn fwd_shared_bytes(hidden: usize, rows: usize, seq_len: usize) -> usize {
        let (ms, g) = (hidden.saturating_sub(KREG), 4 * hidden);
        F32 * (ms * g + rows * hidden + rows * g) + 4 * seq_len * rows
    }

    /// Backward shared memory: the weights transposed (row stride H + 1),
    /// dh, dz and four partial sums of each row.
    pub fn bwd_shared_bytes(hidden: usize, rows: usize) -> usize {
        let ms = hidden.saturating_sub(KREG);
        F32 * (4 * ms * (hidden + 1) + rows * 9 * hidden)
    }

    /// The plan for `dims` on a device with `max_shared` bytes of shared
    /// memory per block, carrying at most `rows_wanted` rows per block; or
    /// why the persistent kernels cannot run this shape.
    pub fn new(
        dims: LstmDims,
        max_shared: u32,
        rows_wanted: usize,
    ) -> std::result::Result<Self, String> {
        let h = dims.hidden;
        if h == 0 || !h.is_multiple_of(8) || h > MAX_HIDDEN {
            return Err(format!(
                "H = {h}: the persistent kernels need H a multiple of 8 in 8..={MAX_HIDDEN} \
                 (4H threads per block)"
            ));
        }
        if dims.batch == 0 || dims.seq_len == 0 {
            return Err("empty batch".into());
        }
        // The kernels index with u32 products (4 * seq_len * rows fits too).
        if 4 * h * h > u32::MAX as usize || dims.seq_len > u32::MAX as usize / 16 {
            return Err(format!("T = {} is too long", dims.seq_len));
        }
        let limit = max_shared as usize;
        let fits = |r: usize| {
            Self::fwd_shared_bytes(h, r, dims.seq_len) <= limit
                && Self::bwd_shared_bytes(h, r) <= limit
        };
        let rows = (1..=rows_wanted.clamp(1, MAX_ROWS).min(dims.batch))
            .rev()
            .find(|&r| fits(r))
            .ok_or_else(|| {
                format!(
                    "H = {h}: the weights' share of shared memory ({} bytes forward, {} \
                     backward) exceeds the device's {limit} bytes per block",
                    Self::fwd_shared_bytes(h, 1, dims.seq_len),
                    Self::bwd_shared_bytes(h, 1)
                )
            })?;
        Ok(PersistentPlan {
            rows,
            ms: h.saturating_sub(KREG),
            blocks: dims.batch.div_ceil(rows),
            fwd_shared: Self::fwd_shared_bytes(h, rows, dims.seq_len),
            bwd_shared: Self::bwd_shared_bytes(h, rows),
            specialized: h == SPECIALIZED_HIDDEN,
        })
    }

    /// Rows per block that spread `batch` over `multiprocessors` SMs, one
    /// block per SM (more rows per block only when the batch exceeds them).
    pub fn rows_for(batch: usize, multiprocessors: u32) -> usize {
        batch
            .div_ceil(multiprocessors.max(1) as usize)
            .clamp(1, MAX_ROWS)
    }

    /// The (forward, backward) kernels this plan launches in the window
    /// form.
    pub fn kernels(&self) -> (&'static str, &'static str) {
        self.kernels_for(false, false)
    }

    /// The (forward, backward) kernels for `bufs`: the dense forward for a
    /// dense input, the sequence form's forward when it has an initial
    /// state, its backward when it has a gradient at every step (see
    /// [`LstmBuffers`]).
    pub fn kernels_of(&self, bufs: &LstmBuffers) -> (&'static str, &'static str) {
        let (fwd, bwd) = self.kernels_for(bufs.has_initial_state(), bufs.dy != DevicePtr::NULL);
        match bufs.is_dense() {
            true => (self.dense_forward(), bwd),
            false => (fwd, bwd),
        }
    }

    /// The forward kernel of a dense layer (the sequence form's; its h0 /
    /// c0 may be NULL).
    pub fn dense_forward(&self) -> &'static str {
        // KERNELS lists the generic-H build first, then H = 128's.
        LstmPersistentSeqDenseFwdF32::KERNELS[usize::from(self.specialized)]
    }

    /// The (forward, backward) kernels in the sequence form (`true`) or
    /// the window form.
    pub fn kernels_for(&self, seq_fwd: bool, seq_bwd: bool) -> (&'static str, &'static str) {
        let (f, b) = (LstmPersistentFwdF32::KERNELS, LstmPersistentBwdF32::KERNELS);
        let (sf, sb) = (
            LstmPersistentSeqFwdF32::KERNELS,
            LstmPersistentSeqBwdF32::KERNELS,
        );
        // KERNELS lists the generic-H build first, then H = 128's.
        let i = usize::from(self.specialized);
        (
            if seq_fwd { sf[i] } else { f[i] },
            if seq_bwd { sb[i] } else { b[i] },
        )
    }

    fn u32s(
        &self,
        kernel: &'static str,
        dims: LstmDims,
    ) -> Result<(u32, u32, u32, u32, u32, u32, u32)> {
        let c = |x: usize, name: &str| kernel_u32(kernel, name, x);
        Ok((
            c(dims.batch, "B")?,
            c(dims.seq_len, "T")?,
            c(dims.hidden, "H")?,
            c(dims.vocab, "V")?,
            c(self.rows, "rows")?,
            c(self.ms, "ms")?,
            c(self.blocks, "blocks")?,
        ))
    }

    /// The whole forward: reads corpus rows `starts[b] + t` (a dense layer:
    /// `zx`) and the initial state `h0`, `c0` when given, overwrites
    /// `gates`, `c`, `h`, `cls` (not for a dense layer) for all T steps (as the per-step kernel's T launches do, to
    /// the same bits).
    pub fn forward<D: GpuDevice>(
        &self,
        dev: &mut D,
        dims: LstmDims,
        bufs: &LstmBuffers,
    ) -> Result<()> {
        let (name, _) = self.kernels_of(bufs);
        let (b, t, h, v, rows, ms, blocks) = self.u32s(name, dims)?;
        let wpr = kernel_u32(name, "words_per_row", dims.words_per_row)?;
        let cfg = LaunchConfig::linear(blocks, 4 * h, self.fwd_shared as u32);
        if bufs.is_dense() {
            // zx the whole t-major [T, B, 4H] input term, h0 / c0 [B, H] or NULL (zeros); the
            // launch of the one-hot forms (whose classes part of the shared memory this form
            // leaves unused); writes no cls.
            let args = LstmPersistentSeqDenseFwdF32 {
                zx: bufs.zx,
                recurrent_kernel: bufs.recurrent_kernel,
                B: b,
                T: t,
                H: h,
                rows,
                ms,
                h0: bufs.h0,
                c0: bufs.c0,
                gates: bufs.gates,
                c: bufs.c,
                h: bufs.h,
            };
            return args.launch(dev, name, cfg);
        }
        if bufs.has_initial_state() {
            // As the window form below, plus h0 / c0 [B, H] (either may be NULL: zeros).
            let args = LstmPersistentSeqFwdF32 {
                corpus_words: bufs.corpus_words,
                words_per_row: wpr,
                starts: bufs.starts,
                kernel: bufs.kernel,
                recurrent_kernel: bufs.recurrent_kernel,
                bias: bufs.bias,
                B: b,
                T: t,
                H: h,
                V: v,
                rows,
                ms,
                h0: bufs.h0,
                c0: bufs.c0,
                gates: bufs.gates,
                c: bufs.c,
                h: bufs.h,
                cls: bufs.cls,
            };
            return args.launch(dev, name, cfg);
        }
        // The _h128 kernel ignores H and ms (compiled in); plan() picks it only at H = 128, ms =
        // 72. The whole t-major buffers; blockDim 4H, grid ceil(B / rows), the plan's shared bytes;
        // the caller guarantees every starts[b] + T - 1 is a corpus row.
        let args = LstmPersistentFwdF32 {
            corpus_words: bufs.corpus_words,
            words_per_row: wpr,
            starts: bufs.starts,
            kernel: bufs.kernel,
            recurrent_kernel: bufs.recurrent_kernel,
            bias: bufs.bias,
            B: b,
            T: t,
            H: h,
            V: v,
            rows,
            ms,
            gates: bufs.gates,
            c: bufs.c,
            h: bufs.h,
            cls: bufs.cls,
        };
        args.launch(dev, name, cfg)
    }

    /// The whole backward recurrence. Window form (`dy` NULL): from `dh` =
    /// dh_{T-1}, overwrites `dz` for all T steps (`dh` and `dc` are left as
    /// they were). Sequence form: from `dy` at every step, dh_T / dc_T in
    /// `dh` / `dc` and c_{-1} in `c0`; overwrites `dz`, and `dh` / `dc`
    /// with dh_{-1} / dc_{-1}.
    pub fn backward<D: GpuDevice>(
        &self,
        dev: &mut D,
        dims: LstmDims,
        bufs: &LstmBuffers,
    ) -> Result<()> {
        let (_, name) = self.kernels_of(bufs);
        let (b, t, h, _, rows, ms, blocks) = self.u32s(name, dims)?;
        let cfg = LaunchConfig::linear(blocks, 4 * h, self.bwd_shared as u32);
        if bufs.dy != DevicePtr::NULL {
            // `gates`, `c`, `dy`, `dz` the whole t-major buffers; c0, dh, dc [B, H], each read and
            // written by one thread per element; blockDim 4H, grid ceil(B / rows), the plan's
            // shared bytes (the window form's).
            let args = LstmPersistentSeqBwdF32 {
                gates: bufs.gates,
                c: bufs.c,
                c0: bufs.c0,
                dy: bufs.dy,
                recurrent_kernel: bufs.recurrent_kernel,
                B: b,
                T: t,
                H: h,
                rows,
                ms,
                dh: bufs.dh,
                dc: bufs.dc,
                dz: bufs.dz,
            };
            return args.launch(dev, name, cfg);
        }
        // As the forward's: `gates`, `c`, `dz` the whole t-major buffers, dh_last [B, H]; blockDim
        // 4H, grid ceil(B / rows), the plan's shared bytes.
        let args = LstmPersistentBwdF32 {
            gates: bufs.gates,
            c: bufs.c,
            dh_last: bufs.dh,
            recurrent_kernel: bufs.recurrent_kernel,
            B: b,
            T: t,
            H: h,
            rows,
            ms,
            dz: bufs.dz,
        };
        args.launch(dev, name, cfg)
    }
}
