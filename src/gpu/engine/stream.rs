//! Stream (truncated-BPTT) training on the device: [`Engine::queue_train_stream`]
//! and the carried state (`stream_state`, `set_stream_state`).
//!
//! A stream batch is B streams of L steps; its inputs and targets are
//! decoded on the device from the corpus the engine already holds (rows
//! `starts[b] + t` and `+ t + 1`). The B starts are uploaded and, for a
//! batch that starts afresh (`carry` false), the carried state is zeroed;
//! then the step is launches only, captured once per B and L as a graph
//! and replayed every batch (`graph.rs`; launched one by one where graphs
//! are off or the device cannot capture):
//!
//! 1. `batch_stream_targets_u32`: the L*B targets;
//! 2. the recurrence in its sequence form from the carried state (zeroed
//!    first when `carry` is false): `lstm_persistent*_seq_fwd_f32`, or the
//!    per-step kernels from `h0`, `c0`;
//! 3. the head over all L*B rows (`head_rows_fwd_bwd_f32`, the dense
//!    gradients, `loss_rows_sum_f32`: the mean over the rows, summed in a
//!    fixed order), its `dh` being the recurrence's `dy`;
//! 4. the backward with `dy` at every step from dh_L = dc_L = 0 (the
//!    gradient stops at the batch's end; the carried initial state is a
//!    constant, but `h0^T dz_0` is part of d recurrent_kernel), then
//!    clipping and RMSprop as a window step;
//! 5. `stream_state_carry_f32`: step L-1's h and c into the carried state,
//!    after the backward read c0 from it;
//! 6. the loss appended to the device log (`collect_losses` reads it).
//!
//! The carried state is one [N, 2, B, H] buffer (per layer h, then c),
//! kept between batches; its B is the first stream batch's, and a batch
//! with another B must start afresh (`carry` false), which reallocates it.
//! `stream_state` hands it out as the CPU engine does: h and c [N*B, H]
//! each, layer-major.
//!
//! N > 1 layers run the device stack (`gpu::lstm::stack`) in its sequence
//! form instead of the one recurrence, with the window step's dropout masks
//! (`Mode::Train` at the run's step); the stack reads each layer's initial
//! state from the carried buffer (its `state_stride` skips the c between),
//! and `stream_state_carry_f32` runs once per layer.

use super::GpuEngine;
use super::graph::StepKind;
use crate::engine::StreamBatch;
use crate::error::{Error, Result};
use crate::gpu::device::{DevicePtr, GpuDevice};
use crate::gpu::head::{HeadBuffers, HeadDims};
use crate::gpu::lstm::LstmBuffers;
use crate::gpu::lstm::stack::StackIo;

const F32: usize = std::mem::size_of::<f32>();
const U32: usize = std::mem::size_of::<u32>();

/// The stream step's buffers beyond the window step's (`BatchBuffers`,
/// sized B x L by the same `ensure`): the carried state and the head's
/// L*B rows.
#[derive(Debug, Default)]
pub(super) struct StreamBuffers {
    /// B of `state`; 0: no state yet.
    batch: usize,
    /// Whether `state` holds a state (a stream step ran, or one was set).
    has_state: bool,
    /// [N, 2, B, H]: per layer h, then c.
    state: DevicePtr,
    /// B x L the row buffers below are sized for.
    rows: usize,
    targets: DevicePtr,  // [L*B] u32
    dy: DevicePtr,       // [L*B, H] the head's dh
    dlogits: DevicePtr,  // [L*B, V]
    row_loss: DevicePtr, // [L*B]
    dh: DevicePtr,       // [N, B, H] dh_L in (zero), dh_{-1} out
    dc: DevicePtr,       // [N, B, H]
}

impl StreamBuffers {
    /// Frees everything; `self` becomes empty.
    pub(super) fn free<D: GpuDevice>(&mut self, dev: &mut D) -> Result<()> {
        self.free_rows(dev)?;
        if self.state != DevicePtr::NULL {
            dev.free(self.state)?;
        }
        (self.state, self.batch, self.has_state) = (DevicePtr::NULL, 0, false);
        Ok(())
    }

    fn free_rows<D: GpuDevice>(&mut self, dev: &mut D) -> Result<()> {
        for p in [
            self.targets,
            self.dy,
            self.dlogits,
            self.row_loss,
            self.dh,
            self.dc,
        ] {
            if p != DevicePtr::NULL {
                dev.free(p)?;
            }
        }
        self.rows = 0;
        (self.targets, self.dy, self.dlogits) = Default::default();
        (self.row_loss, self.dh, self.dc) = Default::default();
        Ok(())
    }

