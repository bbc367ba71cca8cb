//! Launcher of `kernels/wgrad.cu`: the three LSTM weight gradients, split
//! over the T*B (t, b) rows so the whole GPU works on them, then summed over
//! the splits in a fixed order (deterministic, no atomics). The fast path of
//! [`super::LstmLauncher::wgrad`]; `lstm_wgrad_bwd_f32` stays the
//! reference it is checked against and the fallback where this path does
//! not fit.
//!
//! Three launches: `wgrad_rk_partial_f32` (split-K 64 x 64 tiled GEMM,
//! d_recurrent_kernel partials), `wgrad_cls_partial_f32` (d_kernel and
//! d_bias partials, one thread per column with a shared \[V\]\[columns\]
//! accumulator) and `wgrad_reduce_f32` (the fixed-order sum over splits).

use super::{LstmBuffers, LstmDims};
use crate::error::Result;
use crate::gpu::contract::wgrad::{
    WG_KT, WG_THREADS, WG_TM, WG_TN, WgradClsPartialF32, WgradReduceF32, WgradRkPartialF32,
};
use crate::gpu::device::{
    DevicePtr, GpuDevice, LaunchConfig, blocks_for, check_whole_warps, kernel_u32,
};

const F32: usize = std::mem::size_of::<f32>();

/// Tile of `wgrad_rk_partial_f32`: square, `WG_TM` x `WG_TN` outputs.
const TILE: usize = WG_TM as usize;
const _: () = assert!(WG_TM == WG_TN, "the split plan assumes square tiles");
/// Rows staged per shared-memory chunk of `wgrad_rk_partial_f32`.
const CHUNK: usize = WG_KT as usize;
/// Threads per block of `wgrad_rk_partial_f32`: fixed by the kernel.
const RK_THREADS: u32 = WG_THREADS;
/// At least this many rows per split of the GEMM (four chunks), so a split
/// is not mostly prologue and epilogue.
const MIN_RK_ROWS: usize = 4 * CHUNK;
/// At least this many rows per split of the class sums.
const MIN_CLS_ROWS: usize = 32;
/// Narrowest column tile of `wgrad_cls_partial_f32` (one warp).
const MIN_CLS_COLUMNS: u32 = 32;

/// Block, tile and split choices of the fast weight-gradient path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WgradLauncher {
    /// Blocks each partial kernel aims for (splits = this / tiles, within
    /// [1, [`MAX_SPLITS`](Self::MAX_SPLITS)]): about two per SM of an H200
    /// (132 SMs), so the GEMM's 16 tiles at the notebook's H = 128 become
    /// 16 x 16 blocks.
    pub target_blocks: u32,
    /// Widest column tile (threads per block) of `wgrad_cls_partial_f32`, a
    /// multiple of 32; halved down to 32 while its `V x columns` shared
    /// accumulator exceeds the device's limit.
    pub cls_columns: u32,
    /// Threads per block of `wgrad_reduce_f32`.
    pub reduce_block: u32,
    /// Upper bound on the reduce grid (grid-stride covers the rest).
    pub max_blocks: u32,
}

impl Default for WgradLauncher {
    fn default() -> Self {
        WgradLauncher {
            target_blocks: 256,
            cls_columns: 128,
            reduce_block: 256,
            max_blocks: 65_535,
        }
    }
}

/// What one launch of the fast path does at some dims: split counts, rows
/// per split and the class kernel's column tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WgradPlan {
    /// Splits of the GEMM's S = (T-1)*B rows (0 when S = 0: nothing to add).
    pub rk_splits: usize,
    /// Rows per GEMM split, a multiple of 16.
    pub rk_rows: usize,
    /// Splits of the T*B rows of the class sums (0 when T*B = 0).
    pub cls_splits: usize,
    /// Rows per class split.
    pub cls_rows: usize,
    /// Columns (= threads) per block of `wgrad_cls_partial_f32`.
    pub cls_columns: u32,
}

impl WgradPlan {
    /// Dynamic shared memory of `wgrad_cls_partial_f32`: V x columns f32s.
    pub fn cls_shared_bytes(&self, dims: LstmDims) -> usize {
        dims.vocab * self.cls_columns as usize * F32
    }
}

