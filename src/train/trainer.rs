//! The epoch loop: shuffle, batch, step, checkpoint, sample, report.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use super::guard::{Best, Divergence, DivergenceGuard, OnDivergence, reference_loss};
use super::loss_queue::LossQueue;
use super::observer::{BatchEvent, Control, Observer, RollbackEvent, SampleEvent};
use crate::corpus::{OneHotCorpus, Split, Streams, Windows, epoch_order};
use crate::engine::{Backend, Batch, Engine, StreamBatch, mean_loss};
use crate::error::{Error, Result};
use crate::model::{Checkpoint, Hyper, RunRecord, StreamState, TrainMode, TrainState};
use crate::rundir::{BatchRow, EpochRow, RunDir, SampleRow};
use crate::sample::{GenMode, GenerateRequest, Predict, Strategy, random_seed_text};

/// Run settings that are not model hyper-parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Batches per epoch at most (Keras' `steps_per_epoch`); `None` = all.
    pub steps_per_epoch: Option<usize>,
    /// Temperatures of the after-epoch samples.
    pub temperatures: Vec<f64>,
    /// Characters generated per sample; 0 skips sampling.
    pub gen_length: usize,
    /// How the samples are made ([`GenMode`]): `Window` (the notebook,
    /// the default) or `Stateful`, on every backend (one launch on a device).
    pub gen_mode: GenMode,
    /// Directory for checkpoints and `metrics.jsonl`; `None` keeps everything in memory.
    pub out: Option<PathBuf>,
    /// Keep only the newest N `epoch-NNN.safetensors` (at least 1); `None`
    /// keeps all, like Keras' `ModelCheckpoint`. `last.safetensors` is
    /// always kept.
    pub keep_checkpoints: Option<usize>,
    /// NaN/inf and loss-jump handling; `None` turns the guard off (a
    /// non-finite loss is still an error). With a validation split the
    /// jump is judged on the validation loss.
    pub divergence: Option<DivergenceGuard>,
    /// The last fraction of the text held out for validation, in `[0, 1)`
    /// (Keras' `validation_split`, cut on the text: see
    /// [`Split`](crate::corpus::Split)); 0 trains on the whole text, as the
    /// notebook does. With a split, every epoch ends with the mean loss over
    /// all held-out windows (on the training engine, no update), which goes
    /// into [`EpochRow::val_loss`], picks the weights kept as
    /// `best.safetensors`, and is what the divergence guard and `patience`
    /// watch. Each side must hold at least one batch of windows.
    pub val_fraction: f64,
    /// Stop once this many epochs in a row bring no new best validation
    /// loss (Keras' `EarlyStopping(patience=N)`, `min_delta` 0): at least 1,
    /// and only with `val_fraction` above 0. `None` trains every epoch.
    pub patience: Option<usize>,
    /// What a batch is: the notebook's shuffled windows ([`TrainMode::Window`],
    /// the default) or B contiguous streams of the training text with a
    /// loss at every step and the state carried from batch to batch
    /// ([`TrainMode::Stream`], see [`Streams`]).
    /// The validation loss is the same window loss in both modes, so their
    /// numbers compare directly.
    pub mode: TrainMode,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps_per_epoch: None,
            keep_checkpoints: None,
            divergence: Some(DivergenceGuard::default()),
            temperatures: vec![0.2, 0.5, 1.0, 1.2],
            gen_length: 400,
            gen_mode: GenMode::Window,
            out: None,
            val_fraction: 0.0,
            patience: None,
            mode: TrainMode::Window,
        }
    }
}

/// How a call to [`Trainer::run`] ended. `#[non_exhaustive]`: fields may
/// be added.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RunSummary {
    /// Where the run stands now.
    pub state: TrainState,
    /// True when an observer stopped the run before `hyper.epochs`.
    pub stopped: bool,
    /// The last checkpoint written, if any.
    pub checkpoint: Option<PathBuf>,
    /// Set when patience ended the run before `hyper.epochs` (then
    /// `stopped` is false unless an observer asked to stop too).
    pub early_stop: Option<EarlyStop>,
}

