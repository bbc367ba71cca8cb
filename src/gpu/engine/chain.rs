//! The launch chain of one training step, shared by the captured graph,
//! uncaptured steps and eval: where a batch's starts come from, the forward
//! (targets, LSTM, head) and the backward (LSTM, clipping, RMSprop). The
//! per-kernel buffers are the model's (`super::super::model`).

use super::GpuEngine;
use crate::error::{Error, Result};
use crate::gpu::device::{DevicePtr, GpuDevice};
use crate::gpu::head::HeadDims;
use crate::gpu::lstm::LstmDims;
use crate::ops::Mode;

impl<D: GpuDevice> GpuEngine<'_, D> {
    /// Checks `starts`: every window and its target inside the corpus.
    pub(super) fn check_starts(&self, starts: &[u32]) -> Result<()> {
        let rows = self.corpus.rows();
        if let Some(&bad) = starts.iter().find(|&&s| s as usize + self.maxlen >= rows) {
            return Err(Error::InvalidArgument {
                name: "starts",
                what: format!(
                    "window start {bad} + maxlen {} leaves no target inside the corpus of {rows} characters",
                    self.maxlen
                ),
            });
        }
        Ok(())
    }

    /// Checks `starts` and uploads them to the batch's staging buffer
    /// (sized by `ensure_batch`); returns where they are.
    pub(super) fn upload_starts(&mut self, starts: &[u32]) -> Result<DevicePtr> {
        self.check_starts(starts)?;
        let staging = self.model.batch.starts;
        self.model.device.upload_u32(staging, starts)?;
        Ok(staging)
    }

    /// One whole step (forward, head, backward, update, loss appended to
    /// the log) of `batch` windows whose starts are at `d_starts`.
    pub(super) fn step_at(&mut self, d_starts: DevicePtr, batch: usize) -> Result<()> {
        let mode = self.train_mode();
        let dims = self.forward_head_at(d_starts, batch, mode)?;
        self.backward_update(dims, mode)?;
        self.append_loss()
    }

    /// Room for a batch of `rows` windows (and the stack's, N > 1, so a
    /// step about to be captured allocates nothing).
    pub(super) fn ensure_batch(&mut self, rows: usize) -> Result<()> {
        let (h, v) = (self.model.layout.hidden, self.model.layout.vocab);
        self.model
            .batch
            .ensure(&mut self.model.device, rows, self.maxlen, h, v)?;
        if self.model.layers() > 1 {
            let dims = self.model.dims(rows, self.maxlen);
            self.model.ensure_stack(dims)?;
        }
        Ok(())
    }

    /// Targets + LSTM forward + head (forward and backward) for `starts`;
    /// leaves the batch's mean loss in `batch.loss` and returns the dims.
    pub(super) fn forward_head(&mut self, starts: &[u32]) -> Result<LstmDims> {
        self.ensure_batch(starts.len())?;
        let d_starts = self.upload_starts(starts)?;
        // Evaluation: no dropout.
        self.forward_head_at(d_starts, starts.len(), Mode::Eval)
    }

    /// [`forward_head`](Self::forward_head) for `batch` windows whose starts
    /// are at `d_starts` on the device, dropout as `mode` says: launches only.
    pub(super) fn forward_head_at(
        &mut self,
        d_starts: DevicePtr,
        batch: usize,
        mode: Mode,
    ) -> Result<LstmDims> {
        let (h, v) = (self.model.layout.hidden, self.model.layout.vocab);
        let dims = self.model.dims(batch, self.maxlen);
        let hd = HeadDims {
            batch: dims.batch,
            hidden: h,
            vocab: v,
        };
        let dev = &mut self.model.device;
        dev.zero(self.model.batch.loss, std::mem::size_of::<f32>())?;
        self.batch_kernels.targets(
            dev,
            self.d_corpus,
            dims.words_per_row,
            d_starts,
            self.maxlen,
            hd,
            self.model.batch.targets,
        )?;
        self.model
            .lstm_forward(self.d_corpus, d_starts, dims, mode)?;
        let head_bufs = self.model.head_buffers(dims, DevicePtr::NULL);
        let scale = 1.0 / dims.batch as f32;
        self.model
            .head
            .fwd_bwd(&mut self.model.device, hd, &head_bufs, scale)?;
        Ok(dims)
    }

    /// LSTM backward (of the forward in `mode`), clipping (with
    /// `--clip-norm`) and RMSprop after [`forward_head`](Self::forward_head):
    /// launches only.
    pub(super) fn backward_update(&mut self, dims: LstmDims, mode: Mode) -> Result<()> {
        self.model.lstm_backward(dims, mode)?;
        self.clip_and_update()
    }

    /// Clipping (with `--clip-norm`) and RMSprop over the gradients a
    /// backward left, one optimizer step of the run: launches only.
    pub(super) fn clip_and_update(&mut self) -> Result<()> {
        self.step += 1;
        if self.model.dropout_step != DevicePtr::NULL {
            // After this step's forward and backward read it.
            let at = self.model.dropout_step;
            crate::gpu::dropout::DropoutLauncher::default()
                .advance_step(&mut self.model.device, at)?;
        }
        if let Some(max_norm) = self.clip_norm {
            let (n, grads) = (self.model.layout.len(), self.model.d_grads);
            // No norm written back: nothing on the host needs it.
            let norm_out = DevicePtr::NULL;
            self.grad_clip
                .clip(&mut self.model.device, grads, n, max_norm, norm_out)?;
        }
        self.rmsprop.update(
            &mut self.model.device,
            &self.optimizer,
            self.model.d_params,
            self.d_rmsprop,
            self.model.d_grads,
            self.model.layout.len(),
        )
    }

    pub(super) fn read_loss(&mut self) -> Result<f32> {
        let mut loss = [0f32];
        self.model
            .device
            .download_f32(self.model.batch.loss, &mut loss)?;
        Ok(loss[0])
    }
}
