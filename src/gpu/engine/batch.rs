//! The launches of one batch, shared by training (captured or not), eval
//! and predict: the per-kernel buffers the engine's flat parameter and
//! batch buffers make, where a batch's starts come from, and the forward
//! (targets, LSTM, head) and backward (LSTM, clipping, RMSprop) chains.

use super::GpuEngine;
use crate::error::{Error, Result};
use crate::gpu::device::{DevicePtr, GpuDevice};
use crate::gpu::head::{HeadBuffers, HeadDims};
use crate::gpu::lstm::{LstmBuffers, LstmDims};

impl<D: GpuDevice> GpuEngine<'_, D> {
    /// Device pointer of tensor `i` (in `TENSOR_NAMES` order) of a flat buffer.
    pub(super) fn tensor(&self, flat: DevicePtr, i: usize) -> DevicePtr {
        flat.offset(self.layout.ranges()[i].start * std::mem::size_of::<f32>())
    }

    pub(super) fn lstm_buffers(&self, corpus: DevicePtr, starts: DevicePtr) -> LstmBuffers {
        let (p, g, b) = (self.d_params, self.d_grads, &self.batch);
        LstmBuffers {
            corpus_words: corpus,
            starts,
            kernel: self.tensor(p, 0),
            recurrent_kernel: self.tensor(p, 1),
            bias: self.tensor(p, 2),
            gates: b.gates,
            c: b.c,
            h: b.h,
            cls: b.cls,
            dz: b.dz,
            dh: b.dh,
            dc: b.dc,
            d_kernel: self.tensor(g, 0),
            d_recurrent_kernel: self.tensor(g, 1),
            d_bias: self.tensor(g, 2),
            wgrad_scratch: b.wgrad_scratch,
        }
    }

    pub(super) fn head_buffers(&self, dims: LstmDims, probs: DevicePtr) -> HeadBuffers {
        let (p, g, b) = (self.d_params, self.d_grads, &self.batch);
        HeadBuffers {
            h: dims.at(b.h, dims.seq_len - 1, dims.hidden),
            dense_kernel: self.tensor(p, 3),
            dense_bias: self.tensor(p, 4),
            targets: b.targets,
            probs,
            dlogits: b.dlogits,
            dh: b.dh,
            d_dense_kernel: self.tensor(g, 3),
            d_dense_bias: self.tensor(g, 4),
            loss_sum: b.loss,
        }
    }

    pub(super) fn dims(&self, batch: usize, seq_len: usize) -> LstmDims {
        LstmDims {
            batch,
            seq_len,
            hidden: self.layout.hidden,
            vocab: self.layout.vocab,
            words_per_row: self.corpus.words_per_row(),
        }
    }

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

    /// When `starts` are the epoch order's next batch: moves the host
    /// cursor past them and returns where they began.
    pub(super) fn take_in_order(&mut self, starts: &[u32]) -> Option<usize> {
        let o = &mut self.order;
        let (pos, end) = (o.cursor, o.cursor + starts.len());
        if end <= o.host.len() && o.host[pos..end] == *starts {
            o.cursor = end;
            return Some(pos);
        }
        None
    }

    /// Checks `starts` and returns the device pointer to them: the epoch
    /// order's slice when they are its next batch, else the staging buffer
    /// they are uploaded to.
    pub(super) fn starts_on_device(&mut self, starts: &[u32]) -> Result<DevicePtr> {
        self.check_starts(starts)?;
        if let Some(pos) = self.take_in_order(starts) {
            return Ok(self.order.device.offset(pos * std::mem::size_of::<u32>()));
        }
        self.device.upload_u32(self.batch.starts, starts)?;
        Ok(self.batch.starts)
    }

    /// Room for a batch of `rows` windows.
    pub(super) fn ensure_batch(&mut self, rows: usize) -> Result<()> {
        let (h, v) = (self.layout.hidden, self.layout.vocab);
        self.batch.ensure(&mut self.device, rows, self.maxlen, h, v)
    }

    /// Targets + LSTM forward + head (forward and backward) for `starts`;
    /// leaves the batch's mean loss in `batch.loss` and returns the dims.
    pub(super) fn forward_head(&mut self, starts: &[u32]) -> Result<LstmDims> {
        self.ensure_batch(starts.len())?;
        let d_starts = self.starts_on_device(starts)?;
        self.forward_head_at(d_starts, starts.len())
    }

    /// [`forward_head`](Self::forward_head) for `batch` windows whose starts
    /// are at `d_starts` on the device: launches only.
    pub(super) fn forward_head_at(
        &mut self,
        d_starts: DevicePtr,
        batch: usize,
    ) -> Result<LstmDims> {
        let (h, v) = (self.layout.hidden, self.layout.vocab);
        let dims = self.dims(batch, self.maxlen);
        let hd = HeadDims {
            batch: dims.batch,
            hidden: h,
            vocab: v,
        };
        let dev = &mut self.device;
        dev.zero(self.batch.loss, std::mem::size_of::<f32>())?;
        self.head.targets(
            dev,
            self.d_corpus,
            dims.words_per_row,
            d_starts,
            self.maxlen,
            hd,
            self.batch.targets,
        )?;
        let lstm_bufs = self.lstm_buffers(self.d_corpus, d_starts);
        self.lstm.forward(&mut self.device, dims, &lstm_bufs)?;
        let head_bufs = self.head_buffers(dims, DevicePtr::NULL);
        let scale = 1.0 / dims.batch as f32;
        self.head.fwd_bwd(&mut self.device, hd, &head_bufs, scale)?;
        Ok(dims)
    }

    /// LSTM backward, clipping (with `--clip-norm`) and RMSprop after
    /// [`forward_head`](Self::forward_head): launches only.
    pub(super) fn backward_update(&mut self, dims: LstmDims) -> Result<()> {
        let bufs = self.lstm_buffers(self.d_corpus, DevicePtr::NULL);
        // backward reads only h, cls, gates, c, dz, dh, dc and writes grads:
        // the corpus and starts are not needed again.
        self.lstm.backward(&mut self.device, dims, &bufs)?;
        if let Some(max_norm) = self.clip_norm {
            let (n, grads) = (self.layout.len(), self.d_grads);
            // No norm written back: nothing on the host needs it.
            let norm_out = DevicePtr::NULL;
            self.grad_clip
                .clip(&mut self.device, grads, n, max_norm, norm_out)?;
        }
        self.rmsprop.update(
            &mut self.device,
            &self.optimizer,
            self.d_params,
            self.d_rmsprop,
            self.d_grads,
            self.layout.len(),
        )
    }

    pub(super) fn read_loss(&mut self) -> Result<f32> {
        let mut loss = [0f32];
        self.device.download_f32(self.batch.loss, &mut loss)?;
        Ok(loss[0])
    }
}
