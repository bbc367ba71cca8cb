//! Launcher of `kernels/batch.cu`: one training batch on the device around
//! the model: its window starts selected at a device-side cursor, its
//! targets decoded from the corpus, its loss appended to a device loss log.
//! The first and last let a training step be captured once and replayed
//! ([`super::GpuEngine`]).

use super::contract::batch::{
    BatchSelectU32, BatchStreamTargetsU32, BatchTargetsU32, LossLogAppendF32, OpClassesOnehotU32,
    StreamStateCarryF32,
};
use super::device::{
    DeviceError, DevicePtr, GpuDevice, LaunchConfig, blocks_for, check_whole_warps, kernel_u32,
};
use super::head::HeadDims;
use crate::error::Result;

/// `batch_select_u32`, `batch_targets_u32` and `loss_log_append_f32`.
#[derive(Clone, Copy, Debug)]
pub struct BatchLauncher {
    /// Threads of `batch_select_u32`'s one block (a multiple of 32, at most 1024).
    pub block: u32,
}

impl Default for BatchLauncher {
    fn default() -> Self {
        BatchLauncher { block: 128 }
    }
}

impl BatchLauncher {
    const SELECT: &'static str = BatchSelectU32::KERNELS[0];
    const APPEND: &'static str = LossLogAppendF32::KERNELS[0];
    const TARGETS: &'static str = BatchTargetsU32::KERNELS[0];
    const STREAM_TARGETS: &'static str = BatchStreamTargetsU32::KERNELS[0];
    const CARRY: &'static str = StreamStateCarryF32::KERNELS[0];
    const CLASSES: &'static str = OpClassesOnehotU32::KERNELS[0];

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
        check_whole_warps(Self::SELECT, "block", self.block, 1024)?;
        let n32 = kernel_u32(Self::SELECT, "n", n)?;
        // Exactly ONE block: the kernel orders the cursor's reads before its write with a block
        // barrier. cursor is one u32 outside order, starts.
        let args = BatchSelectU32 {
            order,
            cursor,
            n: n32,
            starts,
        };
        let one_block = LaunchConfig::linear(1, self.block, 0);
        args.launch(dev, Self::SELECT, one_block)
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
        let cap = kernel_u32(Self::APPEND, "capacity", capacity)?;
        // log holds capacity f32s, loss and count one element each.
        let args = LossLogAppendF32 {
            loss,
            log,
            count,
            capacity: cap,
        };
        let one_thread = LaunchConfig::linear(1, 1, 0);
        args.launch(dev, Self::APPEND, one_thread)
    }

    /// Decodes the targets of a batch on the device: `targets[b]` = class of
    /// corpus row `starts[b] + seq_len` (V where that row has no class, which
    /// the head turns into a NaN loss). The caller guarantees every
    /// `starts[b] + seq_len` is a row of the corpus.
    #[allow(clippy::too_many_arguments)]
    pub fn targets<D: GpuDevice>(
        &self,
        dev: &mut D,
        corpus_words: DevicePtr,
        words_per_row: usize,
        starts: DevicePtr,
        seq_len: usize,
        dims: HeadDims,
        targets: DevicePtr,
    ) -> Result<()> {
        let bad = |what: String| DeviceError::BadArguments {
            kernel: Self::TARGETS,
            what,
        };
        let to_u32 = |x: usize, name: &str| kernel_u32(Self::TARGETS, name, x);
        let (wpr, t, b, v) = (
            to_u32(words_per_row, "words_per_row")?,
            to_u32(seq_len, "T")?,
            to_u32(dims.batch, "B")?,
            to_u32(dims.vocab, "V")?,
        );
        if words_per_row != dims.vocab.div_ceil(64) {
            return Err(bad(format!(
                "words_per_row = {words_per_row} but V = {} needs {}",
                dims.vocab,
                dims.vocab.div_ceil(64)
            ))
            .into());
        }
        if b == 0 {
            return Ok(());
        }
        // `starts` and `targets` hold B u32s; grid-stride over B.
        let args = BatchTargetsU32 {
            corpus_words,
            words_per_row: wpr,
            starts,
            T: t,
            B: b,
            V: v,
            targets,
        };
        args.launch(
            dev,
            Self::TARGETS,
            LaunchConfig::linear(blocks_for(dims.batch, 128, 65_535), 128, 0),
        )
    }

    /// The targets of a stream batch of `dims.batch` streams and `seq_len`
    /// steps, t-major: `targets[t*B + b]` = class of corpus row `starts[b] +
    /// t + 1` (V where that row has no class). The caller guarantees every
    /// `starts[b] + seq_len` is a row of the corpus and `targets` holds
    /// `seq_len * B` u32s.
    #[allow(clippy::too_many_arguments)]
    pub fn stream_targets<D: GpuDevice>(
        &self,
        dev: &mut D,
        corpus_words: DevicePtr,
        words_per_row: usize,
        starts: DevicePtr,
        seq_len: usize,
        dims: HeadDims,
        targets: DevicePtr,
    ) -> Result<()> {
        let to_u32 = |x: usize, name: &str| kernel_u32(Self::STREAM_TARGETS, name, x);
        let n = seq_len * dims.batch;
        to_u32(n, "L*B")?;
        if words_per_row != dims.vocab.div_ceil(64) {
            return Err(DeviceError::BadArguments {
                kernel: Self::STREAM_TARGETS,
                what: format!(
                    "words_per_row = {words_per_row} but V = {} needs {}",
                    dims.vocab,
                    dims.vocab.div_ceil(64)
                ),
            }
            .into());
        }
        if n == 0 {
            return Ok(());
        }
        // `starts` holds B u32s, `targets` L*B; grid-stride over L*B.
        let args = BatchStreamTargetsU32 {
            corpus_words,
            words_per_row: to_u32(words_per_row, "words_per_row")?,
            starts,
            L: to_u32(seq_len, "L")?,
            B: to_u32(dims.batch, "B")?,
            V: to_u32(dims.vocab, "V")?,
            targets,
        };
        args.launch(
            dev,
            Self::STREAM_TARGETS,
            LaunchConfig::linear(blocks_for(n, 128, 65_535), 128, 0),
        )
    }

    /// `op_classes_onehot_u32` (its contract: kernels/batch.cu) on
    /// `classes` `[T, B]` for an op of `inputs` classes, into `words` and
    /// `starts`; `bad` = its (count, first) u32s, which the caller resets.
    pub fn op_classes<D: GpuDevice>(
        &self,
        dev: &mut D,
        classes: DevicePtr,
        (seq_len, batch, inputs): (usize, usize, usize),
        (words, starts): (DevicePtr, DevicePtr),
        (bad_count, first_bad): (DevicePtr, DevicePtr),
    ) -> Result<()> {
        let to_u32 = |x: usize, name: &str| kernel_u32(Self::CLASSES, name, x);
        let wpr = inputs.div_ceil(64);
        // k = t*B + b is a u32 in the kernel; the words' index is not.
        to_u32(seq_len.saturating_mul(batch), "T*B")?;
        let n = seq_len * batch * wpr;
        if n == 0 {
            return Ok(());
        }
        let args = OpClassesOnehotU32 {
            classes,
            T: to_u32(seq_len, "T")?,
            B: to_u32(batch, "B")?,
            In: to_u32(inputs, "In")?,
            words_per_row: to_u32(wpr, "words_per_row")?,
            words,
            starts,
            bad_count,
            first_bad,
        };
        args.launch(
            dev,
            Self::CLASSES,
            LaunchConfig::linear(blocks_for(n, 128, 65_535), 128, 0),
        )
    }

    /// `state[0..n) = h_last`, `state[n..2n) = c_last` for `n` = B*H f32s:
    /// the final state of a stream batch carried to the next.
    pub fn carry_state<D: GpuDevice>(
        &self,
        dev: &mut D,
        h_last: DevicePtr,
        c_last: DevicePtr,
        n: usize,
        state: DevicePtr,
    ) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        // h_last, c_last hold n f32s, state 2n; grid-stride over n.
        let args = StreamStateCarryF32 {
            h_last,
            c_last,
            n: kernel_u32(Self::CARRY, "B*H", n)?,
            state,
        };
        args.launch(
            dev,
            Self::CARRY,
            LaunchConfig::linear(blocks_for(n, 128, 65_535), 128, 0),
        )
    }
}
