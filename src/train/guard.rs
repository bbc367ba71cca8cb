//! The divergence guard: what the notebook lacked when its run blew up at
//! epoch 56 and printed garbage for the rest.
//!
//! A run has diverged when a batch's loss is NaN or infinite, or when an
//! epoch's mean loss exceeds `factor` times the best epoch's so far and
//! that by more than [`MIN_LOSS_JUMP`] (a model that has learned its text by
//! heart can double a near-zero loss from one epoch to the next at the
//! notebook's rate, 0.017 to 0.041 nats a character on the text of
//! tests/interrupt.rs, which is no blow-up). Then,
//! by the user's choice, the run either stops with
//! [`Error::Diverged`](crate::Error::Diverged) (the checkpoints of the good
//! epochs are kept; the diverged epoch's are never written), or rolls back:
//! the weights, optimizer state and progress of the best epoch are restored,
//! the learning rate is halved (the same data with the same rate would
//! diverge again, bit for bit), and training goes on from there, at most
//! `max_rollbacks` times.
//!
//! With a validation split the epoch's validation loss is what is watched
//! in place of its training loss, and the best epoch is the one with the
//! lowest validation loss (the one `best.safetensors` holds): training
//! loss falls while a model overfits, validation loss is what blows up
//! first and what a rollback should return to.

use crate::model::{Params, TrainState};

/// What to do when the run diverges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDivergence {
    /// End the run with an error; the good checkpoints stay.
    Stop,
    /// Go back to the best epoch with half the learning rate.
    Rollback,
}

impl std::str::FromStr for OnDivergence {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "stop" => Ok(OnDivergence::Stop),
            "rollback" => Ok(OnDivergence::Rollback),
            other => Err(crate::Error::InvalidArgument {
                name: "divergence.action",
                what: format!("{other:?} (expected stop or rollback)"),
            }),
        }
    }
}

/// When a run counts as diverged, and what happens then.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DivergenceGuard {
    /// An epoch loss above `factor` x the best epoch loss, and more than
    /// [`MIN_LOSS_JUMP`] above it, is divergence (`f64::INFINITY`: only NaN/inf
    /// losses count).
    pub factor: f64,
    /// Stop or roll back.
    pub action: OnDivergence,
    /// Rollbacks allowed before the run stops anyway.
    pub max_rollbacks: usize,
}

impl Default for DivergenceGuard {
    /// Stop when an epoch's loss doubles the best one, or on NaN/inf.
    fn default() -> Self {
        DivergenceGuard {
            factor: 2.0,
            action: OnDivergence::Stop,
            max_rollbacks: 3,
        }
    }
}

/// Why the guard fired.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub enum Divergence {
    /// A batch's loss was NaN or infinite.
    NonFinite {
        /// Epoch, 1-based.
        epoch: usize,
        /// Batch within the epoch, 1-based.
        batch: usize,
        /// The loss.
        value: f32,
    },
    /// An epoch's loss jumped above `factor` x the best epoch's (before
    /// any epoch: x ln V, a uniform guess's); with a validation split the
    /// validation loss, which is also what "best" is judged on.
    Jump {
        /// The epoch that jumped, 1-based.
        epoch: usize,
        /// Its loss.
        loss: f64,
        /// The best epoch so far (0: the start of the run).
        best_epoch: usize,
        /// The best epoch's loss (at the start of the run: ln V).
        best_loss: f64,
        /// Whether the losses are validation losses.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        validation: bool,
    },
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Divergence::NonFinite {
                epoch,
                batch,
                value,
            } => write!(f, "loss {value} at epoch {epoch}, batch {batch}"),
            Divergence::Jump {
                epoch,
                loss,
                best_epoch: 0,
                best_loss,
                validation,
            } => write!(
                f,
                "epoch {epoch} {} {loss:.4} is more than the allowed factor above {best_loss:.4}, \
                 the loss of a uniform guess (ln V) that an untrained model starts near",
                loss_name(*validation)
            ),
            Divergence::Jump {
                epoch,
                loss,
                best_epoch,
                best_loss,
                validation,
            } => write!(
                f,
                "epoch {epoch} {} {loss:.4} is more than the allowed factor above epoch {best_epoch}'s {best_loss:.4}",
                loss_name(*validation)
            ),
        }
    }
}

fn loss_name(validation: bool) -> &'static str {
    if validation {
        "validation loss"
    } else {
        "loss"
    }
}

/// The best epoch so far: what a rollback restores.
#[derive(Clone, Debug)]
pub(crate) struct Best {
    /// The loss it is best by: the validation loss with a split.
    pub loss: f64,
    pub params: Params<f32>,
    pub rmsprop: Params<f32>,
    pub state: TrainState,
}

/// The least rise above the best epoch's loss, in nats a character, that
/// counts as a jump whatever the factor. A blow-up under RMSprop climbs
/// towards ln V (~4 nats at V = 57) within an epoch or two; a rise of
/// under a tenth of a nat is a near-zero loss moving.
pub const MIN_LOSS_JUMP: f64 = 0.1;

impl DivergenceGuard {
    /// Whether an epoch loss of `loss` has diverged from `best` (see
    /// [`reference_loss`]).
    pub(crate) fn jumped(&self, loss: f64, reference: f64) -> bool {
        !loss.is_finite() || (loss > self.factor * reference && loss - reference > MIN_LOSS_JUMP)
    }
}

/// What an epoch's loss is compared with: the best epoch's, or before any
/// epoch ln V, the cross-entropy of a uniform guess over the V symbols,
/// which a Keras-initialised model starts near. Without it the first epoch
/// had nothing to jump from, and a run that blew up at once (an epoch loss
/// of 3.9e31 at a huge rate) was saved and kept as the best checkpoint.
pub(crate) fn reference_loss(best: &Best, vocab: usize) -> f64 {
    if best.loss.is_finite() {
        best.loss
    } else {
        (vocab.max(2) as f64).ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jump_is_both_above_the_factor_and_above_the_least_rise() {
        let g = DivergenceGuard::default();
        // Doubled, but by 0.024 nats: a memorised text's loss moving.
        assert!(!g.jumped(0.041, 0.017));
        // Doubled and by more than MIN_LOSS_JUMP, at a low loss and a usual one.
        assert!(g.jumped(0.25, 0.1));
        assert!(g.jumped(2.9, 1.4));
        // Up by far more than MIN_LOSS_JUMP, but under the factor.
        assert!(!g.jumped(2.7, 1.4));
        // From ln V before any epoch, and non-finite losses at any level.
        assert!(g.jumped(8.5, (57f64).ln()));
        assert!(g.jumped(f64::NAN, 0.01) && g.jumped(f64::INFINITY, 0.01));
        let only_nan = DivergenceGuard {
            factor: f64::INFINITY,
            ..g
        };
        assert!(!only_nan.jumped(1e30, 0.5) && only_nan.jumped(f64::NAN, 0.5));
    }
}
