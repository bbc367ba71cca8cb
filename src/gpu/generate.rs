//! Launcher of `kernels/generate.cu`: the whole sampling loop (every
//! strategy as one batch, N characters) in one launch, one block per
//! sequence, in either [`GenMode`]: `generate_fwd_f32` slides the
//! notebook's window, `generate_stateful_f32` primes on the whole seed once
//! and carries (h, c), one LSTM step a character.
//!
//! For the same `(seed, stream)` it draws the same Philox numbers as the CPU
//! generator of the same mode
//! ([`IndexGenerator::generate`](crate::sample::IndexGenerator::generate)
//! over the CPU reference, or `crate::stateful::generate_stateful`), so the
//! two produce the same text except where `u` falls within rounding of a
//! cumulative boundary (or two probabilities tie, for greedy): the device's
//! probabilities differ from the CPU's in the last bits.

use super::contract::generate::{self as contract, GenerateFwdF32};
use super::device::{
    DeviceError, DevicePtr, GpuDevice, LaunchConfig, SCRATCH_FLOATS, check_whole_warps, kernel_u32,
};
use crate::error::Result;
use crate::model::ParamLayout;
use crate::sample::{GenMode, GenerateRequest, Strategy, check_generate_args, check_length};

/// Rows of `recurrent_kernel` per thread in registers.
pub const KREG_GEN: usize = contract::KREG_GEN as usize;

/// Device buffers of one generation launch. Parameter shapes (row-major,
/// Keras): `kernel` [V, 4H], `recurrent_kernel` [H, 4H], `bias` \[4H\],
/// `dense_kernel` [H, V], `dense_bias` \[V\]; `seed_tail` \[L\] u32 class
/// indices (window mode: `L = min(seed length, maxlen)`, the window the
/// first character sees; stateful: the whole seed); `strategy` \[S\] f64 codes ([`GenerateLauncher::encode`]); `out`
/// [S, N] u32 class indices, sequence-major (`j * N + k`), overwritten.
#[derive(Clone, Copy, Debug)]
pub struct GenerateBuffers {
    /// LSTM input weights [V, 4H].
    pub kernel: DevicePtr,
    /// LSTM recurrent weights [H, 4H].
    pub recurrent_kernel: DevicePtr,
    /// LSTM bias \[4H\].
    pub bias: DevicePtr,
    /// Dense head weights [H, V].
    pub dense_kernel: DevicePtr,
    /// Dense head bias \[V\].
    pub dense_bias: DevicePtr,
    /// \[L\] u32 class indices: the last `min(seed length, maxlen)` seed
    /// characters (window mode), or all of them (stateful).
    pub seed_tail: DevicePtr,
    /// \[S\] f64 strategy codes, one per sequence ([`GenerateLauncher::encode`]).
    pub strategy: DevicePtr,
    /// [S, N] u32 generated class indices, sequence-major; overwritten.
    pub out: DevicePtr,
}

impl GenerateBuffers {
    /// The five parameter tensors sliced out of one flat [`ParamLayout`]
    /// buffer (the trainer's `d_params`), plus the other three buffers.
    pub fn from_flat(
        params: DevicePtr,
        layout: ParamLayout,
        seed_tail: DevicePtr,
        strategy: DevicePtr,
        out: DevicePtr,
    ) -> Self {
        let at = layout
            .ranges()
            .map(|r| params.offset(r.start * std::mem::size_of::<f32>()));
        GenerateBuffers {
            kernel: at[0],
            recurrent_kernel: at[1],
            bias: at[2],
            dense_kernel: at[3],
            dense_bias: at[4],
            seed_tail,
            strategy,
            out,
        }
    }
}

/// Sizes of one generation launch, and its mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenerateDims {
    /// Window (`generate_fwd_*`) or stateful (`generate_stateful_*`).
    pub mode: GenMode,
    /// Vocabulary size V.
    pub vocab: usize,
    /// Hidden units H.
    pub hidden: usize,
    /// Longest window (the notebook's `maxlen`).
    pub maxlen: usize,
    /// Indices in `seed_tail`: 1..=maxlen in window mode, any number from 1
    /// in stateful mode (the whole seed).
    pub tail_len: usize,
    /// Sequences S (strategies); one block each.
    pub sequences: usize,
    /// New characters N per sequence.
    pub length: usize,
}

