//! [`Model`]: a trained model for inference — weights, vocabulary and window
//! length, no optimizer state, no corpus.
//!
//! It is what another crate keeps after training (or loads from a checkpoint,
//! or imports from Keras / PyTorch) to predict and generate. `predict` and
//! `generate` run on the CPU reference (one window of the notebook is a few
//! hundred microseconds there, and a `Model` needs no device to exist);
//! `predict_on` and `generate_on` take a backend, opened through
//! [`crate::device`] like every other engine, with the same policy.

use std::collections::BTreeMap;
use std::path::Path;

use crate::corpus::{Vocab, normalize};
use crate::cpu::{CpuModel, check_sequences, predict};
use crate::engine::Backend;
use crate::error::{Error, Result};
use crate::model::{Checkpoint, Hyper, Params, TrainState};
use crate::sample::{GenMode, Generator, Strategy};

/// Weights, vocabulary and hyper-parameters of a trained model.
///
/// ```
/// use charlstm_cuda::{Backend, GenMode, Model, Strategy, Vocab};
/// use charlstm_cuda::model::init_params;
///
/// let vocab = Vocab::from_text("abc ");
/// // Untrained (Keras initialisation), H = 8, windows of 10 characters.
/// let model = Model::new(init_params(vocab.len(), 8, 1), vocab, 10, true)?;
///
/// // Next-character distributions for a batch of windows.
/// let probs = model.predict(&["abc", "cab "])?;
/// assert_eq!(probs.len(), 2);
/// assert_eq!(probs[0].len(), model.vocab().len());
/// assert!((probs[1].iter().sum::<f32>() - 1.0).abs() < 1e-5);
///
/// // Text after a seed, as the notebook samples it.
/// let text = model.generate("ab", 20, Strategy::Temperature(0.5), 7)?;
/// assert_eq!(text.chars().count(), 20);
///
/// // Stateful (char-rnn's way: the seed once, then one step a character),
/// // two temperatures at once, on a chosen backend.
/// let both = model.generate_on(
///     Backend::Cpu,
///     GenMode::Stateful,
///     "ab",
///     20,
///     &[Strategy::Temperature(0.5), Strategy::Temperature(1.0)],
///     7,
/// )?;
/// assert_eq!(both.len(), 2);
///
/// // Saved and loaded as a checkpoint.
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("model.safetensors");
/// model.save(&path)?;
/// assert_eq!(Model::load(&path)?, model);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Two models are equal when they compute the same thing: the same
/// vocabulary, window length, lower-casing and weights (shapes and values).
/// The rest of [`hyper`](Self::hyper) is the record of the run that trained
/// it (epochs, rate, seed), which an export to Keras or PyTorch does not
/// carry, so a round trip through either compares equal.
///
/// `{:?}` shows the shapes, the hyper-parameters and a CRC32 of the
/// weights, not the weights themselves (about 100 k numbers for the
/// notebook's model); [`params`](Self::params) has them.
#[derive(Clone)]
pub struct Model {
    params: Params<f32>,
    vocab: Vocab,
    hyper: Hyper,
}

impl PartialEq for Model {
    fn eq(&self, other: &Self) -> bool {
        self.vocab == other.vocab
            && self.hyper.maxlen == other.hyper.maxlen
            && self.hyper.lowercase == other.hyper.lowercase
            && self.params == other.params
    }
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut crc = crc32fast::Hasher::new();
        // Every layer's tensors, in layout order (one layer: the five).
        for x in self.params.flat() {
            crc.update(&x.to_le_bytes());
        }
        f.debug_struct("Model")
            .field("vocab", &format_args!("{} symbols", self.vocab.len()))
            .field("hidden", &self.params.hidden)
            .field("parameters", &self.params.len())
            .field("weights_crc32", &format_args!("{:08x}", crc.finalize()))
            .field("hyper", &self.hyper)
            .finish()
    }
}

impl Model {
    /// A model from its weights; `maxlen` is the window length it was
    /// trained on (generation slides a window of that many characters), and
    /// `lowercase` whether its text was lower-cased (input is then too).
    /// The other hyper-parameters are the notebook's defaults.
    ///
    /// Errors when the weights' shapes do not fit `vocab` (V) and their own
    /// H, or when one is NaN or infinite (`Error::NonFiniteWeights`).
    pub fn new(params: Params<f32>, vocab: Vocab, maxlen: usize, lowercase: bool) -> Result<Self> {
        let hyper = Hyper {
            maxlen,
            hidden: params.hidden,
            layers: params.layers,
            lowercase,
            ..Hyper::default()
        };
        Self::with_hyper(params, vocab, hyper)
    }

