//! The CPU reference as a training [`Engine`].

use crate::corpus::OneHotCorpus;
use crate::engine::{Backend, Batch, Engine, EpochOrder, StreamBatch};
use crate::error::{Error, Result};
use crate::model::{Grads, Hyper, Params};

use super::stream::StreamCarry;
use super::{
    RmsProp, StackedWorkspace, Workspace, clip_grad_norm, gather, loss_and_grads_into, loss_with,
    predict, predict_into, stacked_loss, stacked_loss_and_grads_into, stacked_predict_into,
};
use crate::ops::Mode;

/// Parameters, optimizer state and scratch buffers of a CPU run, allocated once.
pub struct CpuEngine<'c> {
    corpus: &'c OneHotCorpus,
    maxlen: usize,
    params: Params<f32>,
    rmsprop: Params<f32>,
    grads: Grads<f32>,
    workspace: Workspace<f32>,
    optimizer: RmsProp,
    /// `Hyper::clip_norm`: the gradients are clipped to it before each step.
    clip_norm: Option<f64>,
    epoch: EpochOrder,
    /// Buffers of a model of N > 1 layers (`super::stacked`); unused at N = 1.
    stacked: StackedWorkspace<f32>,
    /// `Hyper::dropout` and `Hyper::seed`: the dropout masks' probability and key.
    dropout: f64,
    seed: u64,
    /// Optimizer steps taken in the run before the next batch: the dropout
    /// masks' step (`super::stacked`), told by [`Engine::set_step`].
    step: u64,
    /// Stream training's buffers and carried state (`super::stream`).
    stream: StreamCarry,
}

impl<'c> CpuEngine<'c> {
    /// An engine over `corpus`, starting from `params` and RMSprop state `rmsprop`.
    pub fn new(
        corpus: &'c OneHotCorpus,
        hyper: &Hyper,
        params: Params<f32>,
        rmsprop: Params<f32>,
    ) -> Result<Self> {
        let v = corpus.vocab().len();
        for (what, p) in [("parameters", &params), ("optimizer state", &rmsprop)] {
            if p.vocab != v || p.hidden != hyper.hidden || p.layers != hyper.layers {
                return Err(Error::InvalidArgument {
                    name: "model",
                    what: format!(
                        "{what} are V={} H={} with {} LSTM layer(s), the corpus and \
                         hyper-parameters need V={v} H={} with {}",
                        p.vocab, p.hidden, p.layers, hyper.hidden, hyper.layers
                    ),
                });
            }
        }
        Ok(CpuEngine {
            corpus,
            maxlen: hyper.maxlen,
            grads: params.zeros_like(),
            workspace: Workspace::new(),
            params,
            rmsprop,
            optimizer: RmsProp::from_hyper(hyper),
            clip_norm: hyper.clip_norm.map(f64::from),
            epoch: EpochOrder::default(),
            stacked: StackedWorkspace::new(),
            dropout: f64::from(hyper.dropout),
            seed: hyper.seed,
            step: 0,
            stream: StreamCarry::default(),
        })
    }

    /// Mean loss of the batch, its gradients left in [`CpuEngine::grads`];
    /// no update (a GPU engine applies the optimizer on its device). With
    /// N > 1 layers and dropout, the masks are those of the step
    /// [`Engine::set_step`] last set plus the training steps since.
    pub fn loss_and_grads(&mut self, starts: &[u32]) -> Result<f32> {
        let (x, y) = gather(self.corpus, starts, self.maxlen);
        if self.params.layers == 1 {
            return Ok(loss_and_grads_into(
                &self.params,
                &x,
                &y,
                self.maxlen,
                &mut self.workspace,
                &mut self.grads,
            ));
        }
        let mode = self.train_mode();
        stacked_loss_and_grads_into(
            &self.params,
            (&x, &y, self.maxlen),
            self.dropout,
            mode,
            &mut self.stacked,
            &mut self.grads,
        )
    }

    /// Clipping and the RMSprop step with the gradients in `grads`: the
    /// same for a window and a stream batch.
    /// The dropout masks of the next training step (`super::stacked`).
    fn train_mode(&self) -> Mode {
        Mode::Train {
            seed: self.seed,
            // Masks repeat after 2^32 steps.
            step: self.step as u32,
        }
    }

    /// Clips and applies the gradients: one optimizer step of the run.
    fn apply_grads(&mut self) {
        self.step += 1;
        if let Some(max_norm) = self.clip_norm {
            clip_grad_norm(&mut self.grads, max_norm);
        }
        self.optimizer
            .step(&mut self.params, &mut self.rmsprop, &self.grads);
    }

    /// Gradients of the last [`CpuEngine::loss_and_grads`] (after
    /// a training step: as clipped for the step).
    pub fn grads(&self) -> &Grads<f32> {
        &self.grads
    }
}

