//! Hyper-parameters, with the Keras notebook's values as defaults.

use crate::error::{Error, Result};

/// Everything that shapes a training run (DESIGN §1).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Hyper {
    /// Characters per window.
    pub maxlen: usize,
    /// Distance between window starts.
    pub step: usize,
    /// LSTM units H.
    pub hidden: usize,
    /// Windows per batch (the last batch of an epoch may be smaller).
    pub batch: usize,
    /// RMSprop learning rate.
    pub lr: f32,
    /// RMSprop decay of the mean square.
    pub rho: f32,
    /// RMSprop epsilon, added to `sqrt(ms)`.
    pub eps: f32,
    /// Number of epochs.
    pub epochs: usize,
    /// Seed of every random stream (init, shuffling, sampling).
    pub seed: u64,
    /// Lower-case the text before building the vocabulary (Keras does).
    pub lowercase: bool,
    /// Global gradient-norm clipping (PyTorch's `clip_grad_norm_`, Keras'
    /// `global_clipnorm`): when the L2 norm of all five gradient tensors
    /// together exceeds this, every gradient is scaled by `clip / norm`
    /// before the RMSprop step. `None` (the notebook) never clips.
    /// Checkpoints written before this field existed load as `None`; a run
    /// without clipping writes no `clip_norm` key, so its checkpoint stays
    /// readable by older builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_norm: Option<f32>,
    /// Stacked LSTM layers N, each of `hidden` units; the head reads the
    /// top one's h. 1 is the notebook. Checkpoints written before this
    /// field existed load as 1; a one-layer run writes no `layers` key, so
    /// its checkpoint stays readable by older builds.
    #[serde(default = "one_layer", skip_serializing_if = "is_one_layer")]
    pub layers: usize,
    /// Dropout probability in [0, 1) on the sequence each LSTM layer but
    /// the top one passes up, in training only (never in evaluation,
    /// prediction or generation): `crate::ops::dropout`, the mask counter
    /// keyed by the run's optimizer step (docs/cli.md). With one layer there
    /// is nothing between layers and it changes nothing, as in PyTorch's
    /// `nn.LSTM(num_layers=1, dropout=p)`; the CLI says so. 0 (the notebook)
    /// writes no `dropout` key.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropout: f32,
}

/// The most hidden units a model may have: the orthogonal initialisation
/// and the CPU engine's buffers are sized and timed up to here (issue 17).
pub const MAX_HIDDEN: usize = 1024;

/// The most LSTM layers a model may have.
pub const MAX_LAYERS: usize = 16;

fn one_layer() -> usize {
    1
}

fn is_one_layer(n: &usize) -> bool {
    *n == 1
}

fn is_zero(p: &f32) -> bool {
    *p == 0.0
}

impl Default for Hyper {
    fn default() -> Self {
        Hyper {
            maxlen: 60,
            step: 3,
            hidden: 128,
            batch: 128,
            lr: 0.01,
            rho: 0.9,
            eps: 1e-7,
            epochs: 60,
            seed: 42,
            lowercase: true,
            clip_norm: None,
            layers: 1,
            dropout: 0.0,
        }
    }
}

impl Hyper {
    /// Checks every value is in range, naming the first that is not
    /// (`hyper.lr`; the command line shows its flag, `--lr`).
    pub fn validate(&self) -> Result<()> {
        fn bad(name: &'static str, what: String) -> Result<()> {
            Err(Error::InvalidArgument { name, what })
        }
        if self.maxlen == 0 || self.maxlen > 100_000 {
            return bad(
                "hyper.maxlen",
                format!("{} (must be 1..=100000)", self.maxlen),
            );
        }
        if self.step == 0 {
            return bad("hyper.step", "0 (must be at least 1)".into());
        }
        if self.hidden == 0 || self.hidden > MAX_HIDDEN {
            return bad(
                "hyper.hidden",
                format!(
                    "{} (must be 1..={MAX_HIDDEN}: {MAX_HIDDEN} units is the largest size \
                     supported)",
                    self.hidden
                ),
            );
        }
        if self.layers == 0 || self.layers > MAX_LAYERS {
            return bad(
                "hyper.layers",
                format!(
                    "{} (must be 1..={MAX_LAYERS} stacked LSTM layers; 1 is the notebook)",
                    self.layers
                ),
            );
        }
        if !(self.dropout.is_finite() && (0.0..1.0).contains(&self.dropout)) {
            return bad(
                "hyper.dropout",
                format!(
                    "{} (must be a probability in [0, 1): the fraction of units dropped \
                     between layers; 0 turns dropout off)",
                    self.dropout
                ),
            );
        }
        if self.batch == 0 || self.batch > 65_536 {
            return bad("hyper.batch", format!("{} (must be 1..=65536)", self.batch));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(
                "hyper.lr",
                format!("{} (must be a positive number)", self.lr),
            );
        }
        if !(self.rho.is_finite() && (0.0..1.0).contains(&self.rho)) {
            return bad("hyper.rho", format!("{} (must be in [0, 1))", self.rho));
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return bad(
                "hyper.eps",
                format!("{} (must be a positive number)", self.eps),
            );
        }
        if let Some(c) = self.clip_norm
            && !(c.is_finite() && c > 0.0)
        {
            return bad(
                "hyper.clip_norm",
                format!(
                    "{c} (must be a positive, finite gradient norm; leave it out to never clip)"
                ),
            );
        }
        if self.epochs == 0 {
            return bad("hyper.epochs", "0 (must be at least 1)".into());
        }
        Ok(())
    }
}
