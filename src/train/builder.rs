//! [`TrainerBuilder`]: the one way to make a [`Trainer`] — a corpus, then
//! whatever differs from the notebook, then `build()`, which checks
//! everything once (the hyper-parameters, the run settings, a resumed run's
//! shape, an imported model's H and vocabulary against the corpus).

use std::path::PathBuf;

use super::trainer::{TrainConfig, Trainer};
use crate::corpus::{OneHotCorpus, Split, Streams};
use crate::device::Device;
use crate::engine::{Backend, Engine, LstmPath};
use crate::error::{Error, Result};
use crate::inference::Model;
use crate::model::{
    Checkpoint, CorpusRecord, DivergenceRecord, Fingerprint, Hyper, RunRecord, TrainMode,
    TrainState, init_stacked,
};
use crate::rundir::RunDir;
use crate::sample::{GenMode, Strategy};
use crate::train::{DivergenceGuard, OnDivergence};

/// What the run starts from.
enum Start<'c> {
    /// Keras initialisation from the seed.
    Fresh,
    /// A saved run, continued exactly.
    Resume(Box<Checkpoint>),
    /// Given weights (a loaded or imported model), fresh optimizer state.
    Weights(Box<Model>),
    /// An engine the caller opened, continuing from the progress given.
    Engine(Box<dyn Engine + 'c>, TrainState),
}

/// Configures a [`Trainer`]; made by [`Trainer::builder`].
///
/// Defaults: the notebook's [`Hyper`] and [`TrainConfig`] (no output
/// directory: nothing is written to disk) and `Device::Auto` (CUDA when a
/// usable GPU is found, else the CPU; [`Trainer::notice`] says which).
///
/// ```
/// use charlstm_cuda::{Backend, Hyper, OneHotCorpus, Silent, TrainConfig, Trainer};
///
/// let text = "the will to power is the will to truth. ".repeat(20);
/// let corpus = OneHotCorpus::from_text(&text, true)?;
/// let mut trainer = Trainer::builder(&corpus)
///     .hyper(Hyper { maxlen: 10, hidden: 16, batch: 32, epochs: 1, ..Hyper::default() })
///     .config(TrainConfig { steps_per_epoch: Some(2), gen_length: 0, ..TrainConfig::default() })
///     .backend(Backend::Cpu)
///     .build()?;
/// let summary = trainer.run(&mut Silent)?;
/// assert_eq!(summary.state.epochs_done, 1);
/// let model = trainer.model()?;
/// assert_eq!(model.vocab(), corpus.vocab());
/// # Ok::<(), charlstm_cuda::Error>(())
/// ```
pub struct TrainerBuilder<'c> {
    corpus: &'c OneHotCorpus,
    hyper: Option<Hyper>,
    epochs: Option<usize>,
    config: TrainConfig,
    device: Device,
    lstm_path: LstmPath,
    start: Start<'c>,
    corpus_source: Option<String>,
}

impl<'c> Trainer<'c> {
    /// A builder for a run on `corpus`; see [`TrainerBuilder`].
    pub fn builder(corpus: &'c OneHotCorpus) -> TrainerBuilder<'c> {
        TrainerBuilder {
            corpus,
            hyper: None,
            epochs: None,
            config: TrainConfig::default(),
            device: Device::Auto,
            lstm_path: LstmPath::Auto,
            start: Start::Fresh,
            corpus_source: None,
        }
    }

    /// The trained weights now, with the corpus' vocabulary and the run's
    /// hyper-parameters: what to keep for prediction and generation.
    pub fn model(&mut self) -> Result<Model> {
        Model::from_checkpoint(self.checkpoint()?)
    }
}

impl<'c> TrainerBuilder<'c> {
    /// All hyper-parameters at once. `lowercase` is taken from the corpus,
    /// which was normalised when it was made. With [`resume`](Self::resume)
    /// only `epochs` and `lr` may differ from the checkpoint's.
    pub fn hyper(mut self, hyper: Hyper) -> Self {
        self.hyper = Some(hyper);
        self
    }

