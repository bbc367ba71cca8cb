//! The training check: a [`GpuEngine`] and a [`CpuEngine`] from the same
//! Keras initialisation take the same batches for a number of steps; the
//! loss of every step and the weights after the last must agree.
//!
//! It talks to the GPU engine only through the [`Engine`] trait and its
//! constructor, so it checks whatever the engine runs on the device (the
//! chain forward -> head -> backward -> RMSprop and the state it keeps on
//! the device between steps), not one kernel.
//!
//! The losses are compared element-wise, the weights as whole tensors
//! (relative L2 error). Element-wise, weights after a few RMSprop steps are
//! ill-conditioned: RMSprop divides each gradient element by its own running
//! RMS, so an element whose gradient is within rounding of zero moves by up
//! to `lr / sqrt(1 - rho)` in a direction set by rounding. Two correct
//! implementations show it: the f32 and the f64 CPU reference, 20 steps of
//! the Keras job from the same init and batches, differ per element by up
//! to 1e-2 relative (tens of elements past 1e-3), while every tensor's
//! relative L2 error stays below 1e-4 and the losses agree to 1e-6.

use super::kernels::{random_starts, random_text};
use super::{BOUND_TRAINING_LOSS, BOUND_TRAINING_WEIGHTS, SelftestRow, Shape};
use crate::corpus::OneHotCorpus;
use crate::cpu::CpuEngine;
use crate::error::Result;
use crate::gpu::GpuEngine;
use crate::gpu::device::GpuDevice;
use crate::model::{Hyper, Params, TENSOR_NAMES, init_params};
use crate::sample::{Purpose, RngStream};
use crate::train::{Backend, Engine};

/// Philox stream of the training check's text and batches.
const STREAM_TRAINING: u32 = 0x7a1d_57e9;

/// `steps` RMSprop steps of both engines on a random text over `shape.vocab`
/// symbols, batches drawn from `seed`; rows: the losses of all steps, then
/// each weight tensor after the last step.
pub fn check_training<D: GpuDevice>(
    dev: &mut D,
    shape: Shape,
    steps: usize,
    seed: u64,
) -> Result<Vec<SelftestRow>> {
    let (v, h, b, t) = shape.vhbt();
    let mut rng = RngStream::new(seed, Purpose::Sample, STREAM_TRAINING);
    let corpus = OneHotCorpus::from_text(&random_text(&mut rng, v, v + t + 4 * b + 64), false)?;
    let hyper = Hyper {
        maxlen: t,
        hidden: h,
        batch: b,
        seed,
        ..Hyper::default()
    };
    hyper.validate()?;
    let params = init_params(v, h, seed);
    let rmsprop = Params::zeros(v, h);
    let mut cpu = CpuEngine::new(&corpus, &hyper, params.clone(), rmsprop.clone())?;
    // The label only answers `Engine::backend`, which nothing here asks.
    let mut gpu = GpuEngine::new(&mut *dev, Backend::Cuda, &corpus, &hyper, params, rmsprop)?;
    let (mut got, mut want) = (Vec::with_capacity(steps), Vec::with_capacity(steps));
    for _ in 0..steps {
        let starts = random_starts(&mut rng, &corpus, b, t);
        want.push(f64::from(cpu.train_batch(&starts)?));
        got.push(f64::from(gpu.train_batch(&starts)?));
    }
    let shape = shape.to_string();
    let mut rows = vec![SelftestRow::compare(
        "GpuEngine",
        &format!("loss, steps 1-{steps}"),
        &shape,
        &got,
        &want,
        BOUND_TRAINING_LOSS,
    )];
    let (got_p, want_p) = (gpu.params()?, cpu.params()?);
    let widen = |t: &[f32]| t.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
    for ((name, g), w) in TENSOR_NAMES
        .iter()
        .zip(got_p.tensors())
        .zip(want_p.tensors())
    {
        rows.push(SelftestRow::compare(
            "GpuEngine",
            &format!("{name} after step {steps}"),
            &shape,
            &widen(g),
            &widen(w),
            BOUND_TRAINING_WEIGHTS,
        ));
    }
    Ok(rows)
}
