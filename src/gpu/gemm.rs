//! Launcher of `kernels/gemm.cu`: the dense f32 GEMMs of a layer above the
//! first (its input term `X @ kernel + bias`, and in the backward
//! `dX = dZ @ kernel^T` and `d kernel = X^T @ dZ`), deterministic: each
//! output summed in one fixed order, K split over blocks only into a
//! scratch buffer whose splits `gemm_reduce_f32` adds in order. Read the
//! kernel file's header for the tiling.

use super::contract::gemm::{GM_KT, GM_THREADS, GM_TM, GM_TN, GemmNnF32, GemmReduceF32};
use super::device::{DeviceError, DevicePtr, GpuDevice, LaunchConfig, blocks_for, kernel_u32};
use crate::error::Result;

/// Which operands are transposed: `C = op(A) @ op(B)`, all row-major.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmForm {
    /// A [M, K], B [K, N]: the input term `X @ kernel (+ bias)`.
    NN,
    /// A [M, K], B [N, K]: the input gradient `dZ @ kernel^T`.
    NT,
    /// A [K, M], B [K, N]: the weight gradient `X^T @ dZ`.
    TN,
}

impl GemmForm {
    /// The kernel's symbol (`GemmNnF32::KERNELS` lists the three in source order).
    pub fn kernel(self) -> &'static str {
        let k = GemmNnF32::KERNELS;
        match self {
            GemmForm::NN => k[0],
            GemmForm::NT => k[1],
            GemmForm::TN => k[2],
        }
    }
}

/// Sizes of one product: C is [m, n], the sum runs over k.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmDims {
    /// Rows of C.
    pub m: usize,
    /// Columns of C.
    pub n: usize,
    /// The summed dimension.
    pub k: usize,
}

/// At least this many k per split (four staged chunks), so a split is not
/// mostly prologue and epilogue.
const MIN_SPLIT_K: usize = 4 * GM_KT as usize;

/// Split and block choices of the GEMMs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmLauncher {
    /// Blocks a product aims for: a product of few 64 x 64 tiles and a
    /// long k (`X^T @ dZ` sums over all T*B rows) splits k until it has
    /// about this many (within [`MAX_SPLITS`](Self::MAX_SPLITS)), when the
    /// caller gives scratch.
    pub target_blocks: u32,
    /// Threads per block of `gemm_reduce_f32`.
    pub reduce_block: u32,
    /// Upper bound on the reduce grid (grid-stride covers the rest).
    pub max_blocks: u32,
}

impl Default for GemmLauncher {
    fn default() -> Self {
        GemmLauncher {
            target_blocks: 256,
            reduce_block: 256,
            max_blocks: 65_535,
        }
    }
}

impl GemmLauncher {
    /// Most splits of k: bounds [`scratch_len`](Self::scratch_len).
    pub const MAX_SPLITS: usize = 16;

    fn tiles(d: GemmDims) -> usize {
        d.m.div_ceil(GM_TM as usize) * d.n.div_ceil(GM_TN as usize)
    }

    /// Most splits any setting uses at `d`.
    fn max_splits(d: GemmDims) -> usize {
        d.k.div_ceil(MIN_SPLIT_K).clamp(1, Self::MAX_SPLITS)
    }

    /// f32s of scratch a split product at `d` needs (0: it never splits).
    pub fn scratch_len(d: GemmDims) -> usize {
        match Self::max_splits(d) {
            1 => 0,
            s => s * d.m * d.n,
        }
    }

    /// (splits, k per split) at `d`, splitting only with scratch.
    pub fn plan(&self, d: GemmDims, scratch: bool) -> (usize, usize) {
        let want = (self.target_blocks.max(1) as usize / Self::tiles(d).max(1))
            .clamp(1, Self::max_splits(d));
        let splits = if scratch { want } else { 1 };
        let per = d.k.div_ceil(splits).next_multiple_of(GM_KT as usize).max(1);
        (d.k.div_ceil(per).max(1), per)
    }