impl Engine for CpuEngine<'_> {
    fn backend(&self) -> Backend {
        Backend::Cpu
    }

    fn begin_epoch(&mut self, order: &[u32], position: usize) -> Result<()> {
        self.epoch.begin(order, position);
        Ok(())
    }

    fn queue_train(&mut self, batch: Batch<'_>) -> Result<Option<f32>> {
        let loss = match batch {
            Batch::Starts(starts) => self.loss_and_grads(starts)?,
            Batch::Next(rows) => {
                // The slice borrows the order while the step needs &mut self.
                let starts = self.epoch.take(rows)?.1.to_vec();
                self.loss_and_grads(&starts)?
            }
        };
        self.apply_grads();
        Ok(Some(loss))
    }

    fn set_step(&mut self, step: u64) -> Result<()> {
        self.step = step;
        Ok(())
    }

    fn queue_train_stream(&mut self, batch: StreamBatch<'_>) -> Result<Option<f32>> {
        self.stream.set_dropout(self.dropout, self.train_mode());
        let loss = self
            .stream
            .loss_and_grads(self.corpus, &self.params, batch, &mut self.grads)?;
        self.apply_grads();
        Ok(Some(loss))
    }

    fn stream_state(&mut self) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok(self.stream.state())
    }

    fn set_stream_state(&mut self, h: &[f32], c: &[f32]) -> Result<()> {
        let shape = (self.params.layers, self.params.hidden);
        self.stream.set_state(h, c, shape)
    }

    fn eval_batch(&mut self, starts: &[u32]) -> Result<f32> {
        let (x, y) = gather(self.corpus, starts, self.maxlen);
        if self.params.layers > 1 {
            // Evaluation: no dropout.
            let batch = (&x[..], &y[..], self.maxlen);
            return stacked_loss(&self.params, batch, 0.0, Mode::Eval, &mut self.stacked);
        }
        Ok(loss_with(
            &self.params,
            &x,
            &y,
            self.maxlen,
            &mut self.workspace,
        ))
    }

    fn predict(&mut self, x: &[u32], seq_len: usize) -> Result<Vec<f32>> {
        check_sequences(x, seq_len, self.params.vocab)?;
        let mut probs = vec![0.0; x.len() / seq_len * self.params.vocab];
        if self.params.layers > 1 {
            stacked_predict_into(&self.params, x, seq_len, &mut self.stacked, &mut probs)?;
        } else {
            predict_into(&self.params, x, seq_len, &mut self.workspace, &mut probs);
        }
        Ok(probs)
    }

    fn params(&mut self) -> Result<Params<f32>> {
        Ok(self.params.clone())
    }

    fn rmsprop_state(&mut self) -> Result<Params<f32>> {
        Ok(self.rmsprop.clone())
    }

    fn set_state(&mut self, params: &Params<f32>, rmsprop: &Params<f32>) -> Result<()> {
        for (what, p) in [("parameters", params), ("optimizer state", rmsprop)] {
            if p.layout() != self.params.layout() {
                return Err(Error::InvalidArgument {
                    name: "model",
                    what: format!(
                        "{what} are V={} H={} with {} LSTM layer(s), this engine holds V={} H={} \
                         with {}",
                        p.vocab,
                        p.hidden,
                        p.layers,
                        self.params.vocab,
                        self.params.hidden,
                        self.params.layers
                    ),
                });
            }
        }
        self.params.clone_from(params);
        self.rmsprop.clone_from(rmsprop);
        Ok(())
    }

    fn set_learning_rate(&mut self, lr: f32) -> Result<()> {
        self.optimizer.lr = f64::from(lr);
        Ok(())
    }
}

/// Inference only: the CPU reference over borrowed weights, for generation.
pub struct CpuModel<'p> {
    params: &'p Params<f32>,
}

impl<'p> CpuModel<'p> {
    /// Predicts with `params`.
    pub fn new(params: &'p Params<f32>) -> Self {
        CpuModel { params }
    }
}

impl crate::sample::Predict for CpuModel<'_> {
    fn predict(&mut self, x: &[u32], seq_len: usize) -> Result<Vec<f32>> {
        check_sequences(x, seq_len, self.params.vocab)?;
        Ok(predict(self.params, x, seq_len))
    }
}

/// Rejects input that is not whole sequences of in-vocabulary indices.
pub(crate) fn check_sequences(x: &[u32], seq_len: usize, vocab: usize) -> Result<()> {
    if seq_len == 0 || x.is_empty() || !x.len().is_multiple_of(seq_len) {
        return Err(Error::InvalidArgument {
            name: "predict",
            what: format!(
                "{} indices do not form sequences of length {seq_len}",
                x.len()
            ),
        });
    }
    if let Some(&bad) = x.iter().find(|&&c| c as usize >= vocab) {
        return Err(Error::InvalidArgument {
            name: "predict",
            what: format!("class index {bad} is outside the vocabulary of {vocab}"),
        });
    }
    Ok(())
}
