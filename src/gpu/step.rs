//! Launcher of `kernels/step.cu`: the two kernels that let a training step
//! be captured once and replayed ([`super::GpuEngine`]): the batch's window
//! starts selected on the device at a device-side cursor, and the step's
//! loss appended to a device loss log.

use super::contract::step::{BatchSelectU32, LossLogAppendF32};
use super::device::{DeviceError, DevicePtr, GpuDevice, LaunchConfig, check_whole_warps};
use crate::error::Result;

/// `batch_select_u32` and `loss_log_append_f32`.
#[derive(Clone, Copy, Debug)]
pub struct StepLauncher {
    /// Threads of `batch_select_u32`'s one block (a multiple of 32, at most 1024).
    pub block: u32,
}

impl Default for StepLauncher {
    fn default() -> Self {
        StepLauncher { block: 128 }
    }
}

impl StepLauncher {
    const SELECT: &'static str = BatchSelectU32::KERNELS[0];
    const APPEND: &'static str = LossLogAppendF32::KERNELS[0];

    /// `starts[i] = order[*cursor + i]` for `i < n`, then `*cursor += n`.
    /// The caller guarantees `*cursor + n` is within `order` and `starts`
    /// holds `n` u32s.
    pub fn select<D: GpuDevice>(
        &self,
        dev: &mut D,
        order: DevicePtr,
        cursor: DevicePtr,
        n: usize,
        starts: DevicePtr,
    ) -> Result<()> {
        let bad = |what: String| DeviceError::BadArguments {
            kernel: Self::SELECT,
            what,
        };
        check_whole_warps(Self::SELECT, "block", self.block, 1024)?;
        let n32 = u32::try_from(n).map_err(|_| bad(format!("n = {n} does not fit u32")))?;
        // Exactly ONE block: the kernel orders the cursor's reads before its write with a block
        // barrier. cursor is one u32 outside order, starts.
        let args = BatchSelectU32 {
            order,
            cursor,
            n: n32,
            starts,
        };
        let one_block = LaunchConfig::linear(1, self.block, 0);
        dev.launch(
            BatchSelectU32::MODULE,
            Self::SELECT,
            one_block,
            &args.args(),
        )
    }

    /// `log[*count] = *loss` (when `*count < capacity`), then `*count += 1`.
    pub fn append_loss<D: GpuDevice>(
        &self,
        dev: &mut D,
        loss: DevicePtr,
        log: DevicePtr,
        count: DevicePtr,
        capacity: usize,
    ) -> Result<()> {
        let cap = u32::try_from(capacity).map_err(|_| DeviceError::BadArguments {
            kernel: Self::APPEND,
            what: format!("capacity {capacity} does not fit u32"),
        })?;
        // log holds capacity f32s, loss and count one element each.
        let args = LossLogAppendF32 {
            loss,
            log,
            count,
            capacity: cap,
        };
        let one_thread = LaunchConfig::linear(1, 1, 0);
        dev.launch(
            LossLogAppendF32::MODULE,
            Self::APPEND,
            one_thread,
            &args.args(),
        )
    }
}
