//! Launcher of `kernels/rmsprop.cu`: RMSprop over every parameter in one
//! launch, and global gradient-norm clipping before it ([`GradClipLauncher`]),
//! over the flat [`ParamLayout`](crate::model::ParamLayout) buffers the parameters, their gradients and
//! the mean squares live in on the device.

use super::device::{DeviceError, DevicePtr, GpuDevice, KernelArg, LaunchConfig, blocks_for};
use crate::cpu::RmsProp;
use crate::error::Result;

/// `rmsprop_update_f32` over one flat [`ParamLayout`](crate::model::ParamLayout) buffer triple.
#[derive(Clone, Copy, Debug)]
pub struct RmsPropLauncher {
    /// Threads per block (a multiple of 32).
    pub block: u32,
    /// Upper bound on the grid; the kernel's grid-stride loop covers the rest.
    pub max_blocks: u32,
}

impl Default for RmsPropLauncher {
    fn default() -> Self {
        RmsPropLauncher {
            block: 256,
            max_blocks: 4096,
        }
    }
}

impl RmsPropLauncher {
    const KERNEL: &'static str = "rmsprop_update_f32";

    /// `ms = rho*ms + (1-rho)*g^2; params -= lr*g/(sqrt(ms)+eps)` over `n`
    /// elements of the three buffers (each at least `n` f32s), in place.
    pub fn update<D: GpuDevice>(
        &self,
        dev: &mut D,
        opt: &RmsProp,
        params: DevicePtr,
        ms: DevicePtr,
        grads: DevicePtr,
        n: usize,
    ) -> Result<()> {
        let n32 = u32::try_from(n).map_err(|_| DeviceError::BadArguments {
            kernel: Self::KERNEL,
            what: format!("{n} parameters do not fit the kernel's u32 count"),
        })?;
        if n == 0 {
            return Ok(());
        }
        let cfg = LaunchConfig::linear(blocks_for(n, self.block, self.max_blocks), self.block, 0);
        // Argument contract (kernels/rmsprop.cu):
        // rmsprop_update_f32(float* params, float* ms, const float* grads,
        //                    unsigned n, float lr, float rho, float eps).
        // Seven arguments in that order and type; the caller guarantees the
        // three buffers hold n f32s each and do not overlap. The hyper-
        // parameters are rounded to f32 here exactly as the CPU f32 path does.
        dev.launch(
            "rmsprop",
            Self::KERNEL,
            cfg,
            &[
                KernelArg::Ptr(params),
                KernelArg::Ptr(ms),
                KernelArg::Ptr(grads),
                KernelArg::U32(n32),
                KernelArg::F32(opt.lr as f32),
                KernelArg::F32(opt.rho as f32),
                KernelArg::F32(opt.eps as f32),
            ],
        )
    }
}

/// `grad_norm_clip_f32`: global gradient-norm clipping of one flat
/// [`ParamLayout`](crate::model::ParamLayout) gradient buffer, in place, in one single-block launch.
#[derive(Clone, Copy, Debug)]
pub struct GradClipLauncher {
    /// Threads of the one block: a power of two, at most
    /// [`GradClipLauncher::MAX_BLOCK`] (the kernel's shared-memory tree).
    pub block: u32,
}

impl Default for GradClipLauncher {
    fn default() -> Self {
        GradClipLauncher {
            block: Self::MAX_BLOCK,
        }
    }
}

impl GradClipLauncher {
    const KERNEL: &'static str = "grad_norm_clip_f32";
    /// `GRAD_CLIP_MAX_BLOCK` of `kernels/rmsprop.cu`.
    pub const MAX_BLOCK: u32 = 1024;

    /// Scales the `n` gradients at `grads` by `max_norm / norm` when their
    /// global L2 norm exceeds `max_norm` (see `cpu::clip_grad_norm`, the
    /// reference); writes the norm before clipping to `norm_out` (one f32)
    /// unless it is null.
    pub fn clip<D: GpuDevice>(
        &self,
        dev: &mut D,
        grads: DevicePtr,
        n: usize,
        max_norm: f32,
        norm_out: DevicePtr,
    ) -> Result<()> {
        let bad = |what: String| DeviceError::BadArguments {
            kernel: Self::KERNEL,
            what,
        };
        if !self.block.is_power_of_two() || self.block > Self::MAX_BLOCK {
            return Err(bad(format!(
                "block of {} threads is not a power of two up to {}",
                self.block,
                Self::MAX_BLOCK
            ))
            .into());
        }
        if !(max_norm.is_finite() && max_norm > 0.0) {
            return Err(bad(format!("max_norm {max_norm} is not a positive number")).into());
        }
        let n32 = u32::try_from(n)
            .map_err(|_| bad(format!("{n} parameters do not fit the kernel's u32 count")))?;
        // Argument contract (kernels/rmsprop.cu):
        // grad_norm_clip_f32(float* grads, unsigned n, float max_norm,
        //                    float* norm_out /*nullable*/).
        // Four arguments in that order and type; grads holds n f32s, norm_out
        // is null or one f32 not inside grads. One block (the kernel reduces
        // within it), a power of two up to GRAD_CLIP_MAX_BLOCK threads
        // (checked above); its shared memory is static.
        dev.launch(
            "rmsprop",
            Self::KERNEL,
            LaunchConfig::linear(1, self.block, 0),
            &[
                KernelArg::Ptr(grads),
                KernelArg::U32(n32),
                KernelArg::F32(max_norm),
                KernelArg::Ptr(norm_out),
            ],
        )
    }
}
