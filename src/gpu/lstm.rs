//! Launcher of `kernels/lstm.cu`: the LSTM cell one time step per launch,
//! forward (`lstm_cell_fwd_f32`) and backward (`lstm_cell_bwd_f32` +
//! `lstm_dh_bwd_f32`), and the three LSTM weight gradients in one pass after
//! the recurrence (`lstm_wgrad_bwd_f32`, the reference; the fast path is
//! src/gpu/wgrad.rs when `LstmBuffers::wgrad_scratch` is set).
//!
//! Gate order i, f, c(g), o along every 4H axis. The saved state is t-major
//! (see [`LstmBuffers`]); this type turns a step `t` into the per-step slices
//! the kernels see.

use super::contract::lstm::{LstmCellBwdF32, LstmCellFwdF32, LstmDhBwdF32, LstmWgradBwdF32};
use super::device::{
    DeviceError, DevicePtr, GpuDevice, LaunchConfig, blocks_for, check_whole_warps,
};
use super::lstm_persistent::PersistentPlan;
use super::wgrad::WgradLauncher;
use crate::error::Result;

const F32: usize = std::mem::size_of::<f32>();

/// Device buffers of the LSTM over one batch. Shapes (row-major, Keras):
///
/// | buffer | shape | written by |
/// |---|---|---|
/// | `corpus_words` | rows x words_per_row u64 (the packed one-hot stream) | caller |
/// | `starts` | [B] u32 window starts (row of step t: `starts[b] + t`) | caller |
/// | `kernel` | [V, 4H] | caller |
/// | `recurrent_kernel` | [H, 4H] | caller |
/// | `bias` | [4H] | caller |
/// | `gates` | [T, B, 4H] activated i, f, g, o | forward |
/// | `c` | [T, B, H] cell state | forward |
/// | `h` | [T, B, H] hidden state; `h[T-1]` feeds the head | forward |
/// | `cls` | [T, B] u32 decoded input classes | forward |
/// | `dz` | [T, B, 4H] pre-activation gradients | backward |
/// | `dh` | [B, H]: in, dh_{T-1} from the head; scratch after | caller, backward |
/// | `dc` | [B, H] scratch | backward |
/// | `d_kernel`, `d_recurrent_kernel`, `d_bias` | as the parameters | [`LstmLauncher::wgrad`] |
/// | `wgrad_scratch` | [`WgradLauncher::scratch_len`] f32s, or NULL (then the reference `lstm_wgrad_bwd_f32` runs) | [`LstmLauncher::wgrad`] |
#[derive(Clone, Copy, Debug)]
pub struct LstmBuffers {
    pub corpus_words: DevicePtr,
    pub starts: DevicePtr,
    pub kernel: DevicePtr,
    pub recurrent_kernel: DevicePtr,
    pub bias: DevicePtr,
    pub gates: DevicePtr,
    pub c: DevicePtr,
    pub h: DevicePtr,
    pub cls: DevicePtr,
    pub dz: DevicePtr,
    pub dh: DevicePtr,
    pub dc: DevicePtr,
    pub d_kernel: DevicePtr,
    pub d_recurrent_kernel: DevicePtr,
    pub d_bias: DevicePtr,
    pub wgrad_scratch: DevicePtr,
}

/// Sizes of one LSTM batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LstmDims {
    /// Batch rows B.
    pub batch: usize,
    /// Time steps T (`maxlen`).
    pub seq_len: usize,
    /// Hidden units H.
    pub hidden: usize,
    /// Vocabulary size V.
    pub vocab: usize,
    /// u64 words per packed one-hot row, `ceil(V / 64)`.
    pub words_per_row: usize,
}

impl LstmDims {
    /// Bytes from step t to step t+1 in a [T, B, width] f32 buffer.
    fn step_bytes(&self, width: usize) -> usize {
        self.batch * width * F32
    }

    /// Pointer to step `t` of a t-major [T, B, width] f32 buffer.
    pub fn at(&self, buf: DevicePtr, t: usize, width: usize) -> DevicePtr {
        buf.offset(t * self.step_bytes(width))
    }
}

