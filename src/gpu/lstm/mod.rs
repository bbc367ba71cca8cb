//! The LSTM on a device: its buffers ([`LstmBuffers`]) and sizes
//! ([`LstmDims`]), and the choice of path ([`LstmLauncher`]) between the
//! leaves that launch it:
//!
//! - [`persistent`]: the whole recurrence in one launch per direction
//!   (`kernels/lstm_persistent.cu`), where the shape fits;
//! - [`cell`]: one launch per time step (`kernels/lstm.cu`), the path the
//!   persistent kernels are checked against and the fallback;
//! - [`wgrad`]: the three weight gradients after the recurrence
//!   (`kernels/wgrad.cu`) when `LstmBuffers::wgrad_scratch` is set, else the
//!   reference `lstm_wgrad_bwd_f32` of [`cell`];
//! - [`stack`]: N layers over these, with the dense products
//!   (`super::gemm`) and dropout (`super::dropout`) between them.
//!
//! Gate order i, f, c(g), o along every 4H axis. The saved state is t-major
//! (see [`LstmBuffers`]).
//!
//! Two forms. The window form (the notebook's): zero initial state, one
//! gradient dh_{T-1} at the last step. The sequence form (stream training's
//! loss at every step, the layer above in a stack): an initial state `h0`,
//! `c0` and a gradient `dy` at every step, plus the initial state's
//! gradient out. Which one runs is read off the buffers: `h0` / `c0` set
//! selects the sequence form's forward, `dy` set its backward. The window
//! form's kernels are compiled exactly as before the sequence form existed
//! (template flags), so the notebook's bits and speed do not move.
//!
//! Two inputs. One-hot (a first layer over characters): the input term is
//! a gathered row of `kernel` plus `bias`, decoded from the corpus. Dense
//! (a layer above the first, `zx` set): the input term `Z_x = X @ kernel +
//! bias` [T, B, 4H] of all steps is one GEMM ahead of the recurrence
//! (`super::gemm`), and the forward reads it (the `_dense_` forward
//! kernels, always in the sequence form: h0 / c0 NULL are zeros). The
//! backward does not depend on the input; the weight gradients of a dense
//! layer are run with V = 0 (d recurrent_kernel and d bias; its d kernel
//! `X^T @ dz` is the caller's GEMM, as is `dX = dz @ kernel^T`).

pub mod cell;
pub mod cluster;
pub mod persistent;
pub mod stack;
pub mod wgrad;

use super::cuda_device::NO_CLUSTERS;
use super::device::{DeviceError, DevicePtr, GpuDevice, check_whole_warps, kernel_u32};
use crate::error::Result;
use cluster::ClusterPlan;
use persistent::PersistentPlan;
use wgrad::WgradLauncher;

pub use crate::engine::LstmPath;

const F32: usize = std::mem::size_of::<f32>();

