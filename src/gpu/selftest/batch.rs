//! The captured step's two bookkeeping kernels (`kernels/batch.cu`), both
//! exact copies, checked exactly against what they must copy: the batch's
//! starts selected at a device cursor (`batch_select_u32`) and the loss log
//! (`loss_log_append_f32`), including a full log's overflow.

use super::report::SelftestRow;
use super::{BOUND_EXACT, Buffers, Rows};
use crate::error::Result;
use crate::gpu::batch::BatchLauncher;
use crate::gpu::device::GpuDevice;
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
