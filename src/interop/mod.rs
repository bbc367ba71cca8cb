//! Weights to and from Keras and PyTorch.
//!
//! | format | file | tensors |
//! | --- | --- | --- |
//! | [`Format::Keras`] | `.npz` (numpy) | `lstm.kernel` `[V, 4H]`, `lstm.recurrent_kernel` `[H, 4H]`, `lstm.bias` `[4H]`, `dense.kernel` `[H, V]`, `dense.bias` `[V]`, in `model.set_weights()` order |
//! | [`Format::Pytorch`] | `.safetensors` | `lstm.weight_ih_l0` `[4H, V]`, `lstm.weight_hh_l0` `[4H, H]`, `lstm.bias_ih_l0` `[4H]`, `lstm.bias_hh_l0` `[4H]`, `fc.weight` `[V, H]`, `fc.bias` `[V]` |
//!
//! Both carry the vocabulary and window length with the weights (npz arrays
//! `vocab` `<U1` `[V]`, `maxlen`, `lowercase`; safetensors metadata `vocab`,
//! `maxlen`, `lowercase`), so an export imports back on its own. A file
//! written by Keras or PyTorch has none of that: [`ImportOptions`] supplies it.
//!
//! Gate order needs no shuffling: Keras' i, f, c, o is PyTorch's i, f, g, o.
//! PyTorch's layout is Keras' transposed, and it has two LSTM biases that
//! are always added; export puts Keras' bias in `bias_ih_l0` and zeros in
//! `bias_hh_l0`, import adds them.
//!
//! ```
//! use charlstm_cuda::{Format, Model, Vocab};
//! use charlstm_cuda::interop::{ImportOptions, export, import};
//! use charlstm_cuda::model::init_params;
//!
//! let vocab = Vocab::from_text("hello world");
//! let model = Model::new(init_params(vocab.len(), 8, 3), vocab, 20, true)?;
//! let dir = tempfile::tempdir()?;
//! for (format, file) in [(Format::Keras, "m.npz"), (Format::Pytorch, "m.safetensors")] {
//!     let path = dir.path().join(file);
//!     export(&model, format, &path)?;
//!     assert_eq!(import(&path, format, &ImportOptions::default())?, model);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod keras;
mod npz;
mod pytorch;

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::corpus::Vocab;
use crate::error::{Error, Result};
use crate::inference::Model;
use crate::model::{Hyper, Params};

/// A framework's weight file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Keras 3: an `.npz` whose arrays go to `model.set_weights()` of
    /// `Sequential([Input((maxlen, V)), LSTM(H), Dense(V, activation="softmax")])`.
    Keras,
    /// PyTorch: a `.safetensors` state dict of `nn.LSTM(V, H, batch_first=True)`
    /// as `lstm` and `nn.Linear(H, V)` as `fc`.
    Pytorch,
}

impl Format {
    /// The name users type after `--format`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Keras => "keras",
            Format::Pytorch => "pytorch",
        }
    }

    /// The format a file name implies: `.npz` is Keras, `.safetensors` PyTorch.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "npz" => Some(Format::Keras),
            "safetensors" => Some(Format::Pytorch),
            _ => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "keras" => Ok(Format::Keras),
            "pytorch" | "torch" => Ok(Format::Pytorch),
            other => Err(Error::InvalidArgument {
                name: "format",
                what: format!("{other:?} (expected keras or pytorch)"),
            }),
        }
    }
}

/// What an import takes from the caller rather than the file: needed for
/// files that Keras or PyTorch wrote, optional for our own exports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImportOptions {
    /// The vocabulary (class index = position). Required when the file has
    /// none; when it has one, the two must agree.
    pub vocab: Option<Vocab>,
    /// Window length; wins over the file's. Default: the file's, else 60.
    pub maxlen: Option<usize>,
    /// Whether input text is lower-cased; wins over the file's. Default:
    /// the file's, else true (Keras' notebook lower-cases).
    pub lowercase: Option<bool>,
}

/// Writes `model` as `format` (atomically: temp file, fsync, rename).
pub fn export(model: &Model, format: Format, path: &Path) -> Result<()> {
    let bytes = to_bytes(model, format).map_err(|what| Error::Interop {
        path: path.to_path_buf(),
        format: format.name(),
        what,
    })?;
    crate::io::write_atomically(path, |w| w.write_all(&bytes))
}

