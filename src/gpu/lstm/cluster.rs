//! Launcher of `kernels/lstm_cluster_sm90.cu`: the whole forward and the
//! whole backward recurrence in one launch each above H = 128,
//! `recurrent_kernel` split across a thread-block cluster of
//! [`CLUSTER_BLOCKS`] blocks per group of batch rows (read the kernel
//! file's header for the layout). Hopper only, and run only when asked
//! ([`super::LstmPath::Cluster`]): it has run on the simulator, not yet on
//! a GPU.
//!
//! [`ClusterPlan::new`] decides whether a shape fits and how many batch rows
//! a cluster carries.

use super::{LstmBuffers, LstmDims};
use crate::error::Result;
use crate::gpu::contract::lstm_cluster_sm90::{
    self as contract, LstmClusterBwdF32, LstmClusterFwdF32,
};
use crate::gpu::device::{DevicePtr, GpuDevice, LaunchConfig, kernel_u32};

/// Blocks per cluster.
pub const CLUSTER_BLOCKS: usize = contract::LC_BLOCKS as usize;
/// Most batch rows one cluster carries.
pub const MAX_ROWS: usize = contract::LC_MAX_ROWS as usize;
const MAX_THREADS: usize = contract::LC_THREADS as usize;
const CELLS: usize = contract::LC_CELLS as usize;
const F32: usize = std::mem::size_of::<f32>();

/// How a batch maps onto the cluster forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterPlan {
    /// Batch rows per cluster (1..=[`MAX_ROWS`]).
    pub rows: usize,
    /// Clusters: `ceil(B / rows)`.
    pub clusters: usize,
    /// Threads per block: whole row groups of 4H / [`CLUSTER_BLOCKS`].
    pub threads: usize,
    /// Dynamic shared memory per block of the forward, bytes.
    pub fwd_shared: usize,
    /// Dynamic shared memory per block of the backward, bytes.
    pub bwd_shared: usize,
    /// H = [`SPECIALIZED_HIDDEN`]: the kernels compiled for that H.
    pub specialized: bool,
}

/// The hidden size with kernels compiled for it (the stack's): a constant
/// H folds the shared-memory offsets into the loads.
pub const SPECIALIZED_HIDDEN: usize = 256;

impl ClusterPlan {
    /// Gate columns a block owns (4H / [`CLUSTER_BLOCKS`]) and its threads:
    /// whole row groups of one thread a column.
    fn columns_and_threads(hidden: usize) -> (usize, usize) {
        let w = 4 * hidden / CLUSTER_BLOCKS;
        (w, (MAX_THREADS / w.max(1)).max(1) * w)
    }

    /// Row groups a block has: its threads over its gate columns.
    fn row_groups(hidden: usize) -> usize {
        let (w, threads) = Self::columns_and_threads(hidden);
        threads / w
    }

    /// Rows each row group sums, 1, 2, 4 or 8 (the kernel's
    /// `rows_per_group`, which picks its `dot_rows` build).
    pub fn rows_per_group(hidden: usize, rows: usize) -> usize {
        rows.div_ceil(Self::row_groups(hidden)).next_power_of_two()
    }

    /// Rows of a block's row buffers: `rows` padded to whole row groups of
    /// [`Self::rows_per_group`] rows.
    pub fn padded_rows(hidden: usize, rows: usize) -> usize {
        Self::rows_per_group(hidden, rows) * Self::row_groups(hidden)
    }

    /// A forward block's shared memory: its columns of the weights, two h
    /// buffers and the gates of each row, every step's input classes.
    pub fn fwd_shared_bytes(hidden: usize, rows: usize, seq_len: usize) -> usize {
        let (w, rp) = (4 * hidden / CLUSTER_BLOCKS, Self::padded_rows(hidden, rows));
        F32 * (hidden * w + 2 * rp * hidden + rows * w + seq_len * rows)
    }

    /// A backward block's shared memory: its rows of the weights, two dz
    /// buffers of every row and the partial sums of dh.
    pub fn bwd_shared_bytes(hidden: usize, rows: usize) -> usize {
        let (w, rp) = (4 * hidden / CLUSTER_BLOCKS, Self::padded_rows(hidden, rows));
        F32 * (4 * hidden * hidden / CLUSTER_BLOCKS + 2 * rp * 4 * hidden + rp * w)
    }

    /// Rows per cluster that spread `batch` over `multiprocessors` SMs, one
    /// block per SM.
    pub fn rows_for(batch: usize, multiprocessors: u32) -> usize {
        let clusters = (multiprocessors as usize / CLUSTER_BLOCKS).max(1);
        batch.div_ceil(clusters).clamp(1, MAX_ROWS)
    }