/// `rows` split into at most `splits` pieces of a multiple of `align` rows:
/// (pieces actually used, rows per piece). `(0, 0)` for no rows.
fn split_rows(rows: usize, splits: usize, align: usize) -> (usize, usize) {
    if rows == 0 {
        return (0, 0);
    }
    let per = rows.div_ceil(splits.max(1)).next_multiple_of(align);
    (rows.div_ceil(per), per)
}

impl WgradLauncher {
    /// Most splits of either partial kernel: bounds the scratch buffer
    /// (see [`scratch_len`](Self::scratch_len)) whatever `target_blocks` is.
    pub const MAX_SPLITS: usize = 64;

    const RK: &'static str = WgradRkPartialF32::KERNELS[0];
    const CLS: &'static str = WgradClsPartialF32::KERNELS[0];
    const REDUCE: &'static str = WgradReduceF32::KERNELS[0];

    /// GEMM rows S = (T-1)*B and class rows T*B.
    fn rows(dims: LstmDims) -> (usize, usize) {
        let tb = dims.seq_len * dims.batch;
        (tb.saturating_sub(dims.batch), tb)
    }

    /// Upper bounds on the split counts at `dims`, for any launcher setting.
    fn max_splits(dims: LstmDims) -> (usize, usize) {
        let (s_rk, s_cls) = Self::rows(dims);
        (
            s_rk.div_ceil(MIN_RK_ROWS).min(Self::MAX_SPLITS),
            s_cls.div_ceil(MIN_CLS_ROWS).min(Self::MAX_SPLITS),
        )
    }

    /// f32s of scratch the fast path needs at `dims`:
    /// `(1 + rk_splits) x H x 4H + cls_splits x (V + 1) x 4H` at the most
    /// splits any setting uses (the 1: the initial state's term of the
    /// sequence form, its own split). Never decreases when B or T grows, so
    /// a buffer sized for the largest batch serves every smaller one.
    pub fn scratch_len(dims: LstmDims) -> usize {
        let g = 4 * dims.hidden;
        let (rk, cls) = Self::max_splits(dims);
        (1 + rk) * dims.hidden * g + cls * (dims.vocab + 1) * g
    }

    /// The splits and tiles at `dims` on a device allowing `max_shared`
    /// bytes of dynamic shared memory per block, or `None` when the class
    /// kernel's `V x 32` accumulator does not fit even at the narrowest
    /// column tile (V above ~1,800 at 227 KiB): the caller then runs the
    /// reference kernel, which has no such limit.
    pub fn plan(&self, dims: LstmDims, max_shared: u32) -> Option<WgradPlan> {
        let g = 4 * dims.hidden;
        let fits = |cols: u32| dims.vocab * cols as usize * F32 <= max_shared as usize;
        let mut cols = self.cls_columns.max(MIN_CLS_COLUMNS);
        while cols > MIN_CLS_COLUMNS && !fits(cols) {
            cols = (cols / 2).max(MIN_CLS_COLUMNS);
        }
        if !fits(cols) {
            return None;
        }
        let (s_rk, s_cls) = Self::rows(dims);
        let (max_rk, max_cls) = Self::max_splits(dims);
        let target = self.target_blocks.max(1) as usize;
        let rk_tiles = dims.hidden.div_ceil(TILE) * g.div_ceil(TILE);
        let cls_tiles = g.div_ceil(cols as usize);
        let want = |tiles: usize, cap: usize| (target / tiles.max(1)).clamp(1, cap.max(1));
        let (rk_splits, rk_rows) = split_rows(s_rk, want(rk_tiles, max_rk), CHUNK);
        let (cls_splits, cls_rows) = split_rows(s_cls, want(cls_tiles, max_cls), 1);
        Some(WgradPlan {
            rk_splits,
            rk_rows,
            cls_splits,
            cls_rows,
            cls_columns: cols,
        })
    }

