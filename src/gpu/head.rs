//! Launcher of `kernels/head.cu`: the fused dense + softmax + cross-entropy
//! head, forward and backward (`head_fwd_bwd_f32`, one block per batch row),
//! then the dense weight gradients (`head_wgrad_bwd_f32`, a fixed-order
//! reduction over the batch).
//!
//! The rows are any [B, H] block of hidden states: the window form's last
//! step, or every step of a stream batch (the t-major [L, B, H] buffer as
//! L*B rows; `dh` is then the recurrence's `dy`). With [`HeadBuffers::row_loss`]
//! set, the loss is summed in a fixed order (`head_rows_fwd_bwd_f32` +
//! `loss_rows_sum_f32`) instead of by one atomicAdd per row, so the same
//! rows give the same loss bits on every run, however many there are.

use super::contract::head::{
    HeadFwdBwdF32, HeadRowsFwdBwdF32, HeadWgradBwdF32, LOSS_SUM_THREADS, LossRowsSumF32,
};
use super::device::{
    DeviceError, DevicePtr, GpuDevice, LaunchConfig, SCRATCH_FLOATS, blocks_for, check_whole_warps,
    kernel_u32,
};
use crate::error::Result;

/// Device buffers of one head launch. Shapes (row-major, Keras layout):
/// `h` [B, H], `dense_kernel` [H, V], `dense_bias` \[V\], `targets` \[B\] u32,
/// `probs` [B, V] or [`DevicePtr::NULL`], `dlogits` [B, V], `dh` [B, H],
/// `d_dense_kernel` [H, V], `d_dense_bias` \[V\], `loss_sum` one f32,
/// `row_loss` \[B\] or [`DevicePtr::NULL`].
#[derive(Clone, Copy, Debug)]
pub struct HeadBuffers {
    /// [B, H] the LSTM's last hidden state, the head's input.
    pub h: DevicePtr,
    /// [H, V] dense weights.
    pub dense_kernel: DevicePtr,
    /// \[V\] dense bias.
    pub dense_bias: DevicePtr,
    /// \[B\] u32 class index of each row's next character.
    pub targets: DevicePtr,
    /// Softmax output; `DevicePtr::NULL` skips writing it.
    pub probs: DevicePtr,
    /// Scratch the second kernel reads: `(p - onehot(y)) * scale`.
    pub dlogits: DevicePtr,
    /// [B, H] gradient into `h`, the LSTM backward's input; overwritten.
    pub dh: DevicePtr,
    /// [H, V] gradient of `dense_kernel`; overwritten.
    pub d_dense_kernel: DevicePtr,
    /// \[V\] gradient of `dense_bias`; overwritten.
    pub d_dense_bias: DevicePtr,
    /// `row_loss` NULL: accumulates `scale * loss_b` over the rows (not
    /// zeroed here; one atomicAdd per row). Else OVERWRITTEN with the sum
    /// of `row_loss` in row order.
    pub loss_sum: DevicePtr,
    /// \[B\] `scale * loss_b` of every row, OVERWRITTEN; or NULL (the
    /// window form's atomic sum).
    pub row_loss: DevicePtr,
}

/// Sizes of one head launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadDims {
    /// Batch rows B.
    pub batch: usize,
    /// Hidden units H.
    pub hidden: usize,
    /// Vocabulary size V.
    pub vocab: usize,
}

/// Block sizes of the two head kernels.
#[derive(Clone, Copy, Debug)]
pub struct HeadLauncher {
    /// Threads per block of `head_fwd_bwd_f32` (multiple of 32, at most 1024).
    pub block: u32,
    /// Threads per block of `head_wgrad_bwd_f32`.
    pub wgrad_block: u32,
}

impl Default for HeadLauncher {
    fn default() -> Self {
        HeadLauncher {
            block: 256,
            wgrad_block: 256,
        }
    }
}

impl HeadLauncher {
    const FWD_BWD: &'static str = "head_fwd_bwd_f32";
    const ROWS_FWD_BWD: &'static str = "head_rows_fwd_bwd_f32";
    const WGRAD: &'static str = "head_wgrad_bwd_f32";
    const LOSS_SUM: &'static str = "loss_rows_sum_f32";