/// Which kernels run the recurrence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LstmPath {
    /// The persistent kernels where the shape fits (see
    /// [`PersistentPlan::new`]), else the per-step kernels.
    #[default]
    Auto,
    /// The per-step kernels: T launches forward, 2T backward.
    PerStep,
    /// The persistent kernels, or an error naming why the shape does not fit.
    Persistent,
}

/// Block sizes of the LSTM kernels (multiples of 32, at most 1024).
#[derive(Clone, Copy, Debug)]
pub struct LstmLauncher {
    /// Persistent or per-step recurrence.
    pub path: LstmPath,
    /// Batch rows per block of the persistent kernels; `None`: spread the
    /// batch over the device's multiprocessors.
    pub rows_per_block: Option<usize>,
    /// Threads per block of the per-step kernels (one thread per (b, j)).
    pub block: u32,
    /// Threads per block of `lstm_wgrad_bwd_f32`.
    pub wgrad_block: u32,
    /// Upper bound on every grid; the kernels' grid-stride loops cover the rest.
    pub max_blocks: u32,
    /// The fast weight gradients (kernels/wgrad.cu), used when
    /// `LstmBuffers::wgrad_scratch` is set and the shape fits.
    pub fast_wgrad: WgradLauncher,
}

impl Default for LstmLauncher {
    fn default() -> Self {
        LstmLauncher {
            path: LstmPath::Auto,
            rows_per_block: None,
            block: 128,
            wgrad_block: 256,
            max_blocks: 65_535,
            fast_wgrad: WgradLauncher::default(),
        }
    }
}

/// The kernel-facing u32 sizes, checked.
struct Sizes {
    b: u32,
    t: u32,
    h: u32,
    v: u32,
    wpr: u32,
}

impl LstmLauncher {
    const FWD: &'static str = "lstm_cell_fwd_f32";
    const BWD: &'static str = "lstm_cell_bwd_f32";
    const DH: &'static str = "lstm_dh_bwd_f32";
    const WGRAD: &'static str = "lstm_wgrad_bwd_f32";

    fn sizes(&self, kernel: &'static str, dims: LstmDims) -> Result<Sizes> {
        let bad = |what: String| DeviceError::BadArguments { kernel, what };
        for block in [self.block, self.wgrad_block] {
            check_whole_warps(kernel, "block", block, 1024)?;
        }
        let to_u32 = |x: usize, name: &str| {
            u32::try_from(x).map_err(|_| bad(format!("{name} = {x} does not fit u32")))
        };
        let s = Sizes {
            b: to_u32(dims.batch, "B")?,
            t: to_u32(dims.seq_len, "T")?,
            h: to_u32(dims.hidden, "H")?,
            v: to_u32(dims.vocab, "V")?,
            wpr: to_u32(dims.words_per_row, "words_per_row")?,
        };
        // The kernels index kernel / recurrent_kernel rows with u32 products.
        to_u32(
            4 * dims.hidden * dims.vocab.max(dims.hidden),
            "4H * max(V, H)",
        )?;
        if dims.words_per_row != dims.vocab.div_ceil(64) {
            return Err(bad(format!(
                "words_per_row = {} but V = {} needs {}",
                dims.words_per_row,
                dims.vocab,
                dims.vocab.div_ceil(64)
            ))
            .into());
        }
        Ok(s)
    }

    fn step_grid(&self, dims: LstmDims) -> LaunchConfig {
        let n = dims.batch * dims.hidden;
        LaunchConfig::linear(blocks_for(n, self.block, self.max_blocks), self.block, 0)
    }

