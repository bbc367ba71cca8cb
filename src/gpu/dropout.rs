//! Launcher of `kernels/dropout.cu`: dropout between stacked LSTM layers
//! on the device, forward and backward, with the mask of
//! [`crate::ops::dropout`] (same Philox counter, same integer threshold,
//! same f32 scale), so the CPU and the device drop the same units and agree
//! to the bit.

use super::contract::dropout::{DropoutFwdF32, DropoutStepAdvanceU32};
use super::device::{DevicePtr, GpuDevice, LaunchConfig, blocks_for, kernel_u32};
use crate::error::Result;
use crate::ops::dropout;

/// Which mask: the Philox key and training step of [`dropout::Mode::Train`]
/// and the layer whose output is dropped.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropoutMask {
    /// The probability of dropping a unit, in [0, 1).
    pub p: f64,
    /// The Philox key.
    pub seed: u64,
    /// The training step.
    pub step: u32,
    /// A device u32 holding the step, or NULL: `step`. Read when the
    /// kernel runs, so a captured graph's replays draw each step's masks
    /// ([`DropoutLauncher::advance_step`] moves it on).
    pub step_at: DevicePtr,
    /// The layer whose output [T, B, H] is dropped.
    pub layer: u32,
}

/// Block sizes of the dropout kernels.
#[derive(Clone, Copy, Debug)]
pub struct DropoutLauncher {
    /// Threads per block (one per Philox block of 4 units).
    pub block: u32,
    /// Upper bound on the grid; the kernels' grid-stride loops cover the rest.
    pub max_blocks: u32,
}

impl Default for DropoutLauncher {
    fn default() -> Self {
        DropoutLauncher {
            block: 256,
            max_blocks: 4096,
        }
    }
}

impl DropoutLauncher {
    /// `out = keep ? in * scale : 0` over `rows` x `hidden` (rows = T*B of
    /// a t-major [T, B, H] buffer): the forward on a layer's output. `in`
    /// and `out` may be the same buffer.
    pub fn forward<D: GpuDevice>(
        &self,
        dev: &mut D,
        mask: DropoutMask,
        (rows, hidden): (usize, usize),
        input: DevicePtr,
        out: DevicePtr,
    ) -> Result<()> {
        self.apply(dev, 0, mask, (rows, hidden), input, out)
    }

    /// The backward: the same mask and scale on the gradient (`in` = dy,
    /// `out` = dx, may be the same buffer).
    pub fn backward<D: GpuDevice>(
        &self,
        dev: &mut D,
        mask: DropoutMask,
        (rows, hidden): (usize, usize),
        input: DevicePtr,
        out: DevicePtr,
    ) -> Result<()> {
        self.apply(dev, 1, mask, (rows, hidden), input, out)
    }

    /// Adds one to the device step counter `step_at` (a u32), after an
    /// optimizer step: one thread.
    pub fn advance_step<D: GpuDevice>(&self, dev: &mut D, step_at: DevicePtr) -> Result<()> {
        // step_at holds one u32, written by the one thread launched.
        let args = DropoutStepAdvanceU32 { step: step_at };
        let name = DropoutStepAdvanceU32::KERNELS[0];
        args.launch(dev, name, LaunchConfig::linear(1, 32, 0))
    }

    fn apply<D: GpuDevice>(
        &self,
        dev: &mut D,
        which: usize,
        mask: DropoutMask,
        (rows, hidden): (usize, usize),
        input: DevicePtr,
        out: DevicePtr,
    ) -> Result<()> {
        let name = DropoutFwdF32::KERNELS[which];
        // The CPU's checks, so both refuse the same calls with the same words.
        let blocks = dropout::check_call(mask.p, rows, hidden)?;
        if blocks == 0 {
            return Ok(());
        }
        // Rounded to f32 as the CPU's f32 path computes it: 1 / (1 - p).
        let scale = 1.0f32 / (1.0f32 - mask.p as f32);
        // `in` / `out` hold rows x hidden f32s each (the same buffer allowed: one thread reads then
        // writes each element); grid-stride over rows * ceil(H / 4) Philox blocks, which
        // check_call keeps within u32.
        let args = DropoutFwdF32 {
            seed: mask.seed,
            step: mask.step,
            step_at: mask.step_at,
            layer: mask.layer,
            threshold: dropout::threshold(mask.p),
            scale,
            rows: kernel_u32(name, "T*B", rows)?,
            H: kernel_u32(name, "H", hidden)?,
            src: input,
            dst: out,
        };
        let cfg = LaunchConfig::linear(
            blocks_for(blocks, self.block, self.max_blocks),
            self.block,
            0,
        );
        args.launch(dev, name, cfg)
    }
}