/// How patience ended a run: `patience` epochs in a row without a new best
/// validation loss. `#[non_exhaustive]`: fields may be added.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EarlyStop {
    /// The last epoch trained, 1-based.
    pub epoch: usize,
    /// The epoch with the lowest validation loss, kept in `best.safetensors`.
    pub best_epoch: usize,
    /// Its validation loss.
    pub best_val_loss: f64,
    /// The patience that ran out.
    pub patience: usize,
}

impl std::fmt::Display for EarlyStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stopped early after epoch {}: no new best validation loss for {} (the best, {}, \
             was epoch {}'s)",
            self.epoch,
            match self.patience {
                1 => "1 epoch".to_string(),
                n => format!("{n} epochs"),
            },
            crate::rundir::format_loss(self.best_val_loss),
            self.best_epoch
        )
    }
}

/// Trains one model on one corpus with one engine; made by [`Trainer::builder`].
pub struct Trainer<'c> {
    pub(super) corpus: &'c OneHotCorpus,
    pub(super) hyper: Hyper,
    pub(super) config: TrainConfig,
    pub(super) windows: Windows,
    /// The streams of stream mode (`None` in window mode).
    pub(super) streams: Option<Streams>,
    /// Where the training text ends and the held-out text begins.
    pub(super) split: Split,
    /// Start rows of every validation window, in text order (empty
    /// without a split).
    pub(super) val_starts: Vec<u32>,
    pub(super) engine: Box<dyn Engine + 'c>,
    pub(super) state: TrainState,
    /// Where the run's files go (`config.out`), when it has a directory.
    pub(super) rundir: Option<RunDir>,
    /// What `Device::resolve` and opening the run directory said.
    pub(super) notice: Option<String>,
    /// The corpus and settings, saved in every checkpoint.
    pub(super) record: RunRecord,
}

impl<'c> Trainer<'c> {
    /// The corpus and run settings every checkpoint of this run records.
    pub fn record(&self) -> &RunRecord {
        &self.record
    }

    /// The run directory's `.lock` while this trainer holds it (from
    /// [`TrainerBuilder::build`](super::TrainerBuilder::build) until it is dropped).
    pub fn lock_path(&self) -> Option<&std::path::Path> {
        self.rundir.as_ref().and_then(RunDir::lock_path)
    }

    /// What device resolution said when the trainer was built by
    /// [`Trainer::builder`] (e.g. "device auto: using cpu (no NVIDIA
    /// driver found)"); the library never prints it, the caller may.
    pub fn notice(&self) -> Option<&str> {
        self.notice.as_deref()
    }

    /// The backend the engine runs on.
    pub fn backend(&self) -> Backend {
        self.engine.backend()
    }

    /// Hyper-parameters of the run.
    pub fn hyper(&self) -> &Hyper {
        &self.hyper
    }

    /// Where the run stands.
    pub fn state(&self) -> &TrainState {
        &self.state
    }

    /// The training windows: all of the corpus', or with a validation
    /// split those of the training text.
    pub fn windows(&self) -> Windows {
        self.windows
    }

    /// Where the training text ends and the held-out text begins.
    pub fn split(&self) -> Split {
        self.split
    }

    /// Windows held out for validation (0 without a split).
    pub fn validation_windows(&self) -> usize {
        self.val_starts.len()
    }

    /// The engine, e.g. to predict or to read the weights.
    pub fn engine_mut(&mut self) -> &mut dyn Engine {
        self.engine.as_mut()
    }

    /// The streams of a stream-mode run (`None` in window mode).
    pub fn streams(&self) -> Option<Streams> {
        self.streams
    }

    /// Batches per epoch, after `steps_per_epoch`.
    pub fn batches_per_epoch(&self) -> usize {
        let full = match self.streams {
            Some(s) => s.batches,
            None => self.windows.count.div_ceil(self.hyper.batch),
        };
        self.config.steps_per_epoch.map_or(full, |s| s.min(full))
    }

    /// The progress with, in stream mode inside an epoch, the state the
    /// next batch carries in (what a checkpoint or a rollback needs).
    fn state_with_stream(&mut self) -> Result<TrainState> {
        let mut state = self.state.clone();
        if self.streams.is_some() && state.batch > 0 {
            let (h, c) = self.engine.stream_state()?;
            state.stream = Some(StreamState { h, c });
        }
        Ok(state)
    }