    /// Forward step `t` (0-based, `< T`): reads corpus rows `starts[b] + t`,
    /// `h[t-1]`, `c[t-1]` (zeros at t = 0); overwrites `gates[t]`, `c[t]`,
    /// `h[t]`, `cls[t]`.
    pub fn fwd_step<D: GpuDevice>(
        &self,
        dev: &mut D,
        dims: LstmDims,
        bufs: &LstmBuffers,
        t: usize,
    ) -> Result<()> {
        let s = self.sizes(Self::FWD, dims)?;
        check_step(Self::FWD, t, dims)?;
        if s.b == 0 || s.h == 0 {
            return Ok(());
        }
        let (h, g) = (dims.hidden, 4 * dims.hidden);
        let prev = |buf: DevicePtr| {
            if t == 0 {
                DevicePtr::NULL
            } else {
                dims.at(buf, t - 1, h)
            }
        };
        // The per-step pointers are step t (t-1 for the previous state, null at t = 0) of the
        // t-major buffers of LstmBuffers; the caller guarantees every starts[b] + t is a row of the
        // corpus. Grid-stride over B*H.
        let args = LstmCellFwdF32 {
            corpus_words: bufs.corpus_words,
            words_per_row: s.wpr,
            starts: bufs.starts,
            t: t as u32,
            kernel: bufs.kernel,
            recurrent_kernel: bufs.recurrent_kernel,
            bias: bufs.bias,
            B: s.b,
            H: s.h,
            V: s.v,
            h_prev: prev(bufs.h),
            c_prev: prev(bufs.c),
            gates: dims.at(bufs.gates, t, g),
            c: dims.at(bufs.c, t, h),
            h: dims.at(bufs.h, t, h),
            cls: bufs.cls.offset(t * dims.batch * 4),
        };
        dev.launch(
            LstmCellFwdF32::MODULE,
            Self::FWD,
            self.step_grid(dims),
            &args.args(),
        )
    }

    /// The persistent kernels' plan for `dims` on `dev`, or `None` when the
    /// per-step kernels run it (chosen, or the shape does not fit `Auto`).
    pub fn plan<D: GpuDevice>(&self, dev: &D, dims: LstmDims) -> Result<Option<PersistentPlan>> {
        if self.path == LstmPath::PerStep || dims.batch == 0 || dims.seq_len == 0 {
            return Ok(None);
        }
        let rows = self
            .rows_per_block
            .unwrap_or_else(|| PersistentPlan::rows_for(dims.batch, dev.multiprocessors()));
        match PersistentPlan::new(dims, dev.max_shared_bytes(), rows) {
            Ok(plan) => Ok(Some(plan)),
            Err(_) if self.path == LstmPath::Auto => Ok(None),
            Err(what) => Err(DeviceError::BadArguments {
                kernel: "lstm_fwd_persistent_f32",
                what,
            }
            .into()),
        }
    }

    /// The whole forward recurrence: steps 0..T in order, one persistent
    /// launch or T per-step launches (see [`LstmPath`]).
    pub fn forward<D: GpuDevice>(
        &self,
        dev: &mut D,
        dims: LstmDims,
        bufs: &LstmBuffers,
    ) -> Result<()> {
        self.sizes(Self::FWD, dims)?;
        if let Some(plan) = self.plan(dev, dims)? {
            return plan.forward(dev, dims, bufs);
        }
        (0..dims.seq_len).try_for_each(|t| self.fwd_step(dev, dims, bufs, t))
    }

    /// Backward step `t`, called for t = T-1 down to 0: given `dh` = dh_t
    /// and `dc` = dc_{t+1} (ignored, taken as zero, at t = T-1), overwrites
    /// `dz[t]`, `dc` with dc_t-1 and, for t > 0, `dh` with dh_{t-1}.
    pub fn bwd_step<D: GpuDevice>(
        &self,
        dev: &mut D,
        dims: LstmDims,
        bufs: &LstmBuffers,
        t: usize,
    ) -> Result<()> {
        let s = self.sizes(Self::BWD, dims)?;
        check_step(Self::BWD, t, dims)?;
        if s.b == 0 || s.h == 0 {
            return Ok(());
        }
        let (h, g) = (dims.hidden, 4 * dims.hidden);
        let c_prev = if t == 0 {
            DevicePtr::NULL
        } else {
            dims.at(bufs.c, t - 1, h)
        };
        let dc_next = if t + 1 == dims.seq_len {
            DevicePtr::NULL
        } else {
            bufs.dc
        };
        let dz = dims.at(bufs.dz, t, g);
        // `gates` / `c` / `dz` are step t of the t-major buffers, c_prev step t-1 (null at t = 0);
        // dc is read and written in place by the same thread. Grid-stride over B*H.
        let args = LstmCellBwdF32 {
            gates: dims.at(bufs.gates, t, g),
            c: dims.at(bufs.c, t, h),
            c_prev,
            dh: bufs.dh,
            dc_next,
            B: s.b,
            H: s.h,
            dz,
            dc_prev: bufs.dc,
        };
        dev.launch(
            LstmCellBwdF32::MODULE,
            Self::BWD,
            self.step_grid(dims),
            &args.args(),
        )?;
        if t == 0 {
            return Ok(()); // dh_{-1} is not needed
        }
        // Reads the dz[t] written just above (same stream, so ordered) and overwrites dh, which the
        // cell launch above has finished reading. Grid-stride over B*H.
        let args = LstmDhBwdF32 {
            dz,
            recurrent_kernel: bufs.recurrent_kernel,
            B: s.b,
            H: s.h,
            dh_prev: bufs.dh,
        };
        dev.launch(
            LstmDhBwdF32::MODULE,
            Self::DH,
            self.step_grid(dims),
            &args.args(),
        )
    }

