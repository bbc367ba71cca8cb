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
//!
//! A stream step (`stream.rs`) is captured the same way, in a slot of its
//! own ([`StepKind::Stream`]), keyed by B and L on top of the window key
//! (the batch buffers it shares) and its own buffers' addresses. What
//! varies per stream batch stays outside the graph, in front of the
//! replay: the B starts are uploaded into the fixed `batch.starts` buffer,
//! and a batch that starts afresh (`carry` false) zeroes the carried state
//! with a memset; the graph always reads its initial state from that
//! buffer, so the carry decision is never baked in.

use super::{GpuEngine, LOG_CAPACITY};
use crate::error::{Error, Result};
use crate::gpu::device::{DevicePtr, GpuDevice, GraphId};

const U32: usize = std::mem::size_of::<u32>();

/// Everything a captured step depends on that can change during a run.
pub(super) type GraphKey = Vec<u64>;

/// Where one kind of captured step stands.
#[derive(Debug, Default)]
pub(super) struct Slot {
    /// The captured step and the key it was captured under.
    pub captured: Option<(GraphId, GraphKey)>,
    /// The key of the last uncaptured step of this kind: the next with
    /// this key is captured.
    pub warm: Option<GraphKey>,
    /// Why capturing this kind was given up for good, if it was.
    pub failed: Option<String>,
    pub captures: u64,
    pub replays: u64,
}

/// The captured steps: a full window step ([`Batch::Next`](crate::engine::Batch::Next))
/// and a stream step (`stream.rs`), each in its own slot, so that a run
/// mixing them does not recapture at every switch.
#[derive(Debug, Default)]
pub(super) struct StepGraph {
    /// Off: every step is launched (`GpuEngine::set_graphs`).
    pub disabled: bool,
    pub window: Slot,
    pub stream: Slot,
}

/// Which slot of [`StepGraph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum StepKind {
    Window,
    Stream,
}

/// How many steps ran as a replayed graph, and how often one was captured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GraphStats {
    /// Window-step graphs captured so far (the first, then one per invalidation).
    pub captures: u64,
    /// Window steps that ran as a replay of the captured graph.
    pub replays: u64,
    /// Stream-step graphs captured so far (one per B and L, and per invalidation).
    pub stream_captures: u64,
    /// Stream steps that ran as a replay of the captured graph.
    pub stream_replays: u64,
    /// Why capturing was given up, if a capture failed (the steps of that
    /// kind then run uncaptured, exactly as with graphs off): the window
    /// step's reason, else the stream step's.
    pub failed: Option<String>,
}

/// Byte offsets in the step-state buffer `d_step`: the device cursor into
/// the epoch order, the loss log's count, then the log.
pub(super) const CURSOR_AT: usize = 0;
pub(super) const COUNT_AT: usize = U32;
pub(super) const LOG_AT: usize = 2 * U32;