    /// Queues batch `b` of the epoch: in window mode the next windows of
    /// the order the engine was given (`order_len` of them), in stream mode
    /// every stream's next `seq_len` characters from `offset`, carrying the
    /// state in after the epoch's first batch. Returns the targets the
    /// batch's mean loss is over, and the loss if the engine has it already.
    fn queue_batch(
        &mut self,
        b: usize,
        order_len: usize,
        offset: usize,
    ) -> Result<(usize, Option<f32>)> {
        match self.streams {
            None => {
                let size = self.hyper.batch;
                let rows = size.min(order_len - b * size);
                Ok((rows, self.engine.queue_train(Batch::Next(rows))?))
            }
            Some(s) => {
                let starts = s.starts(offset, b);
                let batch = StreamBatch {
                    starts: &starts,
                    seq_len: s.seq_len,
                    carry: b > 0,
                };
                Ok((s.count * s.seq_len, self.engine.queue_train_stream(batch)?))
            }
        }
    }

    /// The current weights, optimizer state, progress and run record as a checkpoint.
    pub fn checkpoint(&mut self) -> Result<Checkpoint> {
        Ok(Checkpoint {
            vocab: self.corpus.vocab().chars().to_vec(),
            hyper: self.hyper.clone(),
            params: self.engine.params()?,
            rmsprop: self.engine.rmsprop_state()?,
            state: self.state_with_stream()?,
            run: Some(self.record.clone()),
        })
    }