    /// The plan for `dims` on a device with `max_shared` bytes of shared
    /// memory per block, carrying at most `rows_wanted` rows per cluster;
    /// or why the cluster forward cannot run this shape.
    pub fn new(
        dims: LstmDims,
        max_shared: u32,
        rows_wanted: usize,
    ) -> std::result::Result<Self, String> {
        let h = dims.hidden;
        let unit = 8 * CLUSTER_BLOCKS;
        if h == 0 || !h.is_multiple_of(unit) {
            return Err(format!(
                "H = {h}: the cluster forward needs H a multiple of {unit} ({CLUSTER_BLOCKS} \
                 blocks of whole warps of gate columns)"
            ));
        }
        if dims.batch == 0 || dims.seq_len == 0 {
            return Err("empty batch".into());
        }
        if 4 * h * h > u32::MAX as usize || dims.seq_len > u32::MAX as usize / 16 {
            return Err(format!("H = {h}, T = {}: too large", dims.seq_len));
        }
        let w = 4 * h / CLUSTER_BLOCKS;
        if w > MAX_THREADS {
            return Err(format!(
                "H = {h}: a block's {w} gate columns are more than its {MAX_THREADS} threads"
            ));
        }
        let threads = Self::columns_and_threads(h).1;
        let limit = max_shared as usize;
        let fits = |r: usize| {
            Self::fwd_shared_bytes(h, r, dims.seq_len) <= limit
                && Self::bwd_shared_bytes(h, r) <= limit
                && r * h / CLUSTER_BLOCKS <= CELLS * threads
        };
        let rows = (1..=rows_wanted.clamp(1, MAX_ROWS).min(dims.batch))
            .rev()
            .find(|&r| fits(r))
            .ok_or_else(|| {
                format!(
                    "H = {h}, T = {}: even with one row a cluster a block needs {} bytes of \
                     shared memory forward and {} backward (its share of the weights, the row \
                     buffers, T input classes), more than the device's {limit} per block",
                    dims.seq_len,
                    Self::fwd_shared_bytes(h, 1, dims.seq_len),
                    Self::bwd_shared_bytes(h, 1)
                )
            })?;
        Ok(ClusterPlan {
            rows,
            clusters: dims.batch.div_ceil(rows),
            threads,
            fwd_shared: Self::fwd_shared_bytes(h, rows, dims.seq_len),
            bwd_shared: Self::bwd_shared_bytes(h, rows),
            specialized: h == SPECIALIZED_HIDDEN,
        })
    }

    /// The (forward, backward) kernels this plan launches.
    pub fn kernels(&self) -> (&'static str, &'static str) {
        // KERNELS lists the generic-H build first, then H = 256's.
        let i = usize::from(self.specialized);
        (LstmClusterFwdF32::KERNELS[i], LstmClusterBwdF32::KERNELS[i])
    }

    fn config(&self, kernel: &'static str, shared: usize) -> Result<LaunchConfig> {
        let blocks = kernel_u32(kernel, "blocks", self.clusters * CLUSTER_BLOCKS)?;
        Ok(LaunchConfig::linear(
            blocks,
            self.threads as u32,
            shared as u32,
        ))
    }

    /// The whole forward, as [`super::persistent::PersistentPlan::forward`]:
    /// reads corpus rows `starts[b] + t` (a dense layer: `zx`) and `h0`,
    /// `c0` when given; overwrites `gates`, `c`, `h`, `cls` (not for a
    /// dense layer) for all T steps, to the per-step kernels' bits.
    pub fn forward<D: GpuDevice>(
        &self,
        dev: &mut D,
        dims: LstmDims,
        bufs: &LstmBuffers,
    ) -> Result<()> {
        let name = self.kernels().0;
        let c = |x: usize, what: &str| kernel_u32(name, what, x);
        let cfg = self.config(name, self.fwd_shared)?;
        // Clusters along x of LC_BLOCKS (compile-time); a dense layer's
        // corpus, starts, kernel and bias are unused, as are its V and cls.
        let args = LstmClusterFwdF32 {
            corpus_words: bufs.corpus_words,
            words_per_row: c(dims.words_per_row, "words_per_row")?,
            starts: bufs.starts,
            kernel: bufs.kernel,
            bias: bufs.bias,
            zx: bufs.zx,
            recurrent_kernel: bufs.recurrent_kernel,
            B: c(dims.batch, "B")?,
            T: c(dims.seq_len, "T")?,
            H: c(dims.hidden, "H")?,
            V: c(dims.vocab, "V")?,
            rows: c(self.rows, "rows")?,
            h0: bufs.h0,
            c0: bufs.c0,
            gates: bufs.gates,
            c: bufs.c,
            h: bufs.h,
            cls: bufs.cls,
        };
        args.launch(dev, name, cfg)
    }