    /// Dynamic shared memory of `head_fwd_bwd_f32`: the row's h and logits
    /// and the reductions' scratch. The kernel declares no static shared
    /// memory, so this is its whole footprint.
    pub fn shared_bytes(dims: HeadDims) -> usize {
        (dims.hidden + dims.vocab + SCRATCH_FLOATS) * std::mem::size_of::<f32>()
    }

    /// Both kernels: overwrites `probs` (unless null), `dlogits`, `dh`,
    /// `d_dense_kernel`, `d_dense_bias`; adds `scale * loss_b` of every row
    /// to `loss_sum`, or with `row_loss` set writes them there and
    /// overwrites `loss_sum` with their fixed-order sum (a third launch).
    /// `scale` is `1 / B` for the batch mean.
    pub fn fwd_bwd<D: GpuDevice>(
        &self,
        dev: &mut D,
        dims: HeadDims,
        bufs: &HeadBuffers,
        scale: f32,
    ) -> Result<()> {
        let HeadDims {
            batch,
            hidden,
            vocab,
        } = dims;
        check_whole_warps(Self::FWD_BWD, "block", self.block, 1024)?;
        let to_u32 = |x: usize, name: &str| kernel_u32(Self::FWD_BWD, name, x);
        let (b, h, v) = (
            to_u32(batch, "B")?,
            to_u32(hidden, "H")?,
            to_u32(vocab, "V")?,
        );
        if b == 0 || v == 0 {
            return Ok(());
        }
        let shared = Self::shared_bytes(dims);
        let limit = dev.max_shared_bytes();
        if shared > limit as usize {
            return Err(DeviceError::SharedMemory {
                kernel: Self::FWD_BWD,
                requested: shared,
                limit,
            }
            .into());
        }
        // Buffers sized as in HeadBuffers; grid.x = B (one block per row),
        // dynamic shared memory (H + V + 32) f32s, checked above.
        let cfg = LaunchConfig::linear(b, self.block, shared as u32);
        let rows = bufs.row_loss != DevicePtr::NULL;
        if rows {
            // As head_fwd_bwd_f32, row b's scaled loss to row_loss[b] ([B]).
            let args = HeadRowsFwdBwdF32 {
                h: bufs.h,
                dense_kernel: bufs.dense_kernel,
                dense_bias: bufs.dense_bias,
                targets: bufs.targets,
                B: b,
                H: h,
                V: v,
                probs: bufs.probs,
                dlogits: bufs.dlogits,
                dh: bufs.dh,
                row_loss: bufs.row_loss,
                scale,
            };
            args.launch(dev, Self::ROWS_FWD_BWD, cfg)?;
        } else {
            let args = HeadFwdBwdF32 {
                h: bufs.h,
                dense_kernel: bufs.dense_kernel,
                dense_bias: bufs.dense_bias,
                targets: bufs.targets,
                B: b,
                H: h,
                V: v,
                probs: bufs.probs,
                dlogits: bufs.dlogits,
                dh: bufs.dh,
                loss_sum: bufs.loss_sum,
                scale,
            };
            args.launch(dev, Self::FWD_BWD, cfg)?;
        }
        let n = hidden * vocab + vocab;
        // Reads the dlogits the launch above wrote (same stream, so
        // ordered); grid-stride over H*V + V.
        let args = HeadWgradBwdF32 {
            h: bufs.h,
            dlogits: bufs.dlogits,
            B: b,
            H: h,
            V: v,
            d_dense_kernel: bufs.d_dense_kernel,
            d_dense_bias: bufs.d_dense_bias,
        };
        args.launch(
            dev,
            Self::WGRAD,
            LaunchConfig::linear(blocks_for(n, self.wgrad_block, 65_535), self.wgrad_block, 0),
        )?;
        if !rows {
            return Ok(());
        }
        // The [B] row losses written above (same stream, so ordered); exactly one block of
        // LOSS_SUM_THREADS threads (the kernel strides by it); overwrites loss_sum.
        let args = LossRowsSumF32 {
            row_loss: bufs.row_loss,
            n: b,
            loss: bufs.loss_sum,
        };
        args.launch(
            dev,
            Self::LOSS_SUM,
            LaunchConfig::linear(1, LOSS_SUM_THREADS, 0),
        )
    }
}
