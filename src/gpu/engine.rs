//! The GPU trainer, written once against [`GpuDevice`] (DESIGN §4), at the
//! stage the kernels have reached: parameters, RMSprop state and gradients
//! live in one flat device buffer each ([`ParamLayout`]) and the optimizer
//! step is the `rmsprop_update_f32` kernel; the LSTM cell, the head and
//! generation still run on the CPU reference over a host copy of the
//! weights, until their kernels exist (the GPU engine issue).
//!
//! Because the kernel reproduces the CPU's f32 RMSprop bit for bit, a run
//! on this engine ends with the same weights as a `--device cpu` run.

use super::device::{DevicePtr, GpuDevice};
use super::rmsprop::{ParamLayout, RmsPropLauncher};
use crate::corpus::OneHotCorpus;
use crate::cpu::{CpuEngine, RmsProp};
use crate::error::Result;
use crate::model::{Hyper, Params};
use crate::train::{Backend, Engine};

/// What runs where, for the notice `--device sim` prints.
pub const GPU_PATH_NOTICE: &str = "on the device: RMSprop over all parameters (one launch); \
     not on the GPU path yet: the LSTM cell, the head and generation (CPU reference)";

/// Training state on a [`GpuDevice`]; what has no kernel yet runs on the
/// CPU reference engine it wraps, over a host copy of the weights.
pub struct GpuEngine<'c, D: GpuDevice> {
    device: D,
    backend: Backend,
    cpu: CpuEngine<'c>,
    layout: ParamLayout,
    optimizer: RmsProp,
    launcher: RmsPropLauncher,
    flat: Vec<f32>,
    d_params: DevicePtr,
    d_rmsprop: DevicePtr,
    d_grads: DevicePtr,
}

impl<'c, D: GpuDevice> GpuEngine<'c, D> {
    /// Uploads `params` and `rmsprop` once and allocates the gradient buffer.
    pub fn new(
        mut device: D,
        backend: Backend,
        corpus: &'c OneHotCorpus,
        hyper: &Hyper,
        params: Params<f32>,
        rmsprop: Params<f32>,
    ) -> Result<Self> {
        let layout = ParamLayout::new(corpus.vocab().len(), hyper.hidden);
        let (flat_params, flat_rmsprop) = (layout.flatten(&params), layout.flatten(&rmsprop));
        // The CPU engine checks the shapes; its own optimizer state goes unused.
        let cpu = CpuEngine::new(corpus, hyper, params, rmsprop)?;
        let d_params = device.upload_new_f32(&flat_params)?;
        let d_rmsprop = device.upload_new_f32(&flat_rmsprop)?;
        let d_grads = device.alloc(layout.len() * std::mem::size_of::<f32>())?;
        Ok(GpuEngine {
            device,
            backend,
            cpu,
            layout,
            optimizer: RmsProp::from_hyper(hyper),
            launcher: RmsPropLauncher::default(),
            flat: vec![0.0; layout.len()],
            d_params,
            d_rmsprop,
            d_grads,
        })
    }

    /// The device underneath.
    pub fn device(&mut self) -> &mut D {
        &mut self.device
    }
}

impl<D: GpuDevice> Engine for GpuEngine<'_, D> {
    fn backend(&self) -> Backend {
        self.backend
    }

    fn train_batch(&mut self, starts: &[u32]) -> Result<f32> {
        let loss = self.cpu.loss_and_grads(starts);
        let n = self.layout.len();
        self.device
            .upload_f32(self.d_grads, &self.layout.flatten(self.cpu.grads()))?;
        self.launcher.update(
            &mut self.device,
            &self.optimizer,
            self.d_params,
            self.d_rmsprop,
            self.d_grads,
            n,
        )?;
        self.device.download_f32(self.d_params, &mut self.flat)?;
        *self.cpu.params_mut() = self.layout.unflatten(&self.flat);
        Ok(loss)
    }

    fn eval_batch(&mut self, starts: &[u32]) -> Result<f32> {
        self.cpu.eval_batch(starts)
    }

    fn predict(&mut self, x: &[u32], seq_len: usize) -> Result<Vec<f32>> {
        self.cpu.predict(x, seq_len)
    }

    fn params(&mut self) -> Result<Params<f32>> {
        self.cpu.params()
    }

    fn rmsprop_state(&mut self) -> Result<Params<f32>> {
        self.device.download_f32(self.d_rmsprop, &mut self.flat)?;
        Ok(self.layout.unflatten(&self.flat))
    }
}

impl<D: GpuDevice> Drop for GpuEngine<'_, D> {
    fn drop(&mut self) {
        // Nothing to report to at drop time; the device reclaims on exit anyway.
        for p in [self.d_params, self.d_rmsprop, self.d_grads] {
            let _ = self.device.free(p);
        }
    }
}
