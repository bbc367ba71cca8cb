//! Launcher of `kernels/head.cu`: the fused dense + softmax + cross-entropy
//! head, forward and backward (`head_fwd_bwd_f32`, one block per batch row),
//! then the dense weight gradients (`head_wgrad_bwd_f32`, a fixed-order
//! reduction over the batch).

use super::contract::head::{HeadFwdBwdF32, HeadWgradBwdF32};
use super::device::{
    DeviceError, DevicePtr, GpuDevice, LaunchConfig, SCRATCH_FLOATS, blocks_for, check_whole_warps,
    kernel_u32,
};
use crate::error::Result;

/// Device buffers of one head launch. Shapes (row-major, Keras layout):
/// `h` [B, H], `dense_kernel` [H, V], `dense_bias` \[V\], `targets` \[B\] u32,
/// `probs` [B, V] or [`DevicePtr::NULL`], `dlogits` [B, V], `dh` [B, H],
/// `d_dense_kernel` [H, V], `d_dense_bias` \[V\], `loss_sum` one f32.
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
    /// Accumulates `scale * loss_b` over the rows (not zeroed here).
    pub loss_sum: DevicePtr,
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
    const WGRAD: &'static str = "head_wgrad_bwd_f32";

    /// Dynamic shared memory of `head_fwd_bwd_f32`: the row's h and logits
    /// and the reductions' scratch. The kernel declares no static shared
    /// memory, so this is its whole footprint.
    pub fn shared_bytes(dims: HeadDims) -> usize {
        (dims.hidden + dims.vocab + SCRATCH_FLOATS) * std::mem::size_of::<f32>()
    }

    /// Both kernels: overwrites `probs` (unless null), `dlogits`, `dh`,
    /// `d_dense_kernel`, `d_dense_bias`; adds `scale * loss_b` of every row
    /// to `loss_sum`. `scale` is `1 / B` for the batch mean.
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
        args.launch(
            dev,
            Self::FWD_BWD,
            LaunchConfig::linear(b, self.block, shared as u32),
        )?;
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
        )
    }
}