    /// `c = op(a) @ op(b) (+ bias)` ([`GemmForm`]; `bias` \[n\] or NULL),
    /// overwriting c [m, n]. `scratch`: NULL (one block per tile sums the
    /// whole k), or [`scratch_len`](Self::scratch_len)`(d)` f32s, which
    /// lets k split over blocks (overwritten).
    #[allow(clippy::too_many_arguments)]
    pub fn run<D: GpuDevice>(
        &self,
        dev: &mut D,
        form: GemmForm,
        d: GemmDims,
        (a, b, bias): (DevicePtr, DevicePtr, DevicePtr),
        c: DevicePtr,
        scratch: DevicePtr,
    ) -> Result<()> {
        let name = form.kernel();
        if d.m == 0 || d.n == 0 {
            return Ok(());
        }
        if c == DevicePtr::NULL || (d.k > 0 && (a == DevicePtr::NULL || b == DevicePtr::NULL)) {
            return Err(DeviceError::BadArguments {
                kernel: name,
                what: "A, B and C must be device buffers (only the bias may be NULL)".into(),
            }
            .into());
        }
        let u = |x: usize, what: &str| kernel_u32(name, what, x);
        // The kernel indexes with u32 products of m*n, m*k and k*n.
        for (x, what) in [(d.m * d.n, "M*N"), (d.m * d.k, "M*K"), (d.k * d.n, "K*N")] {
            u(x, what)?;
        }
        let (splits, per) = self.plan(d, scratch != DevicePtr::NULL);
        let (m, n) = (u(d.m, "M")?, u(d.n, "N")?);
        let cfg = LaunchConfig {
            grid: [
                u(d.n.div_ceil(GM_TN as usize), "column tiles")?,
                u(d.m.div_ceil(GM_TM as usize), "row tiles")?,
                u(splits, "splits")?,
            ],
            block: [GM_THREADS, 1, 1],
            shared_bytes: 0,
        };
        // A, B as `form` lays them out ([M, K] / [K, M], [K, N] / [N, K]); bias [N] or NULL; grid
        // ceil(N/64) x ceil(M/64) x splits, exactly 256 threads; one split writes C [M, N] (bias
        // added), several write partial[split, M, N] into the scratch, which holds
        // scratch_len(d) >= splits * M * N f32s (`plan` keeps splits <= max_splits).
        let args = GemmNnF32 {
            A: a,
            B: b,
            bias,
            M: m,
            N: n,
            K: u(d.k, "K")?,
            k_per_split: u(per, "k per split")?,
            out: if splits == 1 { c } else { scratch },
        };
        args.launch(dev, name, cfg)?;
        if splits == 1 {
            return Ok(());
        }
        let reduce = GemmReduceF32::KERNELS[0];
        let mn = d.m * d.n;
        // The partials the launch above wrote (same stream, so ordered), summed in split order;
        // grid-stride over M*N.
        let args = GemmReduceF32 {
            partial: scratch,
            splits: splits as u32,
            bias,
            M: m,
            N: n,
            C: c,
        };
        let blocks = blocks_for(mn, self.reduce_block, self.max_blocks);
        args.launch(
            dev,
            reduce,
            LaunchConfig::linear(blocks, self.reduce_block, 0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_k_of_few_tiles_splits_within_the_scratch() {
        let l = GemmLauncher::default();
        // d kernel at H = 256, T*B = 60*128: 4 x 16 tiles, k = 7680.
        let d = GemmDims {
            m: 256,
            n: 1024,
            k: 7680,
        };
        let (splits, per) = l.plan(d, true);
        assert_eq!(splits, 4);
        assert!(splits * per >= d.k && per % GM_KT as usize == 0);
        assert!(splits * d.m * d.n <= GemmLauncher::scratch_len(d));
        assert_eq!(l.plan(d, false), (1, 7680));
    }

    #[test]
    fn short_k_never_splits() {
        let d = GemmDims { m: 5, n: 7, k: 30 };
        assert_eq!(GemmLauncher::default().plan(d, true).0, 1);
        assert_eq!(GemmLauncher::scratch_len(d), 0);
    }
}