impl<D: GpuDevice> GpuEngine<'_, D> {
    /// Turns graph capture of full `Batch::Next` steps and of stream steps
    /// on (the default, where the device can capture) or off; off drops the
    /// captured graphs and every step is launched as an uncaptured chain of
    /// kernels.
    pub fn set_graphs(&mut self, on: bool) -> Result<()> {
        self.graph.disabled = !on;
        if !on {
            self.drop_step_graph()?;
            self.graph.window.warm = None;
            self.graph.stream.warm = None;
        }
        Ok(())
    }

    /// Captures and replays so far.
    pub fn graph_stats(&self) -> GraphStats {
        let (w, s) = (&self.graph.window, &self.graph.stream);
        GraphStats {
            captures: w.captures,
            replays: w.replays,
            stream_captures: s.captures,
            stream_replays: s.replays,
            failed: w.failed.clone().or_else(|| s.failed.clone()),
        }
    }

    fn slot(&mut self, kind: StepKind) -> &mut Slot {
        match kind {
            StepKind::Window => &mut self.graph.window,
            StepKind::Stream => &mut self.graph.stream,
        }
    }

    fn drop_graph_of(&mut self, kind: StepKind) -> Result<()> {
        if let Some((id, _)) = self.slot(kind).captured.take() {
            self.model.device.drop_graph(id)?;
        }
        Ok(())
    }

    /// Drops every captured graph.
    pub(super) fn drop_step_graph(&mut self) -> Result<()> {
        self.drop_graph_of(StepKind::Window)?;
        self.drop_graph_of(StepKind::Stream)
    }

    /// Whether a step of `kind` may run as a graph at all.
    pub(super) fn graphs_on(&self, kind: StepKind) -> bool {
        let slot = match kind {
            StepKind::Window => &self.graph.window,
            StepKind::Stream => &self.graph.stream,
        };
        !self.graph.disabled && slot.failed.is_none() && self.model.device.can_capture()
    }

    /// Whether a full batch at the order's cursor may run as the graph.
    pub(super) fn graph_eligible(&self, batch: usize) -> bool {
        // A stack's workspace is allocated with the batch buffers (its
        // addresses are in the key), and its dropout masks read their step
        // from the device counter, which the step itself advances.
        self.graphs_on(StepKind::Window) && batch == self.batch_size
    }

    /// What a captured window step of `batch` rows bakes in; a stream
    /// step's key starts with it (`stream.rs`).
    pub(super) fn key(&self, batch: usize) -> GraphKey {
        let lr = self.optimizer.lr.to_bits();
        let clip = self.clip_norm.map_or(u64::MAX, |c| u64::from(c.to_bits()));
        let b = &self.model.batch;
        let mut key = vec![batch as u64, self.maxlen as u64, lr, clip, self.d_order.0];
        key.extend([b.batch as u64, b.seq_len as u64, self.d_step.0]);
        key.extend(b.all().iter().map(|p| p.0));
        key.extend(self.model.stack_ws.addresses().map(|p| p.0));
        key.push(self.model.dropout_step.0);
        key.push(self.model.lstm.path as u64);
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
        self.run_graphed(StepKind::Window, key, |e| e.step_body(batch))
    }

    /// `body` (launches only, everything that varies per step in device
    /// memory) as the captured graph of `kind`: replays the graph captured
    /// under `key`; a new key drops the old graph and runs `body` uncaptured
    /// once (the warm-up), the next step with it is captured and replayed.
    /// A failed capture gives capturing of `kind` up, says why
    /// ([`GraphStats::failed`]) and runs `body` uncaptured, now and later.
    pub(super) fn run_graphed(
        &mut self,
        kind: StepKind,
        key: GraphKey,
        body: impl Fn(&mut Self) -> Result<()>,
    ) -> Result<()> {
        if self
            .slot(kind)
            .captured
            .as_ref()
            .is_some_and(|(_, k)| *k != key)
        {
            self.drop_graph_of(kind)?;
        }
        if let Some((id, _)) = self.slot(kind).captured {
            self.slot(kind).replays += 1;
            return self.model.device.replay(id);
        }
        if self.slot(kind).warm.as_ref() != Some(&key) {
            self.slot(kind).warm = Some(key);
            return body(self);
        }
        self.model.device.begin_capture()?;
        let recorded = body(self);
        let ended = self.model.device.end_capture();
        match (recorded, ended) {
            (Ok(()), Ok(id)) => {
                let slot = self.slot(kind);
                slot.captured = Some((id, key));
                slot.captures += 1;
                slot.replays += 1;
                self.model.device.replay(id)
            }
            (recorded, ended) => {
                // Nothing recorded ran: give capturing up, say why, and run
                // this step (and all later ones) uncaptured.
                let why = match (recorded, ended) {
                    (Err(e), ended) => {
                        if let Ok(id) = ended {
                            self.model.device.drop_graph(id)?;
                        }
                        e.to_string()
                    }
                    (Ok(()), Err(e)) => e.to_string(),
                    (Ok(()), Ok(_)) => unreachable!("matched above"),
                };
                self.slot(kind).failed = Some(why);
                body(self)
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