    /// Run settings: steps per epoch, samples, output directory, divergence guard.
    pub fn config(mut self, config: TrainConfig) -> Self {
        self.config = config;
        self
    }

    /// Where to compute: a backend, or `Device::Auto`.
    pub fn device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// Shorthand for `device(Device::Exact(backend))`.
    pub fn backend(self, backend: Backend) -> Self {
        self.device(Device::Exact(backend))
    }

    /// Which device kernels run the recurrence (`--recurrence`; see
    /// [`LstmPath`]): a choice of speed, the same bits on every path.
    /// Anything but `Auto` needs a device engine (`cuda` or `sim`), and
    /// `build` refuses a path that cannot run the batch's shape, naming why.
    /// Not kept in the run: a resumed run starts from `Auto` again.
    pub fn lstm_path(mut self, path: LstmPath) -> Self {
        self.lstm_path = path;
        self
    }

    /// Epochs in total (with [`resume`](Self::resume): the new total);
    /// wins over the `epochs` of [`hyper`](Self::hyper), whatever the order.
    pub fn epochs(mut self, epochs: usize) -> Self {
        self.epochs = Some(epochs);
        self
    }

    /// Batches per epoch at most (Keras' `steps_per_epoch`).
    pub fn steps_per_epoch(mut self, steps: usize) -> Self {
        self.config.steps_per_epoch = Some(steps);
        self
    }

    /// Holds out the last `fraction` of the text for validation (see
    /// [`TrainConfig::val_fraction`]); 0, the default, holds out nothing.
    pub fn val_fraction(mut self, fraction: f64) -> Self {
        self.config.val_fraction = fraction;
        self
    }

    /// Stops after `epochs` epochs without a new best validation loss (see
    /// [`TrainConfig::patience`]); needs [`val_fraction`](Self::val_fraction).
    pub fn patience(mut self, epochs: usize) -> Self {
        self.config.patience = Some(epochs);
        self
    }

    /// Trains on streams of `seq_len` steps, truncated BPTT (see
    /// [`TrainConfig::mode`]), instead of the notebook's windows.
    pub fn stream(mut self, seq_len: usize) -> Self {
        self.config.mode = TrainMode::Stream { seq_len };
        self
    }

    /// Directory for checkpoints and `metrics.jsonl` (none by default).
    pub fn out(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.out = Some(dir.into());
        self
    }

    /// Where the corpus came from (a path as given, or
    /// [`BUILT_IN_SOURCE`](crate::model::BUILT_IN_SOURCE)), recorded in the
    /// checkpoints with the corpus' fingerprint so that a resume can find
    /// it and check it is the same text.
    pub fn corpus_source(mut self, source: impl Into<String>) -> Self {
        self.corpus_source = Some(source.into());
        self
    }

    /// Continues the run saved in `checkpoint`: same data order and random
    /// streams; the corpus must be the one it started on (checked against
    /// the fingerprint the checkpoint records, when it has one). The run
    /// settings are the ones given to [`config`](Self::config), not the
    /// checkpoint's; `RunRecord::config` turns those back into a
    /// [`TrainConfig`] for a caller that wants them.
    pub fn resume(mut self, checkpoint: Checkpoint) -> Self {
        self.start = Start::Resume(Box::new(checkpoint));
        self
    }

    /// Starts from `model`'s weights (e.g. imported from Keras or PyTorch)
    /// with a fresh optimizer: fine-tuning. Its vocabulary must be the
    /// corpus'; without [`hyper`](Self::hyper) the model's own are used.
    pub fn weights(mut self, model: Model) -> Self {
        self.start = Start::Weights(Box::new(model));
        self
    }

    /// Trains on an engine the caller opened (another backend, or a wrapper
    /// around one) that holds the run's weights, continuing from `state`;
    /// [`device`](Self::device) is not used.
    pub fn engine(mut self, engine: Box<dyn Engine + 'c>, state: TrainState) -> Self {
        self.start = Start::Engine(engine, state);
        self
    }