/// Device buffers of the LSTM over one batch. Shapes (row-major, Keras):
///
/// | buffer | shape | written by |
/// |---|---|---|
/// | `corpus_words` | rows x words_per_row u64 (the packed one-hot stream) | caller |
/// | `starts` | \[B\] u32 window starts (row of step t: `starts[b] + t`) | caller |
/// | `kernel` | [V, 4H] | caller |
/// | `recurrent_kernel` | [H, 4H] | caller |
/// | `bias` | \[4H\] | caller |
/// | `gates` | [T, B, 4H] activated i, f, g, o | forward |
/// | `c` | [T, B, H] cell state | forward |
/// | `h` | [T, B, H] hidden state; `h[T-1]` feeds the head | forward |
/// | `cls` | [T, B] u32 decoded input classes (dense input: not written; any readable [T, B] u32 buffer, which the weight gradients read at V = 0 and add to no row) | forward |
/// | `zx` | [T, B, 4H] the dense input term `X @ kernel + bias`, or NULL (one-hot: the corpus) | caller |
/// | `h0`, `c0` | [B, H] initial state, or NULL (zeros; both NULL: the window form) | caller |
/// | `dy` | [T, B, H] gradient arriving at every h_t, or NULL (the window form) | caller |
/// | `dz` | [T, B, 4H] pre-activation gradients | backward |
/// | `dh` | [B, H]: window form: in, dh_{T-1} from the head, scratch after; sequence form: in dh_T, out dh_{-1} | caller, backward |
/// | `dc` | [B, H]: window form: scratch; sequence form: in dc_T, out dc_{-1} | caller, backward |
/// | `d_kernel`, `d_recurrent_kernel`, `d_bias` | as the parameters | [`LstmLauncher::wgrad`] |
/// | `wgrad_scratch` | [`WgradLauncher::scratch_len`] f32s, or NULL (then the reference `lstm_wgrad_bwd_f32` runs) | [`LstmLauncher::wgrad`] |
///
/// The final state (h_T, c_T) of either form is step T-1 of `h` and `c`.
/// The default has every buffer NULL.
#[derive(Clone, Copy, Debug, Default)]
pub struct LstmBuffers {
    /// The packed one-hot corpus, read-only (the input `x_t` is decoded from it).
    pub corpus_words: DevicePtr,
    /// \[B\] u32 window starts: row `starts[b] + t` of the corpus is step t's input.
    pub starts: DevicePtr,
    /// [V, 4H] input weights.
    pub kernel: DevicePtr,
    /// [H, 4H] recurrent weights.
    pub recurrent_kernel: DevicePtr,
    /// \[4H\] bias.
    pub bias: DevicePtr,
    /// [T, B, 4H] activated gates i, f, g, o, saved by the forward.
    pub gates: DevicePtr,
    /// [T, B, H] cell state, saved by the forward.
    pub c: DevicePtr,
    /// [T, B, H] hidden state, saved by the forward; `h[T-1]` feeds the head.
    pub h: DevicePtr,
    /// [T, B] u32 input classes the forward decoded, reused by the weight
    /// gradients (a dense layer: any readable [T, B] u32 buffer, see the table).
    pub cls: DevicePtr,
    /// [T, B, 4H] a dense layer's input term `X @ kernel + bias` for all
    /// steps, or NULL: the one-hot input decoded from `corpus_words`.
    pub zx: DevicePtr,
    /// [B, H] initial hidden state h_{-1}, or NULL: zeros.
    pub h0: DevicePtr,
    /// [B, H] initial cell state c_{-1}, or NULL: zeros.
    pub c0: DevicePtr,
    /// [T, B, H] the gradient arriving at h_t from outside the recurrence
    /// (a loss at every step, the layer above), or NULL: the window form.
    pub dy: DevicePtr,
    /// [T, B, 4H] pre-activation gradients, written by the backward.
    pub dz: DevicePtr,
    /// [B, H] window form: in, dh_{T-1} from the head, the backward's
    /// scratch after. Sequence form: in, dh_T (the final state's gradient);
    /// out, dh_{-1} (the initial state's).
    pub dh: DevicePtr,
    /// [B, H] window form: the backward's cell-state gradient scratch.
    /// Sequence form: in, dc_T; out, dc_{-1}.
    pub dc: DevicePtr,
    /// [V, 4H] gradient of `kernel`; overwritten.
    pub d_kernel: DevicePtr,
    /// [H, 4H] gradient of `recurrent_kernel`; overwritten.
    pub d_recurrent_kernel: DevicePtr,
    /// \[4H\] gradient of `bias`; overwritten.
    pub d_bias: DevicePtr,
    /// [`WgradLauncher::scratch_len`] f32s for the fast weight gradients, or
    /// [`DevicePtr::NULL`] for the reference `lstm_wgrad_bwd_f32`.
    pub wgrad_scratch: DevicePtr,
}

impl LstmBuffers {
    /// Whether the forward starts from a given state (the sequence form).
    pub fn has_initial_state(&self) -> bool {
        self.h0 != DevicePtr::NULL || self.c0 != DevicePtr::NULL
    }

    /// Whether the input is dense (`zx` set), not one-hot.
    pub fn is_dense(&self) -> bool {
        self.zx != DevicePtr::NULL
    }

    /// The sequence form's backward needs `dh` and `dc` (they carry the
    /// final and initial states' gradients), and an initial state needs
    /// it: the window form's backward takes c_{-1} = 0 and h_{-1} = 0.
    fn check_backward(&self, kernel: &'static str) -> Result<()> {
        let seq = self.dy != DevicePtr::NULL;
        let what = if seq && (self.dh == DevicePtr::NULL || self.dc == DevicePtr::NULL) {
            "the sequence form (dy set) needs dh and dc: they hold dh_T, dc_T on entry \
             (zero them for none) and dh_{-1}, dc_{-1} on return"
        } else if !seq && self.has_initial_state() {
            "an initial state (h0 / c0 set) needs the sequence form's backward: pass dy, \
             the gradient at every step (zeros but the last step for one loss at the end)"
        } else {
            return Ok(());
        };
        Err(DeviceError::BadArguments {
            kernel,
            what: what.into(),
        }
        .into())
    }
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
    /// Vocabulary size V (0 for a dense layer: no classes).
    pub vocab: usize,
    /// u64 words per packed one-hot row, `ceil(V / 64)`.
    pub words_per_row: usize,
}

