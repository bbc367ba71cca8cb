//! The epoch loop: shuffle, batch, step, checkpoint, sample, report.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use super::guard::{Best, Divergence, DivergenceGuard, OnDivergence, reference_loss};
use super::loss_queue::LossQueue;
use super::observer::{BatchEvent, Control, Observer, RollbackEvent, SampleEvent};
use crate::corpus::{OneHotCorpus, Windows, epoch_order};
use crate::engine::{Backend, Batch, Engine};
use crate::error::{Error, Result};
use crate::model::{Checkpoint, Hyper, RunRecord, TrainState};
use crate::rundir::{BatchRow, EpochRow, RunDir, SampleRow};
use crate::sample::{GenerateRequest, Predict, Strategy, random_seed_text};

/// Run settings that are not model hyper-parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Batches per epoch at most (Keras' `steps_per_epoch`); `None` = all.
    pub steps_per_epoch: Option<usize>,
    /// Temperatures of the after-epoch samples.
    pub temperatures: Vec<f64>,
    /// Characters generated per sample; 0 skips sampling.
    pub gen_length: usize,
    /// Directory for checkpoints and `metrics.jsonl`; `None` keeps everything in memory.
    pub out: Option<PathBuf>,
    /// Keep only the newest N `epoch-NNN.safetensors` (at least 1); `None`
    /// keeps all, like Keras' `ModelCheckpoint`. `last.safetensors` is
    /// always kept.
    pub keep_checkpoints: Option<usize>,
    /// NaN/inf and loss-jump handling; `None` turns the guard off (a
    /// non-finite loss is still an error).
    pub divergence: Option<DivergenceGuard>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps_per_epoch: None,
            keep_checkpoints: None,
            divergence: Some(DivergenceGuard::default()),
            temperatures: vec![0.2, 0.5, 1.0, 1.2],
            gen_length: 400,
            out: None,
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
}

/// Trains one model on one corpus with one engine; made by [`Trainer::builder`].
pub struct Trainer<'c> {
    pub(super) corpus: &'c OneHotCorpus,
    pub(super) hyper: Hyper,
    pub(super) config: TrainConfig,
    pub(super) windows: Windows,
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

    /// The windows of the corpus.
    pub fn windows(&self) -> Windows {
        self.windows
    }

    /// The engine, e.g. to predict or to read the weights.
    pub fn engine_mut(&mut self) -> &mut dyn Engine {
        self.engine.as_mut()
    }

    /// Batches per epoch, after `steps_per_epoch`.
    pub fn batches_per_epoch(&self) -> usize {
        let full = self.windows.count.div_ceil(self.hyper.batch);
        self.config.steps_per_epoch.map_or(full, |s| s.min(full))
    }

    /// The current weights, optimizer state, progress and run record as a checkpoint.
    pub fn checkpoint(&mut self) -> Result<Checkpoint> {
        Ok(Checkpoint {
            vocab: self.corpus.vocab().chars().to_vec(),
            hyper: self.hyper.clone(),
            params: self.engine.params()?,
            rmsprop: self.engine.rmsprop_state()?,
            state: self.state.clone(),
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
        let batches = self.batches_per_epoch();
        let size = self.hyper.batch;
        let mut last_checkpoint = None;
        // What a rollback returns to: the best epoch so far, or where this
        // call started (a resumed run knows the losses, not older weights).
        let mut best = match self.config.divergence {
            Some(_) => Some(
                self.snapshot(
                    self.state
                        .epoch_losses
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
            let order = epoch_order(&self.windows, self.hyper.seed, self.state.epochs_done);
            let started = Instant::now();
            let mut timed = 0u64;
            let mut stop = false;
            self.engine
                .begin_epoch(&order, (self.state.batch * size).min(order.len()))?;
            for b in self.state.batch..batches {
                let rows = size.min(order.len() - b * size);
                let queued = self.engine.queue_train(Batch::Next(rows))?;
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
                    checkpoint: self.save(None)?,
                    state: self.state.clone(),
                    stopped: true,
                });
            }
            let seconds = started.elapsed().as_secs_f64();
            let loss = self.state.loss_sum / self.state.seen.max(1) as f64;
            let vocab = self.corpus.vocab().len();
            if let (Some(guard), Some(b)) = (self.config.divergence, &best)
                && guard.jumped(loss, reference_loss(b, vocab))
            {
                let cause = Divergence::Jump {
                    epoch,
                    loss,
                    best_epoch: b.state.epochs_done,
                    best_loss: reference_loss(b, vocab),
                };
                self.diverged(cause, best.as_ref(), &mut rollbacks, observer)?;
                continue 'epochs;
            }
            self.state.epochs_done = epoch;
            self.state.batch = 0;
            self.state.loss_sum = 0.0;
            self.state.seen = 0;
            self.state.epoch_losses.push(loss);

            let checkpoint = self.save(Some(epoch))?;
            if best.as_ref().is_some_and(|b| loss < b.loss) {
                best = Some(self.snapshot(loss)?);
            }
            last_checkpoint = checkpoint.clone();
            let sample_started = Instant::now();
            let (samples, sampling) = self.epoch_samples(epoch, observer)?;
            let row = EpochRow {
                epoch,
                epochs: self.hyper.epochs,
                loss,
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
            if observer.on_epoch(&row) == Control::Stop || sampling == Control::Stop {
                return Ok(RunSummary {
                    state: self.state.clone(),
                    stopped: self.state.epochs_done < self.hyper.epochs,
                    checkpoint: last_checkpoint,
                });
            }
        }
        Ok(RunSummary {
            state: self.state.clone(),
            stopped: false,
            checkpoint: last_checkpoint,
        })
    }

    /// The engine's weights and optimizer state and the progress, now.
    fn snapshot(&mut self, loss: f64) -> Result<Best> {
        Ok(Best {
            loss,
            params: self.engine.params()?,
            rmsprop: self.engine.rmsprop_state()?,
            state: self.state.clone(),
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
    /// checkpoint, or on a stop (`None`) `last.safetensors` and the batches.
    fn save(&mut self, epoch: Option<usize>) -> Result<Option<PathBuf>> {
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
            Some(epoch) => dir.save_epoch(&ckpt, epoch, self.config.keep_checkpoints),
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
        let start = random_seed_text(
            self.corpus.rows(),
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
        let texts = self
            .engine
            .generate_with(
                &GenerateRequest {
                    seed_indices: &seed_indices,
                    maxlen,
                    length,
                    strategies: &strategies,
                    seed: self.hyper.seed,
                    stream: sample_stream(epoch_index),
                },
                &mut |out| {
                    event.done = out.first().map_or(0, Vec::len);
                    control = observer.on_sample(&event);
                    match control {
                        Control::Stop if event.done < length => ControlFlow::Break(()),
                        _ => ControlFlow::Continue(()),
                    }
                },
            )?
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