    /// Checks everything and creates the engine (for `cuda`, the device
    /// buffers; for `auto`, the GPU probe).
    pub fn build(self) -> Result<Trainer<'c>> {
        let corpus = self.corpus;
        let epochs = |mut h: Hyper| {
            if let Some(e) = self.epochs {
                h.epochs = e;
            }
            h
        };
        let (mut hyper, start) = match self.start {
            Start::Resume(checkpoint) => {
                let mut hyper = checkpoint.hyper.clone();
                if let Some(asked) = &self.hyper {
                    same_run(&hyper, asked)?;
                    hyper.epochs = asked.epochs;
                    hyper.lr = asked.lr;
                }
                (epochs(hyper), Start::Resume(checkpoint))
            }
            Start::Weights(model) => {
                let hyper = epochs(self.hyper.unwrap_or_else(|| model.hyper().clone()));
                if hyper.hidden != model.hidden() {
                    return Err(Error::InvalidArgument {
                        name: "hyper.hidden",
                        what: format!(
                            "{} differs from the model's H={}; leave it at the model's",
                            hyper.hidden,
                            model.hidden()
                        ),
                    });
                }
                if hyper.layers != model.layers() {
                    return Err(Error::InvalidArgument {
                        name: "hyper.layers",
                        what: format!(
                            "{} differs from the model's {} LSTM layers; leave it at the model's",
                            hyper.layers,
                            model.layers()
                        ),
                    });
                }
                (hyper, Start::Weights(model))
            }
            start => (epochs(self.hyper.unwrap_or_default()), start),
        };
        // A resumed run keeps its own lower-casing (checked below); any
        // other takes the corpus', which was normalised when it was made.
        if !matches!(start, Start::Resume(_)) {
            hyper.lowercase = corpus.lowercase();
        }
        let config = self.config;
        hyper.validate()?;
        for &t in &config.temperatures {
            Strategy::temperature(t).map_err(|e| match e {
                Error::InvalidArgument { what, .. } => Error::InvalidArgument {
                    name: "config.temperatures",
                    what,
                },
                e => e,
            })?;
        }
        crate::sample::check_length("config.gen_length", config.gen_length)?;
        if config.steps_per_epoch == Some(0) {
            return Err(Error::InvalidArgument {
                name: "config.steps_per_epoch",
                what: "0 (must be at least 1)".into(),
            });
        }
        if config.keep_checkpoints == Some(0) {
            return Err(Error::InvalidArgument {
                name: "config.keep_checkpoints",
                what: "0 (keep at least 1 epoch checkpoint, or leave it out to keep all)".into(),
            });
        }
        if config.patience == Some(0) {
            return Err(Error::InvalidArgument {
                name: "config.patience",
                what: "0 (stop after at least 1 epoch without a new best validation loss)".into(),
            });
        }
        let device = self.device;
        let lstm_path = self.lstm_path;
        let split = Split::new(corpus.rows(), config.val_fraction)?;
        if config.val_fraction > 0.0 {
            split.check(hyper.maxlen, hyper.step, hyper.batch)?;
        } else if let Some(p) = config.patience {
            return Err(Error::InvalidArgument {
                name: "config.patience",
                what: format!(
                    "{p} epochs without a new best validation loss, but the run has no \
                     validation loss to watch: hold out part of the text (config.val_fraction \
                     above 0)"
                ),
            });
        }
        let streams = match config.mode {
            TrainMode::Window => None,
            TrainMode::Stream { seq_len } => Some(streams_of(
                &split,
                corpus.rows(),
                hyper.batch,
                seq_len,
                config.val_fraction,
            )?),
        };
        let windows = split.train_windows(hyper.maxlen, hyper.step)?;
        let val_starts = split.validation_starts(hyper.maxlen, hyper.step)?;
        let record = RunRecord {
            corpus: CorpusRecord {
                source: self.corpus_source.clone(),
                fingerprint: Fingerprint::of(corpus),
            },
            steps_per_epoch: config.steps_per_epoch,
            keep_checkpoints: config.keep_checkpoints,
            divergence: config.divergence.map(|g| DivergenceRecord {
                factor: g.factor.is_finite().then_some(g.factor),
                action: match g.action {
                    OnDivergence::Stop => "stop".into(),
                    OnDivergence::Rollback => "rollback".into(),
                },
                max_rollbacks: g.max_rollbacks,
            }),
            temperatures: config.temperatures.clone(),
            gen_length: config.gen_length,
            device: match (&start, self.device) {
                (Start::Engine(..), _) => None,
                (_, Device::Auto) => Some("auto".into()),
                (_, Device::Exact(b)) => Some(b.name().into()),
            },
            val_fraction: (config.val_fraction > 0.0).then_some(config.val_fraction),
            patience: config.patience,
            mode: config.mode,
        };
        if let Start::Resume(c) = &start {
            same_text(c, &record.corpus)?;
            same_split(c, record.val_fraction)?;
            same_mode(c, config.mode, hyper.layers * hyper.batch * hyper.hidden)?;
            let full = match streams {
                Some(s) => s.batches,
                None => windows.count.div_ceil(hyper.batch),
            };
            let batches = config.steps_per_epoch.map_or(full, |s| s.min(full));
            if c.state.batch > 0 && c.state.batch >= batches {
                return Err(Error::Resume {
                    what: format!(
                        "the checkpoint stopped after batch {} of epoch {}, but an epoch on this \
                         corpus has {batches} batches",
                        c.state.batch,
                        c.state.epoch_in_progress()
                    ),
                    fix: "resume with the corpus and --steps-per-epoch the run started with".into(),
                });
            }
        }
        let open = |c: Checkpoint| {
            same_corpus(&c, &hyper, corpus)?;
            let (engine, notice) = device.open_engine(corpus, &hyper, c.params, c.rmsprop)?;
            Ok::<_, Error>((engine, c.state, notice))
        };
        let (engine, state, notice) = match start {
            Start::Engine(engine, state) => (engine, state, None),
            Start::Resume(checkpoint) => open(*checkpoint)?,
            Start::Weights(model) => open(model.to_checkpoint())?,
            Start::Fresh => {
                let params =
                    init_stacked(corpus.vocab().len(), hyper.hidden, hyper.layers, hyper.seed);
                open(Checkpoint {
                    vocab: corpus.vocab().chars().to_vec(),
                    hyper: hyper.clone(),
                    rmsprop: params.zeros_like(),
                    params,
                    state: TrainState::default(),
                    run: None,
                })?
            }
        };
        let (mut engine, mut state) = (engine, state);
        if lstm_path != LstmPath::Auto {
            engine.set_lstm_path(lstm_path)?;
        }
        // A stream epoch stopped inside: its next batch carries this state
        // in (the engine keeps it; the trainer's state does not).
        if let Some(st) = state.stream.take() {
            engine.set_stream_state(&st.h, &st.c)?;
        }
        // Last, once nothing else can fail: the directory becomes this run's.
        let mut rundir = config.out.clone().map(RunDir::new);
        let mut notices: Vec<String> = notice.into_iter().collect();
        if let Some(dir) = &mut rundir {
            notices.extend(dir.open()?);
        }
        Ok(Trainer {
            corpus,
            rundir,
            hyper,
            config,
            windows,
            streams,
            split,
            val_starts,
            engine,
            state,
            notice: (!notices.is_empty()).then(|| notices.join("\n")),
            record,
        })
    }
}

