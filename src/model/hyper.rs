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
        if self.hidden == 0 || self.hidden > 4096 {
            return bad(
                "hyper.hidden",
                format!("{} (must be 1..=4096)", self.hidden),
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