    /// The three LSTM weight gradients from `h`, `cls` and `dz` of all T
    /// steps, overwriting `d_kernel`, `d_recurrent_kernel` and `d_bias`:
    /// the fast path (src/gpu/wgrad.rs) when `wgrad_scratch` is set and the
    /// shape fits it, else the reference `lstm_wgrad_bwd_f32`.
    pub fn wgrad<D: GpuDevice>(
        &self,
        dev: &mut D,
        dims: LstmDims,
        bufs: &LstmBuffers,
    ) -> Result<()> {
        let s = self.sizes(Self::WGRAD, dims)?;
        if bufs.wgrad_scratch != DevicePtr::NULL {
            let ran = self.fast_wgrad.run(
                dev,
                dims,
                bufs.h,
                bufs.cls,
                bufs.dz,
                bufs.wgrad_scratch,
                bufs.d_kernel,
                bufs.d_recurrent_kernel,
                bufs.d_bias,
            )?;
            if ran {
                return Ok(());
            }
        }
        self.reference_wgrad(dev, dims, bufs, s)
    }

    /// `lstm_wgrad_bwd_f32`: one thread per output, each summing all T*B
    /// rows in order.
    fn reference_wgrad<D: GpuDevice>(
        &self,
        dev: &mut D,
        dims: LstmDims,
        bufs: &LstmBuffers,
        s: Sizes,
    ) -> Result<()> {
        let g = 4 * dims.hidden;
        let n = g * dims.hidden + g * dims.vocab + g;
        if n == 0 {
            return Ok(());
        }
        // `h`, `cls` and `dz` are the whole t-major buffers ([T, B, H], [T, B], [T, B, 4H]).
        // Grid-stride over 4H*H + 4H*V + 4H outputs, one thread each, no atomics.
        let args = LstmWgradBwdF32 {
            h: bufs.h,
            cls: bufs.cls,
            dz: bufs.dz,
            T: s.t,
            B: s.b,
            H: s.h,
            V: s.v,
            d_kernel: bufs.d_kernel,
            d_recurrent_kernel: bufs.d_recurrent_kernel,
            d_bias: bufs.d_bias,
        };
        dev.launch(
            LstmWgradBwdF32::MODULE,
            Self::WGRAD,
            LaunchConfig::linear(
                blocks_for(n, self.wgrad_block, self.max_blocks),
                self.wgrad_block,
                0,
            ),
            &args.args(),
        )
    }

    /// The whole backward: steps T-1..0 (`dh` must hold dh_{T-1} from the
    /// head), one persistent launch or 2T - 1 per-step launches, then
    /// [`wgrad`](Self::wgrad). The per-step path leaves scratch in `dh` and
    /// `dc`; the persistent one leaves them as they were.
    pub fn backward<D: GpuDevice>(
        &self,
        dev: &mut D,
        dims: LstmDims,
        bufs: &LstmBuffers,
    ) -> Result<()> {
        self.sizes(Self::BWD, dims)?;
        match self.plan(dev, dims)? {
            Some(plan) => plan.backward(dev, dims, bufs)?,
            None => (0..dims.seq_len)
                .rev()
                .try_for_each(|t| self.bwd_step(dev, dims, bufs, t))?,
        }
        self.wgrad(dev, dims, bufs)
    }
}

/// A step index must lie inside the sequence.
fn check_step(kernel: &'static str, t: usize, dims: LstmDims) -> Result<()> {
    if t >= dims.seq_len {
        return Err(DeviceError::BadArguments {
            kernel,
            what: format!("step {t} of T = {}", dims.seq_len),
        }
        .into());
    }
    Ok(())
}