    /// A state buffer for `batch` streams of `n` layers of `h` units (the
    /// old one, if its B matches; else a fresh one, holding no state yet).
    fn ensure_state<D: GpuDevice>(
        &mut self,
        dev: &mut D,
        batch: usize,
        (n, h): (usize, usize),
    ) -> Result<()> {
        if batch == self.batch && self.state != DevicePtr::NULL {
            return Ok(());
        }
        self.free(dev)?;
        self.state = dev.alloc_zeroed(2 * n * batch * h * F32)?;
        self.batch = batch;
        Ok(())
    }

    /// Row buffers for `batch` x `seq_len` rows of a V x H model of `n` layers.
    fn ensure_rows<D: GpuDevice>(
        &mut self,
        dev: &mut D,
        (batch, seq_len): (usize, usize),
        (n, h, v): (usize, usize, usize),
    ) -> Result<()> {
        let rows = batch * seq_len;
        if rows <= self.rows && self.dh != DevicePtr::NULL {
            return Ok(());
        }
        self.free_rows(dev)?;
        self.targets = dev.alloc(rows * U32)?;
        self.dy = dev.alloc(rows * h * F32)?;
        self.dlogits = dev.alloc(rows * v * F32)?;
        self.row_loss = dev.alloc(rows * F32)?;
        self.dh = dev.alloc(n * batch * h * F32)?;
        self.dc = dev.alloc(n * batch * h * F32)?;
        self.rows = rows;
        Ok(())
    }
}