    /// The whole backward recurrence, as
    /// [`super::persistent::PersistentPlan::backward`]: window form (`dy`
    /// NULL) from `dh` = dh_{T-1}, overwrites `dz` (`dh`, `dc` left as they
    /// were); sequence form from `dy` at every step, dh_T / dc_T in `dh` /
    /// `dc` and c_{-1} in `c0`, overwrites `dz`, and `dh` / `dc` with
    /// dh_{-1} / dc_{-1}. The per-step kernels' bits.
    pub fn backward<D: GpuDevice>(
        &self,
        dev: &mut D,
        dims: LstmDims,
        bufs: &LstmBuffers,
    ) -> Result<()> {
        let name = self.kernels().1;
        let c = |x: usize, what: &str| kernel_u32(name, what, x);
        let cfg = self.config(name, self.bwd_shared)?;
        let seq = bufs.dy != DevicePtr::NULL;
        // `gates`, `c`, `dy`, `dz` the whole t-major buffers; c0, dh, dc
        // [B, H], each element read and written by one thread; the window
        // form (seq 0) reads dh only.
        let args = LstmClusterBwdF32 {
            gates: bufs.gates,
            c: bufs.c,
            c0: if seq { bufs.c0 } else { DevicePtr::NULL },
            dy: bufs.dy,
            recurrent_kernel: bufs.recurrent_kernel,
            B: c(dims.batch, "B")?,
            T: c(dims.seq_len, "T")?,
            H: c(dims.hidden, "H")?,
            rows: c(self.rows, "rows")?,
            seq: u32::from(seq),
            dh: bufs.dh,
            dc: if seq { bufs.dc } else { DevicePtr::NULL },
            dz: bufs.dz,
        };
        args.launch(dev, name, cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(batch: usize, hidden: usize) -> LstmDims {
        LstmDims {
            batch,
            seq_len: 60,
            hidden,
            vocab: 57,
            words_per_row: 1,
        }
    }

    #[test]
    fn plans_fit_the_shapes_they_promise() {
        let p = ClusterPlan::new(dims(128, 256), 227 * 1024, 8).unwrap();
        assert_eq!((p.rows, p.clusters, p.threads), (8, 16, 256));
        assert!(p.fwd_shared.max(p.bwd_shared) <= 227 * 1024, "{p:?}");
        assert_eq!(ClusterPlan::rows_for(128, 132), 8);
        assert_eq!(ClusterPlan::rows_for(3, 132), 1);
        // Row buffers padded to whole groups of 1, 2, 4, 8 rows.
        assert_eq!(ClusterPlan::padded_rows(256, 8), 8);
        assert_eq!(ClusterPlan::padded_rows(256, 5), 8);
        assert_eq!(ClusterPlan::padded_rows(256, 1), 2);
        assert_eq!(ClusterPlan::padded_rows(64, 3), 8);
        assert_eq!(ClusterPlan::padded_rows(320, 3), 4);
        // H = 256: two row groups of 128 columns.
        let per_group = [1, 2, 3, 5, 8].map(|r| ClusterPlan::rows_per_group(256, r));
        assert_eq!(per_group, [1, 1, 2, 4, 4]);
        let p = ClusterPlan::new(dims(5, 192), 227 * 1024, 2).unwrap();
        assert_eq!((p.rows, p.clusters, p.threads), (2, 3, 192));
        let e = ClusterPlan::new(dims(8, 200), 227 * 1024, 8).unwrap_err();
        assert!(e.contains("multiple of 64"), "{e}");
        let e = ClusterPlan::new(dims(8, 512), 227 * 1024, 8).unwrap_err();
        assert!(e.contains("more than the device's"), "{e}");
        // A long sequence: the classes no longer fit beside the weights.
        let long = LstmDims {
            seq_len: 30_000,
            ..dims(8, 256)
        };
        let e = ClusterPlan::new(long, 227 * 1024, 8).unwrap_err();
        assert!(
            e.contains("T = 30000") && e.contains("T input classes"),
            "{e}"
        );
        let e = ClusterPlan::new(dims(8, 1024), 227 * 1024, 8).unwrap_err();
        assert!(e.contains("threads"), "{e}");
    }
}
