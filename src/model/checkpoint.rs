//! Checkpoints as safetensors files.
//!
//! Tensors (all f32, little-endian, Keras layout and gate order i, f, c, o):
//! `lstm.kernel` [V,4H], `lstm.recurrent_kernel` [H,4H], `lstm.bias` [4H],
//! `dense.kernel` [H,V], `dense.bias` [V], for a stack of N layers also
//! `lstm_{k}.kernel` [H,4H], `lstm_{k}.recurrent_kernel` [H,4H] and
//! `lstm_{k}.bias` [4H] for k = 1 .. N-1 (N is `hyper.layers`, 1 when the
//! key is absent, as in every file written before stacks), and the RMSprop mean squares as
//! `rmsprop.<name>` with the same shapes (optional on load: weights imported
//! from another framework have none, and start from zeros). A stream-mode
//! run stopped inside an epoch also saves the state its next batch carries
//! in: `stream.h` and `stream.c`, [N*B, H] each ([`StreamState`]).
//!
//! Metadata (safetensors' string map): `format` = `charlstm-cuda`,
//! `format_version` = `1`, `vocab` (JSON array of one-character strings),
//! `maxlen`, `step`, `hidden`, `lowercase`, `hyper` (JSON), `state` (JSON),
//! `run` (JSON, [`RunRecord`]: the corpus and run settings; absent in files
//! written before it, which still load) and `checksum`: CRC32 of every tensor's bytes in file order, so a
//! bit flip in the data is refused instead of silently trained on.
//!
//! Saving writes a temporary file in the target directory, fsyncs it and
//! renames it over the target: a crash leaves the old file or the new one,
//! never half of one.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::{Hyper, ParamLayout, Params, RunRecord, TENSOR_NAMES};
use crate::error::{Error, Result};

const FORMAT: &str = "charlstm-cuda";
const FORMAT_VERSION: &str = "1";

/// Where a run stands, saved so that `--resume` continues it exactly.
///
/// Data order and every random draw are functions of `(seed, epoch, index)`
/// (Philox), so these counters are the whole RNG state.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainState {
    /// Epochs completed: a count, in the numbering every event, row and
    /// message uses (epochs are numbered from 1). After epoch N ends it is
    /// N, as [`EpochRow::epoch`](crate::EpochRow) is; while epoch N runs it
    /// is N - 1, and [`BatchEvent::epoch`](crate::BatchEvent) is N (see
    /// [`epoch_in_progress`](Self::epoch_in_progress)). Saved as `epoch`.
    #[serde(rename = "epoch")]
    pub epochs_done: usize,
    /// Batches completed of the epoch in progress (0 at an epoch boundary).
    pub batch: usize,
    /// Optimizer steps taken in the whole run.
    pub step: u64,
    /// Sum of per-batch mean losses weighted by batch size, for the epoch in progress.
    pub loss_sum: f64,
    /// Windows seen in the epoch in progress.
    pub seen: u64,
    /// Running-mean loss of each completed epoch.
    pub epoch_losses: Vec<f64>,
    /// Validation loss after each completed epoch; empty without a
    /// validation split. The best so far, and the epochs since it that
    /// patience counts, follow from it, so a resumed run stops (and keeps
    /// `best.safetensors`) where one never interrupted would. Saved only
    /// when there is one: a run without validation writes the state it
    /// always did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub val_losses: Vec<f64>,
    /// Stream mode in the middle of an epoch (`batch` > 0): the state the
    /// next batch carries in. Saved as the tensors `stream.h` and
    /// `stream.c`, not in the JSON; `None` at an epoch boundary (an epoch
    /// starts from zeros) and in window mode.
    #[serde(skip)]
    pub stream: Option<StreamState>,
}

/// The carried state of stream training: `h` and `c`, each [N, B, H]
/// row-major (N stacked layers, layer-major: layer l's stream b's unit j at
/// `(l * B + b) * H + j`; saved as [N*B, H]), f32 as the engine keeps it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamState {
    /// The hidden state of every stream.
    pub h: Vec<f32>,
    /// The cell state of every stream.
    pub c: Vec<f32>,
}

impl TrainState {
    /// The epoch the next batch belongs to, numbered from 1 as
    /// [`BatchEvent::epoch`](crate::BatchEvent) numbers it.
    pub fn epoch_in_progress(&self) -> usize {
        self.epochs_done + 1
    }