impl<D: GpuDevice> GpuEngine<'_, D> {
    /// The stream step (module docs), its loss left in the device log:
    /// the batch's starts uploaded and, for a fresh batch, the carried state
    /// zeroed, then the launches, replayed as the captured graph for this
    /// B and L where graphs are on.
    pub(super) fn stream_step(&mut self, batch: StreamBatch<'_>) -> Result<()> {
        let kept = self.stream.has_state.then_some(self.stream.batch);
        batch.check(self.corpus.rows(), kept)?;
        let (b, l) = (batch.starts.len(), batch.seq_len);
        let (h, v) = (self.model.layout.hidden, self.model.layout.vocab);
        let n = self.model.layers();
        let dev = &mut self.model.device;
        self.model.batch.ensure(dev, b, l, h, v)?;
        self.stream.ensure_state(dev, b, (n, h))?;
        self.stream.ensure_rows(dev, (b, l), (n, h, v))?;
        // Queued: the host goes on to queue the step (a replayed graph)
        // instead of waiting for the device to finish the batch before.
        dev.upload_queued(self.model.batch.starts, bytemuck::cast_slice(batch.starts))?;
        if n > 1 {
            // Before any capture: a capture may not allocate.
            self.model.ensure_stack(self.model.dims(b, l))?;
        }
        // Valid again only once this step has written it: a step that fails
        // part way (after zeroing it, say) leaves no state to carry.
        self.stream.has_state = false;
        if !batch.carry {
            let dev = &mut self.model.device;
            dev.zero(self.stream.state, 2 * n * b * h * F32)?;
        }
        if self.graphs_on(StepKind::Stream) {
            let s = &self.stream;
            let mut key = self.key(b);
            key.push(l as u64);
            key.extend([s.state, s.targets, s.dy, s.dlogits, s.row_loss, s.dh, s.dc].map(|p| p.0));
            self.run_graphed(StepKind::Stream, key, |e| e.stream_body(b, l))?;
        } else {
            self.stream_body(b, l)?;
        }
        self.stream.has_state = true;
        Ok(())
    }

    /// Steps 1-6 of the module docs for `b` streams of `l` steps whose
    /// starts are in `batch.starts` and initial state in `stream.state`:
    /// launches and memsets only, so that it can be captured.
    fn stream_body(&mut self, b: usize, l: usize) -> Result<()> {
        let (h, v) = (self.model.layout.hidden, self.model.layout.vocab);
        let n = self.model.layers();
        let dims = self.model.dims(b, l);
        let mode = self.train_mode();
        let state_bytes = b * h * F32;
        let d_starts = self.model.batch.starts;
        let rows = HeadDims {
            batch: b * l,
            hidden: h,
            vocab: v,
        };
        let s = &self.stream;
        let (state, targets, dy, dh, dc) = (s.state, s.targets, s.dy, s.dh, s.dc);
        let dev = &mut self.model.device;
        self.batch_kernels.stream_targets(
            dev,
            self.d_corpus,
            dims.words_per_row,
            d_starts,
            l,
            HeadDims { batch: b, ..rows },
            targets,
        )?;
        // One layer: the recurrence's sequence form over the model's batch
        // buffers, exactly as before stacks; N: the stack, each layer from
        // its slice [h_l, c_l] of the carried state.
        let lstm_bufs = LstmBuffers {
            h0: state,
            c0: state.offset(state_bytes),
            dy,
            dh,
            dc,
            ..self.model.lstm_buffers(self.d_corpus, d_starts)
        };
        let io = StackIo {
            h0: state,
            c0: state.offset(state_bytes),
            state_stride: 2 * state_bytes,
            dy,
            dh,
            dc,
            ..self.model.stack_io(self.d_corpus, d_starts)
        };
        let stack = n > 1;
        let sd = self.model.stack_dims(dims);
        if stack {
            let bufs = self.model.stack_ws.buffers(sd, &io)?;
            let launcher = self.model.stack_launcher();
            launcher.forward(&mut self.model.device, sd, &bufs, mode)?;
        } else {
            self.model
                .lstm
                .forward(&mut self.model.device, dims, &lstm_bufs)?;
        }
        let head_bufs = HeadBuffers {
            // All L*B rows of the top layer's t-major h: row t*B + b.
            h: self.model.top_h(),
            targets,
            dlogits: self.stream.dlogits,
            dh: dy,
            row_loss: self.stream.row_loss,
            ..self.model.head_buffers(dims, DevicePtr::NULL)
        };
        let scale = 1.0 / (b * l) as f32;
        self.model
            .head
            .fwd_bwd(&mut self.model.device, rows, &head_bufs, scale)?;
        // dh_L = dc_L = 0: truncated BPTT stops at the batch's end.
        let dev = &mut self.model.device;
        dev.zero(dh, n * state_bytes)?;
        dev.zero(dc, n * state_bytes)?;
        if stack {
            let bufs = self.model.stack_ws.buffers(sd, &io)?;
            let launcher = self.model.stack_launcher();
            launcher.backward(&mut self.model.device, sd, &bufs, mode)?;
        } else {
            self.model.lstm.backward(dev, dims, &lstm_bufs)?;
        }
        self.clip_and_update()?;
        for layer in 0..n {
            let (h_last, c_last) = (
                dims.at(self.model.layer_h(layer), l - 1, h),
                dims.at(self.model.layer_c(layer), l - 1, h),
            );
            let dst = state.offset(layer * 2 * state_bytes);
            self.batch_kernels
                .carry_state(&mut self.model.device, h_last, c_last, b * h, dst)?;
        }
        self.append_loss()
    }

    /// The carried state, (h, c) [N*B, H] each (layer-major, as the CPU
    /// engine's); empty before any stream batch.
    pub(super) fn download_stream_state(&mut self) -> Result<(Vec<f32>, Vec<f32>)> {
        let s = &self.stream;
        if !s.has_state {
            return Ok((Vec::new(), Vec::new()));
        }
        let n = s.batch * self.model.layout.hidden;
        let layers = self.model.layers();
        let all = self
            .model
            .device
            .download_vec_f32(s.state, 2 * layers * n)?;
        let (mut h, mut c) = (
            Vec::with_capacity(layers * n),
            Vec::with_capacity(layers * n),
        );
        for pair in all.chunks_exact(2 * n) {
            h.extend_from_slice(&pair[..n]);
            c.extend_from_slice(&pair[n..]);
        }
        Ok((h, c))
    }

    /// Replaces the carried state with `h`, `c` [N*B, H] (B from their
    /// length, N the model's layers).
    pub(super) fn upload_stream_state(&mut self, h: &[f32], c: &[f32]) -> Result<()> {
        let hidden = self.model.layout.hidden;
        let layers = self.model.layers();
        let per_stream = layers * hidden;
        if h.len() != c.len() || h.is_empty() || !h.len().is_multiple_of(per_stream) {
            return Err(Error::InvalidArgument {
                name: "set_stream_state",
                what: format!(
                    "h has {} values and c {}: each must be {} with H = {hidden} and B >= 1",
                    h.len(),
                    c.len(),
                    match layers {
                        1 => "[B, H]".to_string(),
                        n => format!("[N*B, H] with N = {n} layers"),
                    }
                ),
            });
        }
        let b = h.len() / per_stream;
        self.stream
            .ensure_state(&mut self.model.device, b, (layers, hidden))?;
        let n = b * hidden;
        let mut pairs = Vec::with_capacity(2 * h.len());
        for (hl, cl) in h.chunks_exact(n).zip(c.chunks_exact(n)) {
            pairs.extend_from_slice(hl);
            pairs.extend_from_slice(cl);
        }
        let state = self.stream.state;
        self.model.device.upload_f32(state, &pairs)?;
        self.stream.has_state = true;
        Ok(())
    }
}