    /// A model with all of its run's hyper-parameters (kept when saved, so a
    /// run started from the checkpoint uses them).
    pub fn with_hyper(params: Params<f32>, vocab: Vocab, hyper: Hyper) -> Result<Self> {
        hyper.validate()?;
        check_shapes(&params, vocab.len(), hyper.hidden, hyper.layers)?;
        params.check_finite(|| "the model".into())?;
        Ok(Model {
            params,
            vocab,
            hyper,
        })
    }

    /// The weights of a checkpoint (its optimizer state and progress are dropped).
    pub fn from_checkpoint(checkpoint: Checkpoint) -> Result<Self> {
        let vocab = Vocab::from_chars(checkpoint.vocab)?;
        Self::with_hyper(checkpoint.params, vocab, checkpoint.hyper)
    }

    /// Loads a checkpoint file (written by `train`, [`Model::save`] or `import`).
    pub fn load(path: &Path) -> Result<Self> {
        Self::from_checkpoint(Checkpoint::load(path)?)
    }

    /// The model as a checkpoint at the start of a run: RMSprop state zero,
    /// no epochs done. Training resumed from it starts from these weights.
    pub fn to_checkpoint(&self) -> Checkpoint {
        Checkpoint {
            vocab: self.vocab.chars().to_vec(),
            hyper: self.hyper.clone(),
            params: self.params.clone(),
            rmsprop: self.params.zeros_like(),
            state: TrainState::default(),
            run: None,
        }
    }

