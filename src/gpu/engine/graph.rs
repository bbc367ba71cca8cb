//! The training step as one captured graph, and the device loss log.
//!
//! A [`Batch::Next`](crate::engine::Batch::Next) step (the next windows of
//! the epoch order) whose batch is full-sized runs as a graph captured once and replayed every
//! step. A graph repeats its launches with the arguments they had at
//! capture, so everything that varies per step lives in device memory:
//! `batch_select_u32` at its head copies the next B starts from the epoch
//! order at a device-side cursor into the fixed `batch.starts` buffer and
//! advances the cursor; the loss sum is zeroed inside the graph; and
//! `loss_log_append_f32` at its tail appends the step's loss to a device log
//! that the host reads back once for many steps ([`GpuEngine::drain_log`]).
//!
//! Whatever the graph bakes in is its [`GraphKey`]: the batch buffers'
//! addresses (they move when the buffers regrow), the epoch order's address
//! (it moves when a longer order is uploaded), the learning rate (an
//! argument of `rmsprop_update_f32`), the clip norm, and the sizes. A step
//! whose key differs from the captured one drops the graph; the next one
//! runs uncaptured (a warm-up that loads modules and lets a launcher set
//! itself up outside the capture) and the one after is captured again. The
//! body is whatever the launchers launch ([`GpuEngine::step_body`]), so a
//! change to which kernels the LSTM launcher uses needs nothing here; a
//! launcher that comes to own device buffers whose addresses can change
//! must add them to the key.

use super::{GpuEngine, LOG_CAPACITY};
use crate::error::{Error, Result};
use crate::gpu::device::{DevicePtr, GpuDevice, GraphId};

const U32: usize = std::mem::size_of::<u32>();

/// Everything a captured step depends on that can change during a run.
pub(super) type GraphKey = Vec<u64>;

/// Where the captured step stands.
#[derive(Debug, Default)]
pub(super) struct StepGraph {
    /// Off: every step is launched (`GpuEngine::set_graphs`).
    pub disabled: bool,
    /// The captured step and the key it was captured under.
    pub captured: Option<(GraphId, GraphKey)>,
    /// The key of the last uncaptured `Batch::Next` step: the next with this
    /// key is captured.
    pub warm: Option<GraphKey>,
    /// Why capturing was given up for good, if it was.
    pub failed: Option<String>,
    pub captures: u64,
    pub replays: u64,
}

/// How many steps ran as a replayed graph, and how often one was captured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GraphStats {
    /// Graphs captured so far (the first, then one per invalidation).
    pub captures: u64,
    /// Steps that ran as a replay of the captured graph.
    pub replays: u64,
    /// Why capturing was given up, if a capture failed (the steps then run
    /// uncaptured, exactly as with graphs off).
    pub failed: Option<String>,
}

/// Byte offsets in the step-state buffer `d_step`: the device cursor into
/// the epoch order, the loss log's count, then the log.
pub(super) const CURSOR_AT: usize = 0;
pub(super) const COUNT_AT: usize = U32;
pub(super) const LOG_AT: usize = 2 * U32;