/// A saved run (or model) goes on only on its own vocabulary and lower-casing.
fn same_corpus(checkpoint: &Checkpoint, hyper: &Hyper, corpus: &OneHotCorpus) -> Result<()> {
    if checkpoint.vocab != corpus.vocab().chars() {
        return Err(Error::InvalidArgument {
            name: "checkpoint",
            what: format!(
                "the checkpoint's vocabulary ({} symbols) differs from the corpus' ({} symbols); \
                 resume with the corpus the run started on",
                checkpoint.vocab.len(),
                corpus.vocab().len()
            ),
        });
    }
    if hyper.lowercase != corpus.lowercase() {
        return Err(Error::InvalidArgument {
            name: "hyper.lowercase",
            what: "the checkpoint and the corpus disagree on lower-casing".into(),
        });
    }
    Ok(())
}

/// A resumed run keeps its validation split (`None`: none): the split
/// decides which windows train, and the state must hold one validation
/// loss per epoch for patience and `best.safetensors` to go on exactly.
fn same_split(checkpoint: &Checkpoint, asked: Option<f64>) -> Result<()> {
    let saved = checkpoint.run.as_ref().and_then(|r| r.val_fraction);
    let st = &checkpoint.state;
    let recorded = st.val_losses.len();
    let losses_fit = match asked {
        None => recorded == 0,
        Some(_) => recorded == st.epochs_done,
    };
    if saved.map(f64::to_bits) == asked.map(f64::to_bits) && losses_fit {
        return Ok(());
    }
    let held = |f: Option<f64>| f.map_or("nothing".to_string(), |f| format!("{f}"));
    Err(Error::Resume {
        what: format!(
            "the run held out {} of its text for validation ({recorded} validation losses for \
             {} epochs), and {} is asked for now: the split decides which windows train",
            held(saved),
            st.epochs_done,
            held(asked)
        ),
        fix: format!(
            "resume with the run's own validation fraction (config.val_fraction = {})",
            saved.unwrap_or(0.0)
        ),
    })
}