    /// Writes [`to_checkpoint`](Self::to_checkpoint) atomically (temp file,
    /// fsync, rename). To continue a run exactly, save the trainer's
    /// [`Checkpoint`] instead, which keeps the optimizer state.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.to_checkpoint().save(path)
    }

    /// The weights (Keras layout, gate order i, f, c, o).
    pub fn params(&self) -> &Params<f32> {
        &self.params
    }

    /// The vocabulary: class index = position.
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// The hyper-parameters of the run that trained it.
    pub fn hyper(&self) -> &Hyper {
        &self.hyper
    }

    /// Characters per training window; generation slides a window this long.
    pub fn maxlen(&self) -> usize {
        self.hyper.maxlen
    }

    /// LSTM units H.
    pub fn hidden(&self) -> usize {
        self.hyper.hidden
    }

    /// Stacked LSTM layers (1: the notebook).
    pub fn layers(&self) -> usize {
        self.hyper.layers
    }

    /// Whether the training text was lower-cased (so input text is too).
    pub fn lowercase(&self) -> bool {
        self.hyper.lowercase
    }

    /// Class indices of `text`, lower-cased first when the model was
    /// trained lower-cased. A character outside the vocabulary is
    /// [`Error::UnknownChar`].
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        normalize(text, self.hyper.lowercase)
            .chars()
            .map(|ch| self.vocab.index_of(ch).ok_or(Error::UnknownChar { ch }))
            .collect()
    }

    /// Next-character probabilities after each window: one row of V
    /// probabilities (summing to 1) per window, in order. Each window is
    /// normalised like [`encode`](Self::encode) and run in full, whatever its
    /// length (at least one character); windows of equal length share one
    /// batch. The model was trained on windows of [`maxlen`](Self::maxlen).
    pub fn predict(&self, windows: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.predict_on(Backend::Cpu, windows)
    }

    /// [`predict`](Self::predict) on `backend` (resolve `Device::Auto` with
    /// [`crate::Device::resolve`]): on a device, the weights are uploaded
    /// once and the training forward kernels run each batch; the result
    /// matches the CPU's to float rounding.
    pub fn predict_on(&self, backend: Backend, windows: &[&str]) -> Result<Vec<Vec<f32>>> {
        let encoded = windows
            .iter()
            .map(|w| self.encode(w))
            .collect::<Result<Vec<_>>>()?;
        // Same length -> same batch: [B, T] runs at once.
        let mut by_len: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, e) in encoded.iter().enumerate() {
            by_len.entry(e.len()).or_default().push(i);
        }
        let groups: Vec<(Vec<u32>, usize, &Vec<usize>)> = by_len
            .iter()
            .map(|(&len, members)| {
                let x = members.iter().flat_map(|&i| encoded[i].clone()).collect();
                (x, len, members)
            })
            .collect();
        let batches: Vec<(&[u32], usize)> = groups
            .iter()
            .map(|(x, len, _)| (x.as_slice(), *len))
            .collect();
        let probs = crate::device::predict(backend, &self.params, &batches)?;
        let v = self.vocab.len();
        let mut out = vec![Vec::new(); windows.len()];
        for ((_, _, members), probs) in groups.iter().zip(probs) {
            for (&i, row) in members.iter().zip(probs.chunks_exact(v)) {
                out[i] = row.to_vec();
            }
        }
        Ok(out)
    }

    /// [`predict`](Self::predict) on class indices: `x` is [B, `seq_len`]
    /// row-major, the result [B, V] row-major.
    pub fn predict_indices(&self, x: &[u32], seq_len: usize) -> Result<Vec<f32>> {
        check_sequences(x, seq_len, self.vocab.len())?;
        Ok(predict(&self.params, x, seq_len))
    }

    /// [`predict_indices`](Self::predict_indices) on `backend`.
    pub fn predict_indices_on(
        &self,
        backend: Backend,
        x: &[u32],
        seq_len: usize,
    ) -> Result<Vec<f32>> {
        let mut out = crate::device::predict(backend, &self.params, &[(x, seq_len)])?;
        Ok(out.pop().unwrap_or_default())
    }

    /// The notebook's generation loop over this model (CPU reference),
    /// windows of [`maxlen`](Self::maxlen). Its seed text must already be
    /// normalised ([`generate`](Self::generate) does that for you).
    pub fn generator(&self) -> Generator<'_, CpuModel<'_>> {
        Generator::new(CpuModel::new(&self.params), &self.vocab, self.hyper.maxlen)
    }

    /// `length` new characters after `seed_text` (normalised like
    /// [`encode`](Self::encode)), drawn with `strategy`; the same
    /// `(seed_text, strategy, seed)` always gives the same text.
    pub fn generate(
        &self,
        seed_text: &str,
        length: usize,
        strategy: Strategy,
        seed: u64,
    ) -> Result<String> {
        self.generate_on(
            Backend::Cpu,
            GenMode::Window,
            seed_text,
            length,
            &[strategy],
            seed,
        )
        .map(|mut texts| texts.pop().unwrap_or_default())
    }

    /// [`generate`](Self::generate) for several strategies at once on
    /// `backend` (resolve `--device auto` with [`crate::Device::resolve`]),
    /// in `mode`: [`GenMode::Window`] (the notebook: every character from
    /// the last [`maxlen`](Self::maxlen) characters) or
    /// [`GenMode::Stateful`] (the seed once, then one LSTM step per
    /// character, carrying the state: `generate --gen-mode stateful`). The
    /// same text as the `generate` command with the same seed text, mode
    /// and `--seed`; on a device the whole loop is one kernel launch, with
    /// the same draws as the CPU (up to ties within rounding, see
    /// `tests/generate_kernel.rs`).
    pub fn generate_on(
        &self,
        backend: Backend,
        mode: GenMode,
        seed_text: &str,
        length: usize,
        strategies: &[Strategy],
        seed: u64,
    ) -> Result<Vec<String>> {
        let seed_text = normalize(seed_text, self.hyper.lowercase);
        crate::device::generate_text(
            backend,
            mode,
            &self.params,
            &self.vocab,
            self.hyper.maxlen,
            &seed_text,
            length,
            strategies,
            seed,
            0,
        )
    }
}

impl TryFrom<Checkpoint> for Model {
    type Error = Error;
    fn try_from(checkpoint: Checkpoint) -> Result<Self> {
        Self::from_checkpoint(checkpoint)
    }
}

/// Every tensor has the length V and H imply.
fn check_shapes(params: &Params<f32>, v: usize, h: usize, layers: usize) -> Result<()> {
    let expected = crate::model::ParamLayout::stacked(v, h, layers);
    if params.layout() == expected {
        return Ok(());
    }
    Err(Error::InvalidArgument {
        name: "model",
        what: format!(
            "the weights are for V={} H={} with {} LSTM layer(s) ({} values), the vocabulary has \
             {v} symbols and the hyper-parameters say H={h} with {layers}",
            params.vocab,
            params.hidden,
            params.layers,
            params.len()
        ),
    })
}