    /// The completed epoch (1-based) with the lowest validation loss, and
    /// that loss; the earliest of equal ones, as a later epoch must improve
    /// on it to count (Keras' `EarlyStopping` with `min_delta` 0).
    pub fn best_val(&self) -> Option<(usize, f64)> {
        let mut best: Option<(usize, f64)> = None;
        for (i, &v) in self.val_losses.iter().enumerate() {
            if best.is_none_or(|(_, b)| v < b) {
                best = Some((i + 1, v));
            }
        }
        best
    }

    /// Completed epochs since the best validation loss (0: the last epoch
    /// was the best); `None` without validation.
    pub fn epochs_since_best(&self) -> Option<usize> {
        self.best_val()
            .map(|(epoch, _)| self.val_losses.len() - epoch)
    }

    /// Checks the counters are ones a run can reach, so that continuing from
    /// them cannot overflow: an epoch has at most `u32::MAX` windows (see
    /// [`crate::Windows::new`]), hence as many batches, and Philox streams
    /// are indexed by a `u32` epoch. The error names the field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        const MAX: u64 = u32::MAX as u64;
        for (name, value, max) in [
            ("epoch", self.epochs_done as u64, MAX),
            ("batch", self.batch as u64, MAX),
            ("seen", self.seen, MAX),
            ("step", self.step, u64::MAX / 2),
        ] {
            if value > max {
                return Err(format!("`{name}` is {value}, but no run gets past {max}"));
            }
        }
        Ok(())
    }
}

/// Everything a checkpoint file holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The vocabulary symbols, index order.
    pub vocab: Vec<char>,
    /// Hyper-parameters of the run.
    pub hyper: Hyper,
    /// Model weights.
    pub params: Params<f32>,
    /// RMSprop mean squares.
    pub rmsprop: Params<f32>,
    /// Progress of the run.
    pub state: TrainState,
    /// The corpus and run settings, so that a resume needs no flags;
    /// `None` for imported weights and checkpoints written before it.
    pub run: Option<RunRecord>,
}