impl LstmDims {
    /// The sizes of a dense layer of `hidden` units over `batch` x `seq_len`
    /// (V = 0: no classes, see [`LstmBuffers::zx`]).
    pub fn dense(batch: usize, seq_len: usize, hidden: usize) -> Self {
        LstmDims {
            batch,
            seq_len,
            hidden,
            vocab: 0,
            words_per_row: 0,
        }
    }
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

    /// [`at`](Self::at) of an optional buffer: NULL stays NULL (`dy` in the
    /// window form).
    pub fn at_or_null(&self, buf: DevicePtr, t: usize, width: usize) -> DevicePtr {
        match buf {
            DevicePtr::NULL => DevicePtr::NULL,
            buf => self.at(buf, t, width),
        }
    }

    /// Pointer to step `t - 1`, or `initial` at `t = 0` (the initial
    /// state; NULL, zeros for the kernels, in the window form).
    pub fn before(&self, buf: DevicePtr, t: usize, width: usize, initial: DevicePtr) -> DevicePtr {
        match t {
            0 => initial,
            _ => self.at(buf, t - 1, width),
        }
    }
}

/// Block sizes of the LSTM kernels (multiples of 32, at most 1024).
#[derive(Clone, Copy, Debug)]
pub struct LstmLauncher {
    /// Persistent or per-step recurrence.
    pub path: LstmPath,
    /// Batch rows per block of the persistent kernels; `None`: spread the
    /// batch over the device's multiprocessors.
    pub rows_per_block: Option<usize>,
    /// Threads per block of `lstm_cell_bwd_f32` (one thread per (b, j));
    /// the tiled forward and `lstm_dh_bwd_f32` fix their own block.
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
#[derive(Clone, Copy)]
struct Sizes {
    b: u32,
    t: u32,
    h: u32,
    v: u32,
    wpr: u32,
}

impl LstmLauncher {
    const FWD: &'static str = "lstm_cell_fwd_f32";
    const DENSE_FWD: &'static str = "lstm_cell_dense_fwd_f32";
    const BWD: &'static str = "lstm_cell_bwd_f32";
    const DH: &'static str = "lstm_dh_bwd_f32";
    const DH_CELL: &'static str = "lstm_dh_cell_bwd_f32";
    const WGRAD: &'static str = "lstm_wgrad_bwd_f32";

