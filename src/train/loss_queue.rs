//! Batches trained but not yet reported: the trainer queues steps with
//! [`Engine::queue_train`] and reads their losses back in one go
//! ([`Engine::collect_losses`]), so a device engine does not wait for the
//! host every step. An engine that computes the loss at once (the CPU)
//! answers it straight away and every batch is reported as it happens.

use crate::engine::Engine;
use crate::error::{Error, Result};

/// Most batches queued before their losses are read back and reported
/// (progress, `batches.jsonl`, the divergence guard, observers). A NaN is
/// therefore noticed up to this many batches after the step that made it;
/// the steps after it are undone by the same rollback (or end in the same
/// error) as without the delay, since a rollback restores the best epoch.
pub const LOSS_READBACK_EVERY: usize = 32;

/// One queued batch: its index in the epoch, its windows, and its loss when
/// the engine already had it.
struct Queued {
    batch: usize,
    rows: usize,
    loss: Option<f32>,
}

/// The batches trained since the last report, in order.
#[derive(Default)]
pub(super) struct LossQueue {
    items: Vec<Queued>,
}

impl LossQueue {
    /// Batch `batch` (0-based) of `rows` windows was queued; `loss` is what
    /// `queue_train` answered.
    pub fn push(&mut self, batch: usize, rows: usize, loss: Option<f32>) {
        self.items.push(Queued { batch, rows, loss });
    }

    /// Whether to report now: the engine answered at once (nothing to wait
    /// for), or [`LOSS_READBACK_EVERY`] batches are queued.
    pub fn due(&self) -> bool {
        self.items.last().is_some_and(|q| q.loss.is_some())
            || self.items.len() >= LOSS_READBACK_EVERY
    }

    /// Every queued batch as `(batch, rows, loss)`, in order, the deferred
    /// losses collected from `engine`; the queue is empty afterwards.
    pub fn drain(&mut self, engine: &mut dyn Engine) -> Result<Vec<(usize, usize, f32)>> {
        let deferred = self.items.iter().filter(|q| q.loss.is_none()).count();
        let collected = match deferred {
            0 => Vec::new(),
            _ => engine.collect_losses()?,
        };
        if collected.len() != deferred {
            self.items.clear();
            return Err(Error::InvalidArgument {
                name: "Engine::collect_losses",
                what: format!(
                    "returned {} losses for {deferred} queued batches",
                    collected.len()
                ),
            });
        }
        let mut collected = collected.into_iter();
        Ok(self
            .items
            .drain(..)
            .map(|q| {
                let loss = q.loss.or_else(|| collected.next());
                (q.batch, q.rows, loss.expect("counted above"))
            })
            .collect())
    }
}
