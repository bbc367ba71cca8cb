//! Launcher of `kernels/rmsprop.cu`: RMSprop over every parameter in one
//! launch, and global gradient-norm clipping before it ([`GradClipLauncher`]),
//! over the flat [`ParamLayout`](crate::model::ParamLayout) buffers the parameters, their gradients and
//! the mean squares live in on the device.

use super::contract::rmsprop::{GRAD_CLIP_MAX_BLOCK, GradNormClipF32, RmspropUpdateF32};
use super::device::{DeviceError, DevicePtr, GpuDevice, LaunchConfig, blocks_for};
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
    const KERNEL: &'static str = RmspropUpdateF32::KERNELS[0];

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
        // The hyper-parameters are rounded to f32 here exactly as the CPU f32 path does; the three
        // buffers hold n f32s each, not overlapping.
        let args = RmspropUpdateF32 {
            params,
            ms,
            grads,
            n: n32,
            lr: opt.lr as f32,
            rho: opt.rho as f32,
            eps: opt.eps as f32,
        };
        args.launch(dev, Self::KERNEL, cfg)
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
    const KERNEL: &'static str = GradNormClipF32::KERNELS[0];
    /// `GRAD_CLIP_MAX_BLOCK` of `kernels/rmsprop.cu`.
    pub const MAX_BLOCK: u32 = GRAD_CLIP_MAX_BLOCK;

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
        // grads holds n f32s; norm_out is null or one f32 outside them.
        let args = GradNormClipF32 {
            grads,
            n: n32,
            max_norm,
            norm_out,
        };
        let one_block = LaunchConfig::linear(1, self.block, 0);
        args.launch(dev, Self::KERNEL, one_block)
    }
}
