//! Which compute a run gets: `--device auto|cpu|cuda|sim` resolved once, and
//! the engines opened over it (DESIGN §4). The one place that names the
//! concrete backends: it sits above `cpu` and `gpu` and below `train`, the
//! CLI, `bench` and `Model`, which all open engines here, so they share one
//! rule for `auto` and one fallback policy:
//!
//! - `auto` is `cuda` when the driver loads and sees a GPU (probed without
//!   a panic: see `gpu::cuda_device`) and the build has kernels, else `cpu`,
//!   and says which and why;
//! - an explicit device that cannot run here is an error naming why, never
//!   a silent switch to another backend;
//! - on a device, generation is one kernel launch in either mode; where the
//!   window kernel does not fit the device, the same sampling loop (the same
//!   Philox draws) runs over the device's `predict` instead
//!   (`Engine::generate`, and [`generate`] here for a model without a
//!   corpus), and stateful mode over the device's LSTM from a carried
//!   state, one step a character; a stack (N > 1 layers) samples the same
//!   way in both modes (`gpu::model`).

use std::str::FromStr;

use crate::corpus::{OneHotCorpus, Vocab};
use crate::cpu::{CpuEngine, CpuModel};
use crate::engine::{Backend, Engine};
use crate::error::{Error, Result};
use crate::gpu::{CudaDevice, GPU_PATH_NOTICE, GpuModel, SimDevice, ptx::BUILT_WITH_KERNELS};
use crate::model::{Hyper, Params};
use crate::sample::{
    GenMode, GenerateRequest, Progress, Strategy, decode, encode_seed, no_progress,
};

/// What the user asked for: a backend, or `auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// CUDA when a driver and a GPU are present, else the CPU.
    Auto,
    /// A specific backend.
    Exact(Backend),
}

impl FromStr for Device {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Exact(Backend::Cpu)),
            "cuda" => Ok(Device::Exact(Backend::Cuda)),
            "sim" => Ok(Device::Exact(Backend::Sim)),
            other => Err(Error::InvalidArgument {
                name: "device",
                what: format!("{other:?} (expected auto, cpu, cuda or sim)"),
            }),
        }
    }
}

impl Device {
    /// Resolves `auto` to a backend that is usable here; returns the backend
    /// and a sentence saying what was picked and why (none for `cpu`).
    pub fn resolve(self) -> Result<(Backend, Option<String>)> {
        match self {
            Device::Auto if !BUILT_WITH_KERNELS => Ok((
                Backend::Cpu,
                Some("device auto: using cpu (this build has no CUDA kernels)".into()),
            )),
            Device::Auto => match CudaDevice::probe() {
                Ok(gpu) => Ok((
                    Backend::Cuda,
                    Some(format!(
                        "device auto: using cuda ({gpu}); {GPU_PATH_NOTICE}"
                    )),
                )),
                Err(why) => Ok((
                    Backend::Cpu,
                    Some(format!("device auto: using cpu ({why})")),
                )),
            },
            Device::Exact(Backend::Cpu) => Ok((Backend::Cpu, None)),
            Device::Exact(b) if !BUILT_WITH_KERNELS => Err(Error::NoKernels { backend: b.name() }),
            Device::Exact(Backend::Sim) => Ok((
                Backend::Sim,
                Some(format!(
                    "device sim: the CUDA kernels run on the PTX simulator; {GPU_PATH_NOTICE}"
                )),
            )),
            Device::Exact(Backend::Cuda) => match CudaDevice::probe() {
                Ok(gpu) => Ok((
                    Backend::Cuda,
                    Some(format!("device cuda: {gpu}; {GPU_PATH_NOTICE}")),
                )),
                Err(what) => Err(Error::BackendUnavailable {
                    backend: "cuda",
                    what,
                }),
            },
        }
    }

    /// The training engine for this device over `corpus`, starting from the
    /// given weights and RMSprop state, and what [`resolve`](Self::resolve)
    /// said. The simulator's thread interleaving is shuffled by `hyper.seed`.
    pub fn open_engine<'c>(
        self,
        corpus: &'c OneHotCorpus,
        hyper: &Hyper,
        params: Params<f32>,
        rmsprop: Params<f32>,
    ) -> Result<(Box<dyn Engine + 'c>, Option<String>)> {
        let (backend, notice) = self.resolve()?;
        let engine: Box<dyn Engine + 'c> = match backend {
            Backend::Cpu => Box::new(CpuEngine::new(corpus, hyper, params, rmsprop)?),
            Backend::Sim => {
                let device = SimDevice::new(hyper.seed);
                Box::new(crate::gpu::GpuEngine::new(
                    device, backend, corpus, hyper, params, rmsprop,
                )?)
            }
            // `resolve` probed the first GPU; that is the one used.
            Backend::Cuda => Box::new(crate::gpu::GpuEngine::new(
                CudaDevice::new(0)?,
                backend,
                corpus,
                hyper,
                params,
                rmsprop,
            )?),
        };
        Ok((engine, notice))
    }
}