/// The streams of a stream-mode run over the training side of `split`;
/// with a validation split whose training side is too short for them, the
/// error names the fraction (the streams would fit the whole text).
fn streams_of(
    split: &Split,
    rows: usize,
    batch: usize,
    seq_len: usize,
    val_fraction: f64,
) -> Result<Streams> {
    match Streams::new(split.train_rows, batch, seq_len) {
        Err(_) if val_fraction > 0.0 && Streams::new(rows, batch, seq_len).is_ok() => {
            let needed = 2 * seq_len * batch;
            Err(Error::InvalidArgument {
                name: "config.val_fraction",
                what: format!(
                    "{val_fraction} leaves {} characters to train on, fewer than one batch of \
                     {batch} streams needs in stream mode (2 x seq_len x batch = {needed}); on \
                     this text of {rows} characters use at most {:.3}, or a seq_len of at most {}",
                    split.train_rows,
                    ((1.0 - needed as f64 / rows as f64) * 1000.0).floor() / 1000.0,
                    split.train_rows / batch / 2
                ),
            })
        }
        streams => streams,
    }
}

/// A resumed run keeps its training mode (a checkpoint without a run
/// record was written in window mode); one stopped inside a stream epoch
/// must hold the state its next batch carries in, [N, B, H] = `state_len`.
fn same_mode(checkpoint: &Checkpoint, asked: TrainMode, state_len: usize) -> Result<()> {
    let saved = checkpoint
        .run
        .as_ref()
        .map_or(TrainMode::Window, |r| r.mode);
    if saved != asked {
        let flags = |m: TrainMode| match m {
            TrainMode::Window => "--mode window".to_string(),
            TrainMode::Stream { seq_len } => format!("--mode stream --seq-len {seq_len}"),
        };
        return Err(Error::Resume {
            what: format!(
                "the run trains in {saved} mode, and {asked} mode is asked for now: the mode \
                 decides what a batch and an epoch are"
            ),
            fix: format!(
                "resume with the run's own mode ({}, or leave the flags out), or start a new --out",
                flags(saved)
            ),
        });
    }
    let st = &checkpoint.state;
    let inside = matches!(asked, TrainMode::Stream { .. }) && st.batch > 0;
    let fits = st.stream.as_ref().map(|s| (s.h.len(), s.c.len()));
    if inside && fits != Some((state_len, state_len)) {
        return Err(Error::Resume {
            what: format!(
                "the checkpoint stopped after batch {} of a stream epoch but holds {} of the \
                 [layers, batch, hidden] = {state_len} values of state its next batch carries in",
                st.batch,
                fits.map_or("none".to_string(), |(h, c)| format!("{h} and {c}"))
            ),
            fix: "resume from a checkpoint written by this version (epoch checkpoints need no \
                  state), or start a new --out"
                .into(),
        });
    }
    Ok(())
}

