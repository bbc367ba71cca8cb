//! The exact kernels of `kernels/batch.cu`, checked exactly: the captured
//! step's two bookkeeping kernels against what they must copy, the batch's
//! starts selected at a device cursor (`batch_select_u32`) and the loss log
//! with a full log's overflow (`loss_log_append_f32`); and the LSTM op's
//! class indices packed into one-hot rows (`op_classes_onehot_u32`) against
//! the host's packing.

use super::report::SelftestRow;
use super::{BOUND_EXACT, Buffers, Rows};
use crate::error::Result;
use crate::gpu::batch::BatchLauncher;
use crate::gpu::device::GpuDevice;
use crate::gpu::selftest::Shape;
use crate::sample::RngStream;

/// Window starts selected: more than two blocks' worth, so the kernel's
/// block-stride loop runs three rounds at the default block of 128.
const SELECT_N: usize = 259;
/// Entries of the checked loss log; one more append than fit.
const LOG_CAPACITY: usize = 4;

/// `batch_select_u32` on a random order at a random cursor: the starts are
/// `order[cursor..cursor + n]` and the cursor moved by n.
pub fn check_batch_select<D: GpuDevice>(
    dev: &mut D,
    rng: &mut RngStream,
) -> Result<Vec<SelftestRow>> {
    let order: Vec<u32> = (0..3 * SELECT_N).map(|_| rng.next_u32()).collect();
    let cursor = rng.below((order.len() - SELECT_N) as u64 + 1) as usize;
    let shape = format!("n={SELECT_N} of {} at {cursor}", order.len());
    Buffers::scope(dev, |dev, bufs| {
        let d_order = bufs.u32s(dev, &order)?;
        let d_cursor = bufs.u32s(dev, &[cursor as u32])?;
        let d_starts = bufs.u32s(dev, &[u32::MAX; SELECT_N])?; // poisoned
        BatchLauncher::default().select(dev, d_order, d_cursor, SELECT_N, d_starts)?;
        let mut got = vec![0u32; SELECT_N];
        dev.download(d_starts, bytemuck::cast_slice_mut(&mut got))?;
        let mut moved = [0u32];
        dev.download(d_cursor, bytemuck::cast_slice_mut(&mut moved))?;
        let want = &order[cursor..cursor + SELECT_N];
        let want_cursor = [(cursor + SELECT_N) as u32];
        let (mut rows, kernel) = (Rows::new(shape), "batch_select_u32");
        rows.compare(kernel, "starts", &got, want, BOUND_EXACT);
        rows.compare(kernel, "cursor", &moved, &want_cursor, BOUND_EXACT);
        Ok(rows.rows)
    })
}

/// `loss_log_append_f32` appending `LOG_CAPACITY + 1` random losses to an
/// empty log: the first `LOG_CAPACITY` land in order, the last is dropped,
/// and the count says `LOG_CAPACITY + 1`.
pub fn check_loss_log<D: GpuDevice>(dev: &mut D, rng: &mut RngStream) -> Result<Vec<SelftestRow>> {
    let losses: Vec<f32> = (0..=LOG_CAPACITY)
        .map(|_| (rng.next_f64() * 5.0) as f32)
        .collect();
    let shape = format!("{} appends, capacity {LOG_CAPACITY}", losses.len());
    Buffers::scope(dev, |dev, bufs| {
        let d_loss = bufs.f32s(dev, &[0.0])?;
        let d_log = bufs.poisoned(dev, LOG_CAPACITY)?;
        let d_count = bufs.u32s(dev, &[0])?;
        let launcher = BatchLauncher::default();
        for &loss in &losses {
            dev.upload_f32(d_loss, &[loss])?;
            launcher.append_loss(dev, d_loss, d_log, d_count, LOG_CAPACITY)?;
        }
        let got = dev.download_vec_f32(d_log, LOG_CAPACITY)?;
        let mut count = [0u32];
        dev.download(d_count, bytemuck::cast_slice_mut(&mut count))?;
        let (mut rows, kernel) = (Rows::new(shape), "loss_log_append_f32");
        rows.compare(kernel, "log", &got, &losses[..LOG_CAPACITY], BOUND_EXACT);
        rows.compare(kernel, "count", &count, &[losses.len() as u32], BOUND_EXACT);
        Ok(rows.rows)
    })
}

/// `op_classes_onehot_u32` on random class indices `[T, B]` of the shape
/// (In = V), two of them out of range: the one-hot rows and row starts
/// exactly as the host packs them, the two setting no bit, counted, and the
/// first of them named. Every output starts poisoned (all bits set).
pub fn check_op_classes<D: GpuDevice>(
    dev: &mut D,
    shape: Shape,
    rng: &mut RngStream,
) -> Result<Vec<SelftestRow>> {
    let (inputs, b, t) = (shape.vocab, shape.batch, shape.seq_len);
    let n = t * b;
    let mut classes: Vec<u32> = (0..n).map(|_| rng.below(inputs as u64) as u32).collect();
    // Two out of range (one when there is only one index), the first at n / 2.
    let first = n / 2;
    classes[n - 1] = u32::MAX;
    classes[first] = inputs as u32 + 5;
    let bad_count = if first == n - 1 { 1 } else { 2 };
    let wpr = inputs.div_ceil(64);
    let mut words = vec![0u64; n * wpr];
    for (k, &c) in classes.iter().enumerate() {
        if (c as usize) < inputs {
            let row = (k % b) * t + k / b;
            words[row * wpr + c as usize / 64] |= 1 << (c % 64);
        }
    }
    let want_words: &[u32] = bytemuck::cast_slice(&words);
    let want_starts: Vec<u32> = (0..b as u32).map(|r| r * t as u32).collect();
    let bad_want = [bad_count, first as u32];
    Buffers::scope(dev, |dev, bufs| {
        let d_classes = bufs.u32s(dev, &classes)?;
        let d_words = bufs.u32s(dev, &vec![u32::MAX; want_words.len()])?;
        let d_starts = bufs.u32s(dev, &vec![u32::MAX; b])?;
        let d_bad = bufs.u32s(dev, &[0, u32::MAX])?;
        let bad = (d_bad, d_bad.offset(4));
        let launcher = BatchLauncher::default();
        launcher.op_classes(dev, d_classes, (t, b, inputs), (d_words, d_starts), bad)?;
        let mut got_words = vec![0u32; want_words.len()];
        dev.download(d_words, bytemuck::cast_slice_mut(&mut got_words))?;
        let mut got_starts = vec![0u32; b];
        dev.download(d_starts, bytemuck::cast_slice_mut(&mut got_starts))?;
        let mut got_bad = [0u32; 2];
        dev.download(d_bad, bytemuck::cast_slice_mut(&mut got_bad))?;
        let (mut rows, kernel) = (Rows::new(shape), "op_classes_onehot_u32");
        rows.compare(kernel, "words", &got_words, want_words, BOUND_EXACT);
        rows.compare(kernel, "starts", &got_starts, &want_starts, BOUND_EXACT);
        rows.compare(kernel, "bad", &got_bad, &bad_want, BOUND_EXACT);
        Ok(rows.rows)
    })
}