/// Block size and on-chip weights of the generation kernels.
#[derive(Clone, Copy, Debug)]
pub struct GenerateLauncher {
    /// Upper bound on threads per block (a multiple of 32, at most 512: the
    /// kernel's `__launch_bounds__`, which leaves it 128 registers for the
    /// weights it keeps in registers).
    /// The block covers max(4H, V) threads, rounded up to a warp, up to this;
    /// the kernel's strided loops cover the rest.
    pub max_block: u32,
    /// At most this many rows of `recurrent_kernel` in shared memory (`None`:
    /// as many as fit); the rest beyond the register rows is read from
    /// global memory. For tests of that path on a device with room to spare.
    pub max_shared_rows: Option<usize>,
}

impl Default for GenerateLauncher {
    fn default() -> Self {
        GenerateLauncher {
            max_block: 512,
            max_shared_rows: None,
        }
    }
}

impl GenerateLauncher {
    const KERNEL: &'static str = "generate_fwd_f32";
    const KERNEL_H128: &'static str = "generate_fwd_h128_f32";
    const STATEFUL: &'static str = "generate_stateful_f32";
    const STATEFUL_H128: &'static str = "generate_stateful_h128_f32";

    /// The kernel a launch of `dims` runs on a device with `max_shared`
    /// bytes per block: that of its mode, the H = 128 build when H is 128
    /// and its weights sit as that build assumes (72 rows shared, 56 in
    /// registers), else the general one.
    pub fn kernel_for(&self, dims: GenerateDims, max_shared: u32) -> &'static str {
        Self::kernel_of(dims, self.weights_on_chip(dims, max_shared))
    }

    /// [`kernel_for`](Self::kernel_for) given `weights_on_chip`'s answer.
    fn kernel_of(dims: GenerateDims, on_chip: (usize, usize)) -> &'static str {
        let h128 = dims.hidden == 128 && on_chip == (128 - KREG_GEN, KREG_GEN);
        match (dims.mode, h128) {
            (GenMode::Window, false) => Self::KERNEL,
            (GenMode::Window, true) => Self::KERNEL_H128,
            (GenMode::Stateful, false) => Self::STATEFUL,
            (GenMode::Stateful, true) => Self::STATEFUL_H128,
        }
    }

    /// The general kernel of `mode`, which errors name.
    fn name_of(mode: GenMode) -> &'static str {
        match mode {
            GenMode::Window => Self::KERNEL,
            GenMode::Stateful => Self::STATEFUL,
        }
    }

    /// The kernel's strategy codes: a temperature `T` as itself (> 0),
    /// greedy as 0, uniform as -1.
    pub fn encode(strategies: &[Strategy]) -> Vec<f64> {
        strategies
            .iter()
            .map(|s| match *s {
                Strategy::Temperature(t) => t,
                Strategy::Greedy => 0.0,
                Strategy::Uniform => -1.0,
            })
            .collect()
    }

    /// Dynamic shared memory of one block before the weight rows: the
    /// reductions' scratch \[32\] f32, h \[H\], c \[H\], gates \[4H\], w \[V\] f64,
    /// p \[V\] f32 and the ring \[R\] u32 (window mode: R = maxlen, the window;
    /// stateful: R = 1, the last drawn index). The kernel declares no static
    /// shared memory, so this plus the rows is its whole footprint.
    pub fn shared_bytes(dims: GenerateDims) -> usize {
        let ring = match dims.mode {
            GenMode::Window => dims.maxlen,
            GenMode::Stateful => 1,
        };
        8 * dims.vocab + 4 * (6 * dims.hidden + dims.vocab + ring + SCRATCH_FLOATS)
    }

    /// Rows of `recurrent_kernel` the kernel keeps on chip, `(ms, kr)`: the
    /// first `ms` in shared memory (as many as fit after the state, up to
    /// H - kr), the next `kr` in registers (only when the block covers all
    /// 4H columns, one thread each); any rest stays in global memory.
    pub fn weights_on_chip(&self, dims: GenerateDims, max_shared: u32) -> (usize, usize) {
        let (h, g) = (dims.hidden, 4 * dims.hidden);
        let kr = if self.block_for(dims) as usize >= g {
            KREG_GEN.min(h)
        } else {
            0
        };
        let room = (max_shared as usize).saturating_sub(Self::shared_bytes(dims)) / (4 * g).max(1);
        let cap = self.max_shared_rows.unwrap_or(usize::MAX);
        ((h - kr).min(room).min(cap), kr)
    }

    /// Threads per block for `dims`.
    pub fn block_for(&self, dims: GenerateDims) -> u32 {
        let want = (4 * dims.hidden).max(dims.vocab).div_ceil(32) * 32;
        u32::try_from(want)
            .unwrap_or(u32::MAX)
            .clamp(32, self.max_block)
    }

    /// One launch: `out[j, k]` for every sequence j < S and character k < N
    /// (nothing is launched when S or N is 0). The caller fills `seed_tail`
    /// with in-vocabulary indices and `strategy` with valid codes;
    /// [`generate`](Self::generate) does all of that.
    pub fn launch<D: GpuDevice>(
        &self,
        dev: &mut D,
        dims: GenerateDims,
        bufs: &GenerateBuffers,
        seed: u64,
        stream: u32,
    ) -> Result<()> {
        let name = Self::name_of(dims.mode);
        let bad = |what: String| DeviceError::BadArguments { kernel: name, what };
        check_whole_warps(name, "max_block", self.max_block, 512)?;
        let GenerateDims {
            mode,
            vocab,
            hidden,
            maxlen,
            tail_len,
            sequences,
            length,
        } = dims;
        if vocab == 0 || hidden == 0 || maxlen == 0 {
            return Err(bad(format!(
                "empty model: V = {vocab}, H = {hidden}, maxlen = {maxlen}"
            ))
            .into());
        }
        if tail_len == 0 || (mode == GenMode::Window && tail_len > maxlen) {
            return Err(bad(match mode {
                GenMode::Window => {
                    format!("seed tail of {tail_len} indices, not in 1..=maxlen = {maxlen}")
                }
                GenMode::Stateful => "an empty seed (stateful mode primes on at least 1)".into(),
            })
            .into());
        }
        let to_u32 = |x: usize, what: &str| kernel_u32(name, what, x);
        let (v, h, m, l) = (
            to_u32(vocab, "V")?,
            to_u32(hidden, "H")?,
            to_u32(maxlen, "maxlen")?,
            to_u32(tail_len, "seed tail length")?,
        );
        let (s, n) = (to_u32(sequences, "S")?, to_u32(length, "N")?);
        // The kernel computes 4H and the position L + k of every character
        // (stateful: of every step) in u32.
        to_u32(4 * hidden, "4H")?;
        to_u32(tail_len + length, "seed tail + N")?;
        if s == 0 || n == 0 {
            return Ok(());
        }
        let limit = dev.max_shared_bytes();
        let (ms, kr) = self.weights_on_chip(dims, limit);
        let shared = Self::shared_bytes(dims) + 4 * ms * 4 * hidden;
        if shared > limit as usize {
            return Err(DeviceError::SharedMemory {
                kernel: name,
                requested: shared,
                limit,
            }
            .into());
        }
        // The kernel of dims.mode; an h128 build only where kernel_for picks it: H = 128, ms = 72,
        // kr = 56, which it has compiled in. Buffers sized as in GenerateBuffers (seed_tail L u32s
        // in 0..V, strategy S valid codes, out S*N u32s); L >= 1 (window: L <= maxlen) and L + N
        // fit u32 (checked above). grid.x = S (one block per sequence), dynamic shared memory
        // 8V + 4(6H + V + R + 32) + 16 ms H bytes (R = maxlen, stateful 1), checked against the
        // device limit; kr > 0 only with a block of at least 4H threads (weights_on_chip),
        // ms + kr <= H.
        let args = GenerateFwdF32 {
            kernel: bufs.kernel,
            recurrent_kernel: bufs.recurrent_kernel,
            bias: bufs.bias,
            dense_kernel: bufs.dense_kernel,
            dense_bias: bufs.dense_bias,
            H: h,
            V: v,
            seed_tail: bufs.seed_tail,
            L: l,
            maxlen: m,
            strategy: bufs.strategy,
            S: s,
            N: n,
            seed,
            stream,
            ms: ms as u32,
            kr: kr as u32,
            out: bufs.out,
        };
        dev.launch(
            GenerateFwdF32::MODULE,
            Self::kernel_of(dims, (ms, kr)),
            LaunchConfig::linear(s, self.block_for(dims), shared as u32),
            &args.args(),
        )
    }

    /// The device twin of the CPU generator of `req.mode`
    /// ([`GenerateRequest::run_on`] or `crate::stateful::generate_stateful`),
    /// with the model in the flat [`ParamLayout`] buffer `params`.
    /// Uploads the seed (window mode: its last `maxlen` indices) and the
    /// strategy codes, launches once, downloads `out` and frees what it
    /// allocated.
    ///
    /// Errors: those of the CPU generator for the same arguments
    /// (`InvalidArgument`: `maxlen == 0`, an invalid temperature, an empty
    /// seed, an index `>= V`), `TooLong` (`length` above
    /// [`MAX_LENGTH`](crate::sample::MAX_LENGTH)); `length == 0` or no strategies returns S empty
    /// sequences without launching; the device's own errors.
    pub fn generate<D: GpuDevice>(
        &self,
        dev: &mut D,
        params: DevicePtr,
        layout: ParamLayout,
        req: &GenerateRequest,
    ) -> Result<Vec<Vec<u32>>> {
        let GenerateRequest {
            seed_indices,
            maxlen,
            length,
            strategies,
            seed,
            stream,
            mode,
        } = *req;
        check_generate_args(layout.vocab, maxlen, seed_indices, strategies)?;
        check_length("length", length)?;
        let s = strategies.len();
        if length == 0 || s == 0 {
            return Ok(vec![Vec::new(); s]);
        }
        let tail = match mode {
            GenMode::Window => &seed_indices[seed_indices.len().saturating_sub(maxlen)..],
            GenMode::Stateful => seed_indices,
        };
        let dims = GenerateDims {
            mode,
            vocab: layout.vocab,
            hidden: layout.hidden,
            maxlen,
            tail_len: tail.len(),
            sequences: s,
            length,
        };
        let out_bytes = s
            .checked_mul(length)
            .and_then(|x| x.checked_mul(4))
            .ok_or_else(|| DeviceError::BadArguments {
                kernel: Self::name_of(mode),
                what: format!("{s} x {length} output indices overflow usize"),
            })?;
        let codes = Self::encode(strategies);
        // Allocate all three or none: an allocation that fails (out of
        // device memory) frees the ones before it.
        let mut ptrs = Vec::with_capacity(3);
        for bytes in [std::mem::size_of_val(tail), codes.len() * 8, out_bytes] {
            match dev.alloc(bytes) {
                Ok(p) => ptrs.push(p),
                Err(e) => {
                    for p in ptrs {
                        let _ = dev.free(p);
                    }
                    return Err(e);
                }
            }
        }
        let [d_tail, d_codes, d_out] = ptrs[..] else {
            unreachable!("three sizes, three allocations")
        };
        let run = |dev: &mut D| -> Result<Vec<u32>> {
            dev.upload_u32(d_tail, tail)?;
            dev.upload(d_codes, bytemuck::cast_slice(&codes))?;
            let bufs = GenerateBuffers::from_flat(params, layout, d_tail, d_codes, d_out);
            self.launch(dev, dims, &bufs, seed, stream)?;
            let mut flat = vec![0u32; s * length];
            dev.download(d_out, bytemuck::cast_slice_mut(&mut flat))?;
            Ok(flat)
        };
        let result = run(dev);
        // Free even when the launch failed; report the first error.
        let freed = [d_tail, d_codes, d_out]
            .into_iter()
            .try_for_each(|p| dev.free(p));
        let flat = result?;
        freed?;
        Ok(flat.chunks_exact(length).map(<[u32]>::to_vec).collect())
    }
}