/// A saved run that recorded its corpus goes on only on the same text.
fn same_text(checkpoint: &Checkpoint, now: &CorpusRecord) -> Result<()> {
    let Some(run) = &checkpoint.run else {
        return Ok(());
    };
    if run.corpus.fingerprint == now.fingerprint {
        return Ok(());
    }
    Err(Error::Resume {
        what: format!(
            "the corpus {} is not the text the run trained on, {}",
            now.describe(),
            run.corpus.describe()
        ),
        fix: match &run.corpus.source {
            Some(s) => format!(
                "resume on the run's own text (leave out --corpus to use {s}), or train on \
                 this one into another --out"
            ),
            None => "resume on the run's own text, or train on this one into another --out".into(),
        },
    })
}

impl RunRecord {
    /// The run settings as a [`TrainConfig`] writing to `out`.
    pub fn config(&self, out: Option<PathBuf>) -> Result<TrainConfig> {
        Ok(TrainConfig {
            steps_per_epoch: self.steps_per_epoch,
            keep_checkpoints: self.keep_checkpoints,
            divergence: match &self.divergence {
                Some(d) => Some(DivergenceGuard {
                    factor: d.factor.unwrap_or(f64::INFINITY),
                    action: d.action.parse()?,
                    max_rollbacks: d.max_rollbacks,
                }),
                None => None,
            },
            temperatures: self.temperatures.clone(),
            gen_length: self.gen_length,
            // Not recorded: a resumed run samples in window mode unless
            // told again.
            gen_mode: GenMode::Window,
            out,
            val_fraction: self.val_fraction.unwrap_or(0.0),
            patience: self.patience,
            mode: self.mode,
        })
    }
}

/// A resumed run keeps its data order and model: only `epochs` and `lr` may change.
fn same_run(saved: &Hyper, asked: &Hyper) -> Result<()> {
    let fields = [
        ("maxlen", saved.maxlen as u64, asked.maxlen as u64),
        ("step", saved.step as u64, asked.step as u64),
        ("hidden", saved.hidden as u64, asked.hidden as u64),
        ("batch", saved.batch as u64, asked.batch as u64),
        ("seed", saved.seed, asked.seed),
        ("layers", saved.layers as u64, asked.layers as u64),
    ];
    for (name, was, now) in fields {
        if was != now {
            return Err(Error::InvalidArgument {
                name: "hyper",
                what: format!(
                    "{name} = {now} differs from the resumed run's {was} (only epochs and lr may change)"
                ),
            });
        }
    }
    let same_float = |a: f32, b: f32| a.to_bits() == b.to_bits();
    if !same_float(saved.rho, asked.rho) || !same_float(saved.eps, asked.eps) {
        return Err(Error::InvalidArgument {
            name: "hyper",
            what: "rho or eps differs from the resumed run's (only epochs and lr may change)"
                .into(),
        });
    }
    if !same_float(saved.dropout, asked.dropout) {
        return Err(Error::InvalidArgument {
            name: "hyper",
            what: format!(
                "dropout = {} differs from the resumed run's {} (only epochs and lr may change)",
                asked.dropout, saved.dropout
            ),
        });
    }
    Ok(())
}