    /// The three weight gradients from the t-major `h` [T, B, H], `cls`
    /// [T, B] and `dz` [T, B, 4H] of `bufs` (and its `h0` [B, H], the
    /// sequence form's h_{-1}, when set: `h0^T dz_0` is one more GEMM split
    /// of B rows, summed first), overwriting its `d_kernel`
    /// [V, 4H], `d_recurrent_kernel` [H, 4H] and `d_bias` \[4H\]. Its
    /// `wgrad_scratch` must hold [`scratch_len`](Self::scratch_len)`(dims)`
    /// f32s (its contents are overwritten). Returns `Ok(false)`, having
    /// launched nothing, when [`plan`](Self::plan) says the shape does not
    /// fit this path.
    pub fn run<D: GpuDevice>(
        &self,
        dev: &mut D,
        dims: LstmDims,
        bufs: &LstmBuffers,
    ) -> Result<bool> {
        check_whole_warps(Self::REDUCE, "block", self.reduce_block, 1024)?;
        check_whole_warps(Self::CLS, "column tile", self.cls_columns, 1024)?;
        let Some(plan) = self.plan(dims, dev.max_shared_bytes()) else {
            return Ok(false);
        };
        let (g, hid, v) = (4 * dims.hidden, dims.hidden, dims.vocab);
        let n = g * hid + g * v + g;
        if n == 0 {
            return Ok(true);
        }
        let to_u32 = |x: usize, name: &str| kernel_u32(Self::RK, name, x);
        let (s_rk, s_cls) = Self::rows(dims);
        // The kernels index a row with u32 products up to S x 4H.
        to_u32(s_cls * g, "T*B*4H")?;
        let (u_h, u_v) = (to_u32(hid, "H")?, to_u32(v, "V")?);
        // The initial state's split first, when there is one.
        let h0_splits = usize::from(bufs.h0 != DevicePtr::NULL && dims.batch > 0);
        let rk_splits = h0_splits + plan.rk_splits;
        let rk_part = bufs.wgrad_scratch;
        let cls_part = rk_part.offset(rk_splits * hid * g * F32);
        let tiles = to_u32(hid.div_ceil(TILE) * g.div_ceil(TILE), "tiles")?;
        let rk_cfg = |splits: usize| LaunchConfig {
            grid: [tiles, splits as u32, 1],
            block: [RK_THREADS, 1, 1],
            shared_bytes: 0,
        };
        if h0_splits > 0 {
            // h0 [B, H] and dz step 0 [B, 4H] as an S = B GEMM in one split (grid y = 1, so
            // rows_per_split only needs to cover B); overwrites partial[0] of [splits, H, 4H].
            let b = to_u32(dims.batch, "B")?;
            let args = WgradRkPartialF32 {
                h: bufs.h0,
                dz_next: bufs.dz,
                S: b,
                H: u_h,
                rows_per_split: b,
                partial: rk_part,
            };
            args.launch(dev, Self::RK, rk_cfg(1))?;
        }
        if plan.rk_splits > 0 {
            let cfg = rk_cfg(plan.rk_splits);
            // `h` is the whole t-major [T, B, H] buffer, dz_next = dz + B*4H (step 1 on), S =
            // (T-1)*B; grid x = ceil(H/64) * ceil(4H/64) tiles, y = splits, exactly 256 threads;
            // overwrites partial[h0_splits..][0..splits] of [splits, H, 4H] at the start of scratch.
            let args = WgradRkPartialF32 {
                h: bufs.h,
                dz_next: bufs.dz.offset(dims.batch * g * F32),
                S: to_u32(s_rk, "S")?,
                H: u_h,
                rows_per_split: to_u32(plan.rk_rows, "rows per split")?,
                partial: rk_part.offset(h0_splits * hid * g * F32),
            };
            args.launch(dev, Self::RK, cfg)?;
        }
        if plan.cls_splits > 0 {
            let cols = plan.cls_columns;
            let cfg = LaunchConfig {
                grid: [
                    to_u32(g.div_ceil(cols as usize), "column tiles")?,
                    plan.cls_splits as u32,
                    1,
                ],
                block: [cols, 1, 1],
                shared_bytes: plan.cls_shared_bytes(dims) as u32,
            };
            // `cls` [T*B] and `dz` [T*B, 4H] whole, S = T*B; grid x = ceil(4H / columns), y =
            // splits, blockDim = columns, dynamic shared V x columns f32s (checked against the
            // device by `plan`); overwrites partial[0..splits] of [splits, V+1, 4H] right after the
            // GEMM's.
            let args = WgradClsPartialF32 {
                cls: bufs.cls,
                dz: bufs.dz,
                S: to_u32(s_cls, "T*B")?,
                H: u_h,
                V: u_v,
                rows_per_split: to_u32(plan.cls_rows, "rows per split")?,
                partial: cls_part,
            };
            args.launch(dev, Self::CLS, cfg)?;
        }
        // The partials as the two launches above wrote them (same stream, so ordered; zero splits =
        // nothing read, zeros written). Grid-stride over 4H*H + 4H*V + 4H.
        let args = WgradReduceF32 {
            rk_partial: rk_part,
            rk_splits: rk_splits as u32,
            cls_partial: cls_part,
            cls_splits: plan.cls_splits as u32,
            H: u_h,
            V: u_v,
            d_kernel: bufs.d_kernel,
            d_recurrent_kernel: bufs.d_recurrent_kernel,
            d_bias: bufs.d_bias,
        };
        args.launch(
            dev,
            Self::REDUCE,
            LaunchConfig::linear(
                blocks_for(n, self.reduce_block, self.max_blocks),
                self.reduce_block,
                0,
            ),
        )?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(v: usize, h: usize, b: usize, t: usize) -> LstmDims {
        LstmDims {
            batch: b,
            seq_len: t,
            hidden: h,
            vocab: v,
            words_per_row: v.div_ceil(64),
        }
    }

    #[test]
    fn notebook_shape_fills_the_gpu() {
        let d = dims(57, 128, 128, 60);
        let p = WgradLauncher::default().plan(d, 227 * 1024).unwrap();
        // 2 x 8 tiles x 16 splits = 256 GEMM blocks of 480 rows (the last 352).
        assert_eq!((p.rk_splits, p.rk_rows), (16, 480));
        assert_eq!(p.cls_columns, 128);
        assert_eq!(p.cls_splits, 64);
        let used = (1 + p.rk_splits) * 128 * 512 + p.cls_splits * 58 * 512;
        assert!(used <= WgradLauncher::scratch_len(d));
    }

    #[test]
    fn splits_never_exceed_the_scratch_and_cover_every_row() {
        let l = WgradLauncher::default();
        for (v, h, b, t) in [
            (5, 3, 1, 1),
            (70, 7, 2, 3),
            (57, 128, 128, 60),
            (3, 1, 1000, 1),
        ] {
            let d = dims(v, h, b, t);
            let p = l.plan(d, 48 * 1024).unwrap();
            let (s_rk, s_cls) = WgradLauncher::rows(d);
            assert!(p.rk_splits * p.rk_rows >= s_rk && p.cls_splits * p.cls_rows >= s_cls);
            let used = (1 + p.rk_splits) * h * 4 * h + p.cls_splits * (v + 1) * 4 * h;
            assert!(used <= WgradLauncher::scratch_len(d), "{d:?}");
        }
    }

    #[test]
    fn scratch_len_grows_with_batch_and_steps() {
        let mut last = 0;
        for (b, t) in [(1, 1), (2, 1), (2, 5), (17, 5), (128, 60), (128, 200)] {
            let n = WgradLauncher::scratch_len(dims(57, 33, b, t));
            assert!(n >= last);
            last = n;
        }
    }

    #[test]
    fn huge_vocab_narrows_the_column_tile_then_falls_back() {
        let l = WgradLauncher::default();
        let p = l.plan(dims(1000, 4, 1, 2), 227 * 1024).unwrap();
        assert_eq!(p.cls_columns, 32); // 1000 x 64 x 4 bytes = 250 KiB does not fit
        assert_eq!(l.plan(dims(2000, 4, 1, 2), 227 * 1024), None);
    }
}