    /// Trains until `hyper.epochs` epochs are done or an observer stops.
    /// With a [`DivergenceGuard`] (the default), a NaN/inf batch loss or an
    /// epoch loss jump stops the run with an error or rolls it back.
    ///
    /// Steps are queued ([`Engine::queue_train`]) and reported, in
    /// order, once their losses are back: at once on the CPU, every
    /// [`LOSS_READBACK_EVERY`](super::LOSS_READBACK_EVERY) batches and at
    /// the epoch's end on a device. So on a device a NaN is noticed, and a
    /// stop request answered, up to that many batches late: the guard's
    /// outcome is the same (the rollback restores the best epoch, the error
    /// names the batch that made the NaN), and a stop keeps every batch
    /// trained so far, reported and in the checkpoint.
    pub fn run(&mut self, observer: &mut dyn Observer) -> Result<RunSummary> {
        if let Some(dir) = &self.rundir {
            dir.create()?;
        }
        // A resumed run whose patience had already run out (or runs out
        // with a smaller one) trains nothing more.
        if let Some(early_stop) = self.early_stop() {
            return Ok(RunSummary {
                state: self.state.clone(),
                stopped: false,
                checkpoint: None,
                early_stop: Some(early_stop),
            });
        }
        let batches = self.batches_per_epoch();
        let mut last_checkpoint = None;
        // What a rollback returns to: the best epoch so far, or where this
        // call started (a resumed run knows the losses, not older weights).
        let mut best = match self.config.divergence {
            Some(_) => Some(
                self.snapshot(
                    self.watched_losses()
                        .iter()
                        .copied()
                        .fold(f64::INFINITY, f64::min),
                )?,
            ),
            None => None,
        };
        let mut rollbacks = 0;
        // Losses an earlier run left queued (it ended in an error) belong
        // to no batch of this one.
        self.engine.collect_losses()?;
        let mut queue = LossQueue::default();
        'epochs: while self.state.epochs_done < self.hyper.epochs {
            let epoch = self.state.epoch_in_progress();
            self.engine.set_step(self.state.step)?;
            // Window mode: the epoch's shuffled windows; stream mode: the
            // epoch's offset (its first batch starts from a zero state).
            let (order, offset) = match self.streams {
                None => {
                    let order = epoch_order(&self.windows, self.hyper.seed, self.state.epochs_done);
                    let position = (self.state.batch * self.hyper.batch).min(order.len());
                    self.engine.begin_epoch(&order, position)?;
                    (order, 0)
                }
                Some(s) => (
                    Vec::new(),
                    s.offset(self.hyper.seed, self.state.epochs_done),
                ),
            };
            let started = Instant::now();
            let mut timed = 0u64;
            let mut stop = false;
            for b in self.state.batch..batches {
                let (rows, queued) = self.queue_batch(b, order.len(), offset)?;
                queue.push(b, rows, queued);
                if !queue.due() && b + 1 < batches {
                    continue;
                }
                for (b, rows, loss) in queue.drain(self.engine.as_mut())? {
                    if !loss.is_finite() {
                        let cause = Divergence::NonFinite {
                            epoch,
                            batch: b + 1,
                            value: loss,
                        };
                        self.diverged(cause, best.as_ref(), &mut rollbacks, observer)?;
                        continue 'epochs;
                    }
                    let st = &mut self.state;
                    st.loss_sum += f64::from(loss) * rows as f64;
                    st.seen += rows as u64;
                    st.step += 1;
                    st.batch = b + 1;
                    timed += rows as u64;
                    let event = BatchEvent {
                        epoch,
                        batch: b + 1,
                        batches,
                        loss,
                        running_loss: st.loss_sum / st.seen as f64,
                        samples_per_s: timed as f64 / started.elapsed().as_secs_f64().max(1e-9),
                    };
                    if let Some(dir) = &mut self.rundir {
                        dir.log_batch(BatchRow {
                            epoch,
                            batch: b + 1,
                            batches,
                            step: self.state.step,
                            loss: f64::from(loss),
                            running_loss: event.running_loss,
                        });
                    }
                    // The rest of the queue is trained already: reported too.
                    if observer.on_batch(&event) == Control::Stop && b + 1 < batches {
                        stop = true;
                    }
                }
                // A stop asked for inside the queue takes effect after it;
                // one whose queue reached the epoch's end is ignored, as a
                // stop at the last batch always was.
                if stop && self.state.batch < batches {
                    break;
                }
                stop = false;
            }
            if stop {
                return Ok(RunSummary {
                    checkpoint: self.save(None, false)?,
                    state: self.state.clone(),
                    stopped: true,
                    early_stop: None,
                });
            }
            let seconds = started.elapsed().as_secs_f64();
            let loss = self.state.loss_sum / self.state.seen.max(1) as f64;
            let val_loss = self.validation_loss()?;
            // What the guard and the best epoch are judged on.
            let watched = val_loss.unwrap_or(loss);
            let vocab = self.corpus.vocab().len();
            let jumped_from = match (self.config.divergence, &best) {
                (Some(guard), Some(b)) => guard
                    .jumped(watched, reference_loss(b, vocab))
                    .then(|| (b.state.epochs_done, reference_loss(b, vocab))),
                // Even unguarded, a validation loss that is no number ends
                // the run, as a NaN batch does: it can be neither compared
                // nor saved (JSON has no NaN).
                _ if !watched.is_finite() => Some(
                    self.state
                        .best_val()
                        .unwrap_or((0, (vocab.max(2) as f64).ln())),
                ),
                _ => None,
            };
            if let Some((best_epoch, best_loss)) = jumped_from {
                let cause = Divergence::Jump {
                    epoch,
                    loss: watched,
                    best_epoch,
                    best_loss,
                    validation: val_loss.is_some(),
                };
                self.diverged(cause, best.as_ref(), &mut rollbacks, observer)?;
                continue 'epochs;
            }
            self.state.epochs_done = epoch;
            self.state.batch = 0;
            self.state.loss_sum = 0.0;
            self.state.seen = 0;
            self.state.epoch_losses.push(loss);
            if let Some(v) = val_loss {
                self.state.val_losses.push(v);
            }
            let new_best = self.state.epochs_since_best() == Some(0);

            let checkpoint = self.save(Some(epoch), new_best)?;
            if best.as_ref().is_some_and(|b| watched < b.loss) {
                best = Some(self.snapshot(watched)?);
            }
            last_checkpoint = checkpoint.clone();
            let sample_started = Instant::now();
            let (samples, sampling) = self.epoch_samples(epoch, observer)?;
            let early_stop = self.early_stop();
            let row = EpochRow {
                epoch,
                epochs: self.hyper.epochs,
                loss,
                val_loss,
                best_epoch: self.state.best_val().map(|(e, _)| e),
                early_stop: early_stop.is_some(),
                seconds,
                samples_per_s: timed as f64 / seconds.max(1e-9),
                batches,
                step: self.state.step,
                checkpoint,
                sample_seconds: sample_started.elapsed().as_secs_f64(),
                samples,
            };
            if let Some(dir) = &mut self.rundir {
                dir.end_epoch(&row)?;
            }
            let asked = observer.on_epoch(&row) == Control::Stop || sampling == Control::Stop;
            if asked || early_stop.is_some() {
                return Ok(RunSummary {
                    state: self.state.clone(),
                    stopped: asked && self.state.epochs_done < self.hyper.epochs,
                    checkpoint: last_checkpoint,
                    early_stop,
                });
            }
        }
        Ok(RunSummary {
            state: self.state.clone(),
            stopped: false,
            checkpoint: last_checkpoint,
            early_stop: None,
        })
    }

    /// The mean loss over every validation window on the training engine,
    /// with the weights as they are now (nothing is updated); `None`
    /// without a validation split. Windows go to the engine in text order,
    /// `hyper.batch` at a time (the size its buffers have; a device engine
    /// would otherwise reallocate them), so the number is the same on every
    /// call with the same weights, and a resumed run computes the one an
    /// uninterrupted run did.
    pub fn validation_loss(&mut self) -> Result<Option<f64>> {
        if self.val_starts.is_empty() {
            return Ok(None);
        }
        let batch = self.hyper.batch;
        mean_loss(
            self.engine.as_mut(),
            &self.val_starts,
            batch,
            &mut |_, _| Ok(()),
        )
        .map(Some)
    }

    /// The losses the best epoch is picked by: the validation losses with
    /// a split, else the epoch losses.
    fn watched_losses(&self) -> &[f64] {
        if self.val_starts.is_empty() {
            &self.state.epoch_losses
        } else {
            &self.state.val_losses
        }
    }

    /// Whether patience has run out with epochs still to train.
    fn early_stop(&self) -> Option<EarlyStop> {
        let patience = self.config.patience?;
        let (best_epoch, best_val_loss) = self.state.best_val()?;
        let since = self.state.epochs_since_best()?;
        (since >= patience && self.state.epochs_done < self.hyper.epochs).then_some(EarlyStop {
            epoch: self.state.epochs_done,
            best_epoch,
            best_val_loss,
            patience,
        })
    }

    /// The engine's weights and optimizer state and the progress, now.
    fn snapshot(&mut self, loss: f64) -> Result<Best> {
        Ok(Best {
            loss,
            params: self.engine.params()?,
            rmsprop: self.engine.rmsprop_state()?,
            state: self.state_with_stream()?,
        })
    }

    /// The guard fired: an error (stop, or out of rollbacks), or the best
    /// state restored with half the learning rate.
    fn diverged(
        &mut self,
        cause: Divergence,
        best: Option<&Best>,
        rollbacks: &mut usize,
        observer: &mut dyn Observer,
    ) -> Result<()> {
        let stop_error = |cause: Divergence, why: &str| match cause {
            Divergence::NonFinite {
                epoch,
                batch,
                value,
            } if why.is_empty() => Error::NonFiniteLoss {
                epoch,
                batch,
                value,
            },
            cause => Error::Diverged {
                what: format!("{cause}{why}"),
            },
        };
        let (Some(guard), Some(best)) = (self.config.divergence, best) else {
            return Err(stop_error(cause, ""));
        };
        match guard.action {
            OnDivergence::Stop => return Err(stop_error(cause, "")),
            OnDivergence::Rollback if *rollbacks >= guard.max_rollbacks => {
                let why = format!(" after {rollbacks} rollbacks");
                return Err(stop_error(cause, &why));
            }
            OnDivergence::Rollback => {}
        }
        *rollbacks += 1;
        self.engine.set_state(&best.params, &best.rmsprop)?;
        self.hyper.lr *= 0.5;
        self.engine.set_learning_rate(self.hyper.lr)?;
        self.state = best.state.clone();
        // Inside a stream epoch: the state its next batch carried in then.
        if let Some(st) = self.state.stream.take() {
            self.engine.set_stream_state(&st.h, &st.c)?;
        }
        // The rolled-back batches are not part of the run any more.
        if let Some(dir) = &mut self.rundir {
            dir.discard_batches();
        }
        observer.on_rollback(&RollbackEvent {
            cause,
            to_epoch: best.state.epochs_done,
            lr: self.hyper.lr,
            rollbacks: *rollbacks,
        });
        Ok(())
    }

    /// Saves the state now in the run directory, if any: the epoch's
    /// checkpoint (and with `best`, `best.safetensors`), or on a stop
    /// (`None`) `last.safetensors` and the batches.
    fn save(&mut self, epoch: Option<usize>, best: bool) -> Result<Option<PathBuf>> {
        // Without a directory nothing is saved: the weights are not even
        // downloaded from the device.
        if self.rundir.is_none() {
            return Ok(None);
        }
        let ckpt = self.checkpoint()?;
        let Some(dir) = &mut self.rundir else {
            return Ok(None);
        };
        match epoch {
            Some(epoch) => dir.save_epoch(&ckpt, epoch, self.config.keep_checkpoints, best),
            None => dir.save_last(&ckpt),
        }
        .map(Some)
    }

    /// The notebook's after-epoch block after epoch `epoch` (1-based): a
    /// random window of the corpus as seed, `gen_length` characters at each
    /// temperature, one batch; cut short (and `Control::Stop`) when the
    /// observer's [`on_sample`](Observer::on_sample) says stop.
    fn epoch_samples(
        &mut self,
        epoch: usize,
        observer: &mut dyn Observer,
    ) -> Result<(Vec<SampleRow>, Control)> {
        if self.config.gen_length == 0 || self.config.temperatures.is_empty() {
            return Ok((Vec::new(), Control::Continue));
        }
        let length = self.config.gen_length;
        let mut event = SampleEvent {
            epoch,
            done: 0,
            length,
        };
        if observer.on_sample(&event) == Control::Stop {
            return Ok((Vec::new(), Control::Stop));
        }
        let epoch_index = epoch - 1;
        let maxlen = self.hyper.maxlen;
        // From the training text: the held-out text is only ever evaluated.
        let start = random_seed_text(
            self.split.train_rows,
            maxlen,
            self.hyper.seed,
            epoch_index as u32,
        )?;
        let seed_text = self.corpus.text(start, maxlen);
        let strategies: Vec<Strategy> = self
            .config
            .temperatures
            .iter()
            .map(|&t| Strategy::Temperature(t))
            .collect();
        let vocab = self.corpus.vocab();
        let seed_indices: Vec<u32> = (start..start + maxlen)
            .map(|i| self.corpus.class_at(i))
            .collect();
        // The same flag that stops training stops the sampling, a character
        // later on the CPU (a launch later on a device), so a stop is not
        // kept waiting by a long --gen-length.
        let mut control = Control::Continue;
        let req = GenerateRequest {
            seed_indices: &seed_indices,
            maxlen,
            length,
            strategies: &strategies,
            seed: self.hyper.seed,
            stream: sample_stream(epoch_index),
            mode: self.config.gen_mode,
        };
        let mut progress = |out: &[Vec<u32>]| {
            event.done = out.first().map_or(0, Vec::len);
            control = observer.on_sample(&event);
            match control {
                Control::Stop if event.done < length => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            }
        };
        let generated = self.engine.generate_with(&req, &mut progress)?;
        let texts = generated
            .into_iter()
            .map(|seq| seq.iter().map(|&i| vocab.char_at(i)).collect::<String>());
        let rows = self
            .config
            .temperatures
            .iter()
            .zip(texts)
            .map(|(&temperature, text)| SampleRow {
                temperature,
                seed: seed_text.clone(),
                text,
            })
            .collect();
        Ok((rows, control))
    }
}

/// Philox stream of the after-epoch samples: room for 256 temperatures an epoch.
pub fn sample_stream(epoch_index: usize) -> u32 {
    (epoch_index as u32).wrapping_mul(256)
}

/// Lets the generator run on whatever engine trains.
pub struct EnginePredictor<'e>(pub &'e mut dyn Engine);

impl Predict for EnginePredictor<'_> {
    fn predict(&mut self, x: &[u32], seq_len: usize) -> Result<Vec<f32>> {
        self.0.predict(x, seq_len)
    }
}