/// Reads a `format` file into a [`Model`]; see [`ImportOptions`] for what
/// the file may lack.
///
/// The file is read once: a safetensors file as far as its header says it
/// goes, an `.npz` up to [`crate::io::WEIGHTS_LIMIT`] and only while it
/// starts like a zip archive (so `/dev/zero` fails at its first chunk).
pub fn import(path: &Path, format: Format, options: &ImportOptions) -> Result<Model> {
    let bad = |what: String| Error::Interop {
        path: path.to_path_buf(),
        format: format.name(),
        what,
    };
    let bytes = match format {
        Format::Pytorch => crate::io::read_safetensors(path)?,
        Format::Keras => {
            let limit = crate::io::Limit {
                bytes: crate::io::WEIGHTS_LIMIT,
                what: "an .npz weight file",
                fix: "pass an .npz of at most 16 GiB (larger models do not fit the kernels)",
            };
            // Past a first chunk that does not start like a zip, the parser
            // has what it needs to say what the file is instead.
            crate::io::Input::open(path)?.read_to_end(limit, |b| {
                let n = b.len().min(4);
                let zip = [&b"PK\x03\x04"[..n], &b"PK\x05\x06"[..n]].contains(&&b[..n]);
                Ok((!zip).then_some(b.len() as u64))
            })?
        }
    };
    from_bytes(&bytes, format, options).map_err(bad)
}

/// The file `export` writes, as bytes.
pub fn to_bytes(model: &Model, format: Format) -> std::result::Result<Vec<u8>, String> {
    match format {
        Format::Keras => keras::to_bytes(model),
        Format::Pytorch => pytorch::to_bytes(model),
    }
}

/// [`import`] from bytes; the error says what is wrong with the content.
pub fn from_bytes(
    bytes: &[u8],
    format: Format,
    options: &ImportOptions,
) -> std::result::Result<Model, String> {
    let found = match format {
        Format::Keras => keras::from_bytes(bytes)?,
        Format::Pytorch => pytorch::from_bytes(bytes)?,
    };
    found.into_model(options)
}

/// What a file held: the weights, and whatever it said about the model.
struct Found {
    params: Params<f32>,
    vocab: Option<Vec<char>>,
    maxlen: Option<usize>,
    lowercase: Option<bool>,
}

impl Found {
    fn into_model(self, options: &ImportOptions) -> std::result::Result<Model, String> {
        let file_vocab = self
            .vocab
            .map(Vocab::from_chars)
            .transpose()
            .map_err(|e| format!("its vocabulary: {e}"))?;
        let vocab = match (file_vocab, &options.vocab) {
            (Some(f), Some(o)) if &f != o => {
                return Err(format!(
                    "its vocabulary ({} symbols) differs from the one given ({} symbols)",
                    f.len(),
                    o.len()
                ));
            }
            (Some(f), _) => f,
            (None, Some(o)) => o.clone(),
            (None, None) => {
                return Err(
                    "it does not say its vocabulary: pass one (--vocab-from a checkpoint, \
                     a prepared corpus or the training text)"
                        .into(),
                );
            }
        };
        if vocab.len() != self.params.vocab {
            return Err(format!(
                "the weights are for V={} symbols, the vocabulary has {}",
                self.params.vocab,
                vocab.len()
            ));
        }
        let defaults = Hyper::default();
        let maxlen = options.maxlen.or(self.maxlen).unwrap_or(defaults.maxlen);
        let lowercase = options
            .lowercase
            .or(self.lowercase)
            .unwrap_or(defaults.lowercase);
        Model::new(self.params, vocab, maxlen, lowercase).map_err(|e| e.to_string())
    }
}

/// Row-major transpose of a [rows, cols] matrix.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols)
        .flat_map(|j| (0..rows).map(move |i| m[i * cols + j]))
        .collect()
}

/// V and H from `lstm.kernel`'s shape [V, 4H] (or its transpose), checked.
fn dims(what: &str, v: usize, h4: usize) -> std::result::Result<(usize, usize), String> {
    if v == 0 || h4 == 0 || !h4.is_multiple_of(4) {
        return Err(format!(
            "{what} has shape implying V={v}, 4H={h4}: 4H must be a positive multiple of 4"
        ));
    }
    Ok((v, h4 / 4))
}

/// Checks a tensor's shape against the one V and H imply.
fn expect_shape(name: &str, got: &[usize], want: &[usize]) -> std::result::Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("`{name}` has shape {got:?}, expected {want:?}"))
    }
}

/// `body` as `N`-byte words (its length is a multiple of `N`).
fn words<const N: usize>(body: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    body.chunks_exact(N).map(|w| w.try_into().expect("N bytes"))
}