/// The sampling loop for a model given by its weights alone (no corpus, no
/// optimizer): `length` new class indices after `seed_indices` for each
/// strategy, in `req.mode` (windows of at most `maxlen`, or the seed once
/// and one step a character), draw k of sequence j from Philox
/// `(seed, Sample, stream + j, k)`, on `backend` (resolved). The same
/// indices as [`Engine::generate`] on the same backend.
///
/// On the CPU: the reference predictor (window) or
/// [`crate::stateful::generate_stateful`]. On a device: the one-launch
/// kernel of the mode, or, where the window kernel does not fit the device,
/// the same loop over the device's predict (the module's fallback policy).
pub fn generate(
    backend: Backend,
    params: &Params<f32>,
    req: &GenerateRequest,
) -> Result<Vec<Vec<u32>>> {
    generate_with(backend, params, req, &mut no_progress)
}

/// [`generate`], telling `progress` what it has made so far, which may stop
/// it: after every character on the CPU, after the launch on a device (see
/// [`Progress`]).
pub fn generate_with(
    backend: Backend,
    params: &Params<f32>,
    req: &GenerateRequest,
    progress: &mut Progress<'_>,
) -> Result<Vec<Vec<u32>>> {
    match backend {
        Backend::Cpu => match req.mode {
            GenMode::Window => req.run_on_with(CpuModel::new(params), params.vocab, progress),
            GenMode::Stateful => crate::stateful::generate_stateful(params, req, progress),
        },
        Backend::Sim => {
            GpuModel::new(SimDevice::new(req.seed), backend, params)?.generate_with(req, progress)
        }
        Backend::Cuda => {
            GpuModel::new(CudaDevice::new(0)?, backend, params)?.generate_with(req, progress)
        }
    }
}

/// Next-character probabilities on `backend` (resolved) for each batch of
/// `batches`: class indices [B, T] row-major with their T, giving [B, V]
/// row-major each. A device gets the weights once for all of them. The CPU
/// is the reference predictor; a device is `GpuModel::predict`, the
/// forward kernels training uses, so no fallback is needed (an explicit
/// device that cannot run here is an error, as everywhere).
pub fn predict(
    backend: Backend,
    params: &Params<f32>,
    batches: &[(&[u32], usize)],
) -> Result<Vec<Vec<f32>>> {
    for &(x, seq_len) in batches {
        crate::cpu::check_sequences(x, seq_len, params.vocab)?;
    }
    match backend {
        Backend::Cpu => Ok(batches
            .iter()
            .map(|&(x, t)| crate::cpu::predict(params, x, t))
            .collect()),
        Backend::Sim => {
            let mut gpu = GpuModel::new(SimDevice::new(0), backend, params)?;
            batches.iter().map(|&(x, t)| gpu.predict(x, t)).collect()
        }
        Backend::Cuda => {
            let mut gpu = GpuModel::new(CudaDevice::new(0)?, backend, params)?;
            batches.iter().map(|&(x, t)| gpu.predict(x, t)).collect()
        }
    }
}

/// [`generate`] on text: `length` new characters after `seed_text`
/// (already normalised like the corpus) for each strategy, in `mode`
/// (windows of `maxlen`, or the whole seed once and one step a character),
/// as the `generate` command and the after-epoch samples draw them for the
/// same request; [`crate::Model::generate_on`] is this on its own weights.
#[allow(clippy::too_many_arguments)]
pub fn generate_text(
    backend: Backend,
    mode: GenMode,
    params: &Params<f32>,
    vocab: &Vocab,
    maxlen: usize,
    seed_text: &str,
    length: usize,
    strategies: &[Strategy],
    seed: u64,
    stream: u32,
) -> Result<Vec<String>> {
    let seed_indices = encode_seed(vocab, seed_text)?;
    let req = GenerateRequest {
        seed_indices: &seed_indices,
        maxlen,
        length,
        strategies,
        seed,
        stream,
        mode,
    };
    let out = generate(backend, params, &req)?;
    Ok(decode(vocab, &out))
}