impl Checkpoint {
    /// Serialises to safetensors bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let (v, h, n) = (self.params.vocab, self.params.hidden, self.params.layers);
        if self.vocab.len() != v
            || self.rmsprop.layout() != self.params.layout()
            || self.hyper.layers != n
        {
            return Err(Error::InvalidArgument {
                name: "checkpoint",
                what: format!(
                    "vocab has {} symbols, params are V={v} H={h} N={n}, rmsprop V={} H={} N={}, \
                     hyper.layers {}",
                    self.vocab.len(),
                    self.rmsprop.vocab,
                    self.rmsprop.hidden,
                    self.rmsprop.layers,
                    self.hyper.layers
                ),
            });
        }
        let tensors = self.params.layout().named();
        let mut named: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(2 * tensors.len());
        for (prefix, p) in [("", &self.params), ("rmsprop.", &self.rmsprop)] {
            for t in &tensors {
                let data = &p.flat()[t.range.clone()];
                let bytes = data.iter().flat_map(|x| x.to_le_bytes()).collect();
                named.push((format!("{prefix}{}", t.name), t.shape.clone(), bytes));
            }
        }
        if let Some(st) = &self.state.stream {
            let b = st.h.len() / h.max(1);
            if st.h.len() != b * h || st.c.len() != st.h.len() || b == 0 {
                return Err(Error::InvalidArgument {
                    name: "checkpoint",
                    what: format!(
                        "stream state h holds {} values and c {}, not [B, H] with H = {h}",
                        st.h.len(),
                        st.c.len()
                    ),
                });
            }
            for (name, data) in [(STREAM_H, &st.h), (STREAM_C, &st.c)] {
                let bytes = data.iter().flat_map(|x| x.to_le_bytes()).collect();
                named.push((name.to_string(), vec![b, h], bytes));
            }
        }
        // safetensors lays tensors out sorted by name; hash in that order.
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let mut crc = crc32fast::Hasher::new();
        for (_, _, bytes) in &named {
            crc.update(bytes);
        }
        let mut meta = HashMap::new();
        meta.insert("format".into(), FORMAT.into());
        meta.insert("format_version".into(), FORMAT_VERSION.into());
        let symbols: Vec<String> = self.vocab.iter().map(|c| c.to_string()).collect();
        meta.insert("vocab".into(), json(&symbols)?);
        meta.insert("maxlen".into(), self.hyper.maxlen.to_string());
        meta.insert("step".into(), self.hyper.step.to_string());
        meta.insert("hidden".into(), self.hyper.hidden.to_string());
        meta.insert("lowercase".into(), self.hyper.lowercase.to_string());
        meta.insert("hyper".into(), json(&self.hyper)?);
        meta.insert("state".into(), json(&self.state)?);
        if let Some(run) = &self.run {
            meta.insert("run".into(), json(run)?);
        }
        meta.insert("checksum".into(), format!("{:08x}", crc.finalize()));
        let mut views = Vec::with_capacity(named.len());
        for (name, shape, bytes) in &named {
            let view = TensorView::new(Dtype::F32, shape.clone(), bytes).map_err(|e| {
                Error::InvalidArgument {
                    name: "checkpoint",
                    what: e.to_string(),
                }
            })?;
            views.push((name.clone(), view));
        }
        safetensors::serialize(views, Some(meta)).map_err(|e| Error::InvalidArgument {
            name: "checkpoint",
            what: e.to_string(),
        })
    }

    /// Parses safetensors bytes; `path` only names the file in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let bad = |what: String| Error::Checkpoint {
            path: path.to_path_buf(),
            what,
        };
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("unreadable safetensors header ({e})")))?;
        let tensors = SafeTensors::deserialize(bytes)
            .map_err(|e| bad(format!("unreadable safetensors data ({e})")))?;
        let empty = HashMap::new();
        let meta = header.metadata().as_ref().unwrap_or(&empty);
        let get = |key: &str| {
            meta.get(key)
                .ok_or_else(|| bad(format!("metadata `{key}` is missing")))
        };
        if get("format")? != FORMAT {
            return Err(bad(format!("metadata `format` is not `{FORMAT}`")));
        }
        let version = get("format_version")?;
        if version != FORMAT_VERSION {
            return Err(bad(format!(
                "format version {version} is not supported (this build reads {FORMAT_VERSION})"
            )));
        }
        let symbols: Vec<String> = serde_json::from_str(get("vocab")?).map_err(|e| {
            bad(format!(
                "metadata `vocab` is not a JSON array of strings ({e})"
            ))
        })?;
        let mut vocab = Vec::with_capacity(symbols.len());
        for s in &symbols {
            let mut it = s.chars();
            match (it.next(), it.next()) {
                (Some(c), None) => vocab.push(c),
                _ => return Err(bad(format!("vocab entry {s:?} is not one character"))),
            }
        }
        if vocab.is_empty() || vocab.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad("vocab is empty or not sorted and unique".into()));
        }
        let hyper: Hyper = serde_json::from_str(get("hyper")?)
            .map_err(|e| bad(format!("metadata `hyper` is invalid ({e})")))?;
        hyper
            .validate()
            .map_err(|e| bad(format!("metadata `hyper`: {e}")))?;
        let mut state: TrainState = serde_json::from_str(get("state")?)
            .map_err(|e| bad(format!("metadata `state` is invalid ({e})")))?;
        state
            .validate()
            .map_err(|e| bad(format!("metadata `state`: {e}")))?;
        let run: Option<RunRecord> = match meta.get("run") {
            Some(text) => Some(
                serde_json::from_str(text)
                    .map_err(|e| bad(format!("metadata `run` is invalid ({e})")))?,
            ),
            None => None,
        };
        for (key, value) in [
            ("maxlen", hyper.maxlen.to_string()),
            ("step", hyper.step.to_string()),
            ("hidden", hyper.hidden.to_string()),
            ("lowercase", hyper.lowercase.to_string()),
        ] {
            if get(key)? != &value {
                return Err(bad(format!("metadata `{key}` disagrees with `hyper`")));
            }
        }

        // Every tensor's dtype and shape is checked before anything is
        // allocated, so the sizes below are bounded by the file's length
        // (safetensors checked each tensor's bytes lie inside the file).
        let (v, h) = (vocab.len(), hyper.hidden);
        let layout = ParamLayout::stacked(v, h, hyper.layers);
        let named = layout.named();
        let load =
            |prefix: &str| -> Result<Params<f32>> {
                let mut views = Vec::with_capacity(named.len());
                for t in &named {
                    let (full, shape) = (format!("{prefix}{}", t.name), &t.shape);
                    let view = tensors.tensor(&full).map_err(|_| {
                    bad(if hyper.layers > 1 && !TENSOR_NAMES.contains(&t.name.as_str()) {
                        format!(
                            "tensor `{full}` is missing (metadata `hyper` says {} LSTM layers; \
                             layer k > 0 is `lstm_k.*`)",
                            hyper.layers
                        )
                    } else {
                        format!("tensor `{full}` is missing")
                    })
                })?;
                    if view.dtype() != Dtype::F32 {
                        return Err(bad(format!(
                            "tensor `{full}` is {:?}, not F32",
                            view.dtype()
                        )));
                    }
                    if view.shape() != shape.as_slice() {
                        return Err(bad(format!(
                            "tensor `{full}` has shape {:?}, expected {shape:?} for V={v}, H={h}",
                            view.shape()
                        )));
                    }
                    let want = shape.iter().product::<usize>() * 4;
                    if view.data().len() != want {
                        return Err(bad(format!(
                            "tensor `{full}` holds {} bytes, its shape needs {want}",
                            view.data().len()
                        )));
                    }
                    views.push(view);
                }
                let data = views
                    .iter()
                    .flat_map(|view| view.data().chunks_exact(4))
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                Ok(Params::from_flat(layout, data))
            };
        let params = load("")?;
        let has_rmsprop = tensors.names().iter().any(|n| n.starts_with("rmsprop."));
        let rmsprop = if has_rmsprop {
            load("rmsprop.")?
        } else {
            Params::zeros_for(layout)
        };
        state.stream = load_stream_state(&tensors, h).map_err(bad)?;
        let expected = get("checksum")?;
        let mut crc = crc32fast::Hasher::new();
        let mut names = tensors.names();
        names.sort();
        for name in names {
            if let Ok(view) = tensors.tensor(name) {
                crc.update(view.data());
            }
        }
        let actual = format!("{:08x}", crc.finalize());
        if &actual != expected {
            return Err(bad(format!(
                "checksum mismatch (stored {expected}, computed {actual}): the file is corrupt"
            )));
        }
        // Intact but unusable (a run that had diverged): refused here, where
        // every command and backend reads checkpoints, with one message.
        params.check_finite(|| path.display().to_string())?;
        Ok(Checkpoint {
            vocab,
            hyper,
            params,
            rmsprop,
            state,
            run,
        })
    }

    /// Writes the checkpoint atomically: temp file, fsync, rename.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = self.to_bytes()?;
        crate::io::write_atomically(path, |w| w.write_all(&bytes))
    }

    /// Reads and validates a checkpoint file, read once and only as far as
    /// its header says it goes (a pipe works, `/dev/zero` fails at once).
    /// Weights holding NaN or infinity are `Error::NonFiniteWeights`.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = crate::io::read_safetensors(path)?;
        // Its first bytes read as a safetensors header length of ~10^18:
        // say what the file is instead of "header too large".
        if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
            return Err(Error::NotACheckpoint {
                path: path.to_path_buf(),
            });
        }
        Self::from_bytes(&bytes, path)
    }
}

