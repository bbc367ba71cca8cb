//! [`TrainMode`]: what a training batch is — the notebook's windows, or
//! char-rnn's streams (truncated BPTT, [`crate::corpus::Streams`]).

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// How a run trains. Saved in the checkpoint's run record: a resume goes
/// on in the mode the run started in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum TrainMode {
    /// Shuffled windows of `maxlen` characters, one target each: the notebook.
    #[default]
    Window,
    /// B contiguous streams of the training text, each batch the next
    /// `seq_len` characters of every stream, a target at every step and
    /// the state carried from batch to batch within an epoch (reset to zero
    /// at each epoch's start, when the streams' offset changes).
    Stream {
        /// L, the steps of every batch (the truncation of the BPTT).
        seq_len: usize,
    },
}

impl TrainMode {
    /// Whether this is the notebook's window mode (what a run record
    /// leaves unsaid, so a window run's checkpoint stays as it was).
    pub fn is_window(&self) -> bool {
        *self == TrainMode::Window
    }

    /// `--mode VALUE` with `--seq-len`: `window` (no sequence length) or
    /// `stream` (`seq_len`, default 60).
    pub fn parse(mode: &str, seq_len: Option<usize>) -> Result<Self> {
        match (mode.parse::<ModeName>()?, seq_len) {
            (ModeName::Window, None) => Ok(TrainMode::Window),
            (ModeName::Window, Some(l)) => Err(Error::Conflict {
                what: format!(
                    "--seq-len {l} is the length of a stream batch, but the run trains on \
                     windows (--mode window, the default)"
                ),
                fix: format!("add --mode stream, or drop --seq-len {l}"),
            }),
            (ModeName::Stream, l) => Ok(TrainMode::Stream {
                seq_len: l.unwrap_or(DEFAULT_SEQ_LEN),
            }),
        }
    }
}

/// L when `--mode stream` is given without `--seq-len`: the notebook's
/// window length, so the two modes unroll as far.
pub const DEFAULT_SEQ_LEN: usize = 60;

/// The names `--mode` takes.
enum ModeName {
    Window,
    Stream,
}

impl FromStr for ModeName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "window" => Ok(ModeName::Window),
            "stream" => Ok(ModeName::Stream),
            other => Err(Error::InvalidArgument {
                name: "config.mode",
                what: format!("{other:?} (expected window or stream)"),
            }),
        }
    }
}

impl fmt::Display for TrainMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrainMode::Window => f.write_str("window"),
            TrainMode::Stream { seq_len } => write!(f, "stream (--seq-len {seq_len})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        assert_eq!(TrainMode::parse("window", None).unwrap(), TrainMode::Window);
        assert_eq!(
            TrainMode::parse("stream", Some(32)).unwrap(),
            TrainMode::Stream { seq_len: 32 }
        );
        assert_eq!(
            TrainMode::parse("stream", None).unwrap(),
            TrainMode::Stream { seq_len: 60 }
        );
        let e = TrainMode::parse("streams", None).unwrap_err().to_string();
        assert!(e.contains("expected window or stream"), "{e}");
        let e = TrainMode::parse("window", Some(5)).unwrap_err().to_string();
        assert!(e.contains("--seq-len 5"), "{e}");
    }

    #[test]
    fn saved_as_tagged_json() {
        let s = serde_json::to_string(&TrainMode::Stream { seq_len: 7 }).unwrap();
        assert_eq!(s, r#"{"kind":"stream","seq_len":7}"#);
        let back: TrainMode = serde_json::from_str(&s).unwrap();
        assert_eq!(back, TrainMode::Stream { seq_len: 7 });
    }
}