    fn sizes(&self, kernel: &'static str, dims: LstmDims) -> Result<Sizes> {
        let bad = |what: String| DeviceError::BadArguments { kernel, what };
        for block in [self.block, self.wgrad_block] {
            check_whole_warps(kernel, "block", block, 1024)?;
        }
        let to_u32 = |x: usize, name: &str| kernel_u32(kernel, name, x);
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

    /// The persistent kernels' plan for `dims` on `dev`, or `None` when the
    /// per-step kernels run it (chosen, or the shape does not fit `Auto`).
    pub fn plan<D: GpuDevice>(&self, dev: &D, dims: LstmDims) -> Result<Option<PersistentPlan>> {
        if matches!(self.path, LstmPath::PerStep | LstmPath::Cluster)
            || dims.batch == 0
            || dims.seq_len == 0
        {
            return Ok(None);
        }
        let rows = self
            .rows_per_block
            .unwrap_or_else(|| PersistentPlan::rows_for(dims.batch, dev.multiprocessors()));
        match PersistentPlan::new(dims, dev.max_shared_bytes(), rows) {
            Ok(plan) => Ok(Some(plan)),
            Err(_) if self.path == LstmPath::Auto => Ok(None),
            Err(what) => Err(DeviceError::BadArguments {
                kernel: "lstm_persistent_fwd_f32",
                what,
            }
            .into()),
        }
    }

    /// The whole forward recurrence: steps 0..T in order, one persistent
    /// launch or T per-step launches (see [`LstmPath`]); from `zx` when
    /// set (a dense layer, which needs `dims.vocab` = 0), else from the
    /// corpus.
    pub fn forward<D: GpuDevice>(
        &self,
        dev: &mut D,
        dims: LstmDims,
        bufs: &LstmBuffers,
    ) -> Result<()> {
        let name = if bufs.is_dense() {
            Self::DENSE_FWD
        } else {
            Self::FWD
        };
        self.sizes(name, dims)?;
        if bufs.is_dense() && dims.vocab != 0 {
            return Err(DeviceError::BadArguments {
                kernel: name,
                what: format!(
                    "a dense layer (zx set) has no classes, but V = {}: pass LstmDims::dense",
                    dims.vocab
                ),
            }
            .into());
        }
        if let Some(plan) = self.cluster_plan(dev, dims)? {
            return plan.forward(dev, dims, bufs);
        }
        if let Some(plan) = self.plan(dev, dims)? {
            return plan.forward(dev, dims, bufs);
        }
        (0..dims.seq_len).try_for_each(|t| self.fwd_step(dev, dims, bufs, t))
    }

    /// The cluster forward's plan when the path is [`LstmPath::Cluster`]
    /// (an error naming why the shape does not fit), else `None`.
    pub fn cluster_plan<D: GpuDevice>(
        &self,
        dev: &D,
        dims: LstmDims,
    ) -> Result<Option<ClusterPlan>> {
        if self.path != LstmPath::Cluster || dims.batch == 0 || dims.seq_len == 0 {
            return Ok(None);
        }
        let refuse = |what: String| DeviceError::BadArguments {
            kernel: "lstm_cluster_fwd_f32",
            what,
        };
        if !dev.clusters() {
            return Err(refuse(format!(
                "{} runs no thread-block clusters here (they need compute capability 9.0, \
                 Hopper, or newer, and {NO_CLUSTERS} unset): use LstmPath::Auto",
                dev.name()
            ))
            .into());
        }
        let rows = self
            .rows_per_block
            .unwrap_or_else(|| ClusterPlan::rows_for(dims.batch, dev.multiprocessors()));
        ClusterPlan::new(dims, dev.max_shared_bytes(), rows)
            .map(Some)
            .map_err(|what| refuse(what).into())
    }

    /// Whether the path can run `dims` on `dev`: the error [`forward`]
    /// and [`recurrence_backward`] would give for it, without launching
    /// anything (the plans they choose from, in their order).
    ///
    /// [`forward`]: Self::forward
    /// [`recurrence_backward`]: Self::recurrence_backward
    pub fn check_fits<D: GpuDevice>(&self, dev: &D, dims: LstmDims) -> Result<()> {
        self.cluster_plan(dev, dims)?;
        self.plan(dev, dims)?;
        Ok(())
    }

    /// The three LSTM weight gradients from `h`, `cls` and `dz` of all T
    /// steps, overwriting `d_kernel`, `d_recurrent_kernel` and `d_bias`:
    /// the fast path ([`wgrad`]) when `wgrad_scratch` is set and the
    /// shape fits it, else the reference `lstm_wgrad_bwd_f32`.
    pub fn wgrad<D: GpuDevice>(
        &self,
        dev: &mut D,
        dims: LstmDims,
        bufs: &LstmBuffers,
    ) -> Result<()> {
        let s = self.sizes(Self::WGRAD, dims)?;
        if bufs.wgrad_scratch != DevicePtr::NULL && self.fast_wgrad.run(dev, dims, bufs)? {
            return Ok(());
        }
        self.reference_wgrad(dev, dims, bufs, s)
    }

    /// The whole backward: [`recurrence_backward`](Self::recurrence_backward),
    /// then [`wgrad`](Self::wgrad).
    pub fn backward<D: GpuDevice>(
        &self,
        dev: &mut D,
        dims: LstmDims,
        bufs: &LstmBuffers,
    ) -> Result<()> {
        self.recurrence_backward(dev, dims, bufs)?;
        self.wgrad(dev, dims, bufs)
    }

    /// The recurrence's backward, steps T-1..0: dz of every step (and the
    /// sequence form's dh_{-1}, dc_{-1}), one persistent launch or T (window
    /// form) / T + 1 (sequence form) per-step launches
    /// ([`bwd_steps`](Self::bwd_steps)). Window form: `dh` must hold
    /// dh_{T-1} from the head; the per-step path leaves scratch in `dc`,
    /// the persistent one leaves `dh` and `dc` as they were. Sequence form
    /// (`dy` set): `dh`, `dc` hold dh_T, dc_T and get dh_{-1}, dc_{-1} on
    /// both paths.
    pub fn recurrence_backward<D: GpuDevice>(
        &self,
        dev: &mut D,
        dims: LstmDims,
        bufs: &LstmBuffers,
    ) -> Result<()> {
        self.sizes(Self::BWD, dims)?;
        bufs.check_backward(Self::BWD)?;
        if let Some(plan) = self.cluster_plan(dev, dims)? {
            return plan.backward(dev, dims, bufs);
        }
        match self.plan(dev, dims)? {
            Some(plan) => plan.backward(dev, dims, bufs),
            None => self.bwd_steps(dev, dims, bufs),
        }
    }
}