/// Names of the carried stream state's tensors, [B, H] each.
const STREAM_H: &str = "stream.h";
const STREAM_C: &str = "stream.c";

/// The stream state of a checkpoint: both tensors, F32 [B, H] of the same
/// B, or neither.
fn load_stream_state(
    tensors: &SafeTensors<'_>,
    h: usize,
) -> std::result::Result<Option<StreamState>, String> {
    let (hv, cv) = match (tensors.tensor(STREAM_H), tensors.tensor(STREAM_C)) {
        (Err(_), Err(_)) => return Ok(None),
        (Ok(hv), Ok(cv)) => (hv, cv),
        _ => return Err(format!("has only one of `{STREAM_H}` and `{STREAM_C}`")),
    };
    let shape = hv.shape().to_vec();
    for (name, view) in [(STREAM_H, &hv), (STREAM_C, &cv)] {
        let fits = view.dtype() == Dtype::F32
            && view.shape() == shape.as_slice()
            && shape.len() == 2
            && shape[0] >= 1
            && shape[1] == h
            && view.data().len() == shape[0] * h * 4;
        if !fits {
            return Err(format!(
                "tensor `{name}` is {:?} {:?}; the stream state is F32 [B, {h}], h and c alike",
                view.dtype(),
                view.shape()
            ));
        }
    }
    let floats = |data: &[u8]| {
        data.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    Ok(Some(StreamState {
        h: floats(hv.data()),
        c: floats(cv.data()),
    }))
}

fn json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::InvalidArgument {
        name: "checkpoint",
        what: e.to_string(),
    })
}