impl<D: GpuDevice> GpuEngine<'_, D> {
    /// Turns graph capture of full `Batch::Next` steps on (the default, where
    /// the device can capture) or off; off drops the captured graph and
    /// every step is launched as an uncaptured chain of kernels.
    pub fn set_graphs(&mut self, on: bool) -> Result<()> {
        self.graph.disabled = !on;
        if !on {
            self.drop_step_graph()?;
            self.graph.warm = None;
        }
        Ok(())
    }

    /// Captures and replays so far.
    pub fn graph_stats(&self) -> GraphStats {
        GraphStats {
            captures: self.graph.captures,
            replays: self.graph.replays,
            failed: self.graph.failed.clone(),
        }
    }

    pub(super) fn drop_step_graph(&mut self) -> Result<()> {
        if let Some((id, _)) = self.graph.captured.take() {
            self.model.device.drop_graph(id)?;
        }
        Ok(())
    }

    /// Whether a full batch at the order's cursor may run as the graph.
    pub(super) fn graph_eligible(&self, batch: usize) -> bool {
        // A stack's workspace is allocated with the batch buffers (its
        // addresses are in the key), and its dropout masks read their step
        // from the device counter, which the step itself advances.
        !self.graph.disabled
            && self.graph.failed.is_none()
            && batch == self.batch_size
            && self.model.device.can_capture()
    }

    fn key(&self, batch: usize) -> GraphKey {
        let lr = self.optimizer.lr.to_bits();
        let clip = self.clip_norm.map_or(u64::MAX, |c| u64::from(c.to_bits()));
        let b = &self.model.batch;
        let mut key = vec![batch as u64, self.maxlen as u64, lr, clip, self.d_order.0];
        key.extend([b.batch as u64, b.seq_len as u64, self.d_step.0]);
        key.extend(b.all().iter().map(|p| p.0));
        key.extend(self.model.stack_ws.addresses().map(|p| p.0));
        key.push(self.model.dropout_step.0);
        key
    }

    /// The next full batch of the epoch, `batch` rows at order position
    /// `pos` (the host cursor already moved past it): replays the captured
    /// graph, capturing or warming up first when the key changed.
    pub(super) fn graph_step(&mut self, pos: usize, batch: usize) -> Result<()> {
        if self.dev_cursor != Some(pos) {
            let cursor = self.d_step.offset(CURSOR_AT);
            self.model.device.upload_u32(cursor, &[pos as u32])?;
        }
        self.dev_cursor = Some(pos + batch);
        let key = self.key(batch);
        if self.graph.captured.as_ref().is_some_and(|(_, k)| *k != key) {
            self.drop_step_graph()?;
        }
        if let Some((id, _)) = &self.graph.captured {
            self.graph.replays += 1;
            return self.model.device.replay(*id);
        }
        if self.graph.warm.as_ref() != Some(&key) {
            self.graph.warm = Some(key);
            return self.step_body(batch);
        }
        self.model.device.begin_capture()?;
        let body = self.step_body(batch);
        let ended = self.model.device.end_capture();
        match (body, ended) {
            (Ok(()), Ok(id)) => {
                self.graph.captured = Some((id, key));
                self.graph.captures += 1;
                self.graph.replays += 1;
                self.model.device.replay(id)
            }
            (body, ended) => {
                // Nothing recorded ran: give capturing up, say why, and run
                // this step (and all later ones) uncaptured.
                let why = match (body, ended) {
                    (Err(e), ended) => {
                        if let Ok(id) = ended {
                            self.model.device.drop_graph(id)?;
                        }
                        e.to_string()
                    }
                    (Ok(()), Err(e)) => e.to_string(),
                    (Ok(()), Ok(_)) => unreachable!("matched above"),
                };
                self.graph.failed = Some(why);
                self.step_body(batch)
            }
        }
    }

    /// The captured step: select the starts on the device, then the same
    /// launches an uncaptured step makes, then append the loss to the log.
    fn step_body(&mut self, batch: usize) -> Result<()> {
        let cursor = self.d_step.offset(CURSOR_AT);
        let starts = self.model.batch.starts;
        self.batch_kernels
            .select(&mut self.model.device, self.d_order, cursor, batch, starts)?;
        self.step_at(starts, batch)
    }

    /// Appends the step's loss sum (`batch.loss`) to the device log.
    pub(super) fn append_loss(&mut self) -> Result<()> {
        let (log, count) = (self.d_step.offset(LOG_AT), self.d_step.offset(COUNT_AT));
        self.batch_kernels.append_loss(
            &mut self.model.device,
            self.model.batch.loss,
            log,
            count,
            LOG_CAPACITY,
        )
    }

    /// Reads the losses of the logged steps back (one download, which also
    /// brings the device cursor along as a check) into `collected` and
    /// empties the log (a memset on the stream, no wait).
    pub(super) fn drain_log(&mut self) -> Result<()> {
        let n = self.logged;
        if n == 0 {
            return Ok(());
        }
        let mut words = vec![0u32; LOG_AT / U32 + n];
        self.model
            .device
            .download(self.d_step, bytemuck::cast_slice_mut(&mut words))?;
        let (cursor, count) = (words[CURSOR_AT / U32], words[COUNT_AT / U32]);
        let bug = |what: String| {
            Err(Error::Device(crate::gpu::DeviceError::BadArguments {
                kernel: "loss_log_append_f32",
                what,
            }))
        };
        if count as usize != n {
            return bug(format!(
                "the device logged {count} losses, {n} steps were queued"
            ));
        }
        if let Some(c) = self.dev_cursor
            && c != cursor as usize
        {
            return bug(format!(
                "the device cursor is {cursor}, the host expected {c}"
            ));
        }
        self.collected
            .extend(words[LOG_AT / U32..].iter().map(|&w| f32::from_bits(w)));
        self.logged = 0;
        self.model.device.zero(self.d_step.offset(COUNT_AT), U32)
    }

    /// A fresh step-state buffer: cursor 0, empty log.
    pub(super) fn alloc_step_state(dev: &mut D) -> Result<DevicePtr> {
        dev.alloc_zeroed(LOG_AT + LOG_CAPACITY * std::mem::size_of::<f32>())
    }
}
