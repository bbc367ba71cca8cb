//! The training check: a [`GpuEngine`] and a [`CpuEngine`] from the same
//! Keras initialisation take the same batches for a number of steps. Before
//! every step the GPU engine is given the CPU engine's weights and RMSprop
//! state ([`Engine::set_state`]), so each step is checked from one shared
//! state: its loss, and the weights and RMSprop state it leaves.
//!
//! It drives the GPU engine as the trainer does, through the [`Engine`]
//! trait (one epoch order, then [`Batch::Next`] per step), and reads back
//! only what the engine exposes (its gradients, its graph statistics), so it
//! checks whatever the engine runs on the device (the chain forward -> head
//! -> backward -> RMSprop, the captured graph of a step, the state it keeps
//! on the device), not one kernel.
//!
//! Why each step from a shared state, not 20 steps run apart and compared
//! at the end: training at lr 0.01 amplifies differences in the last bits
//! without bound. Measured on the CPU alone (the f32 engine twice, the
//! second from an init moved by one ulp per weight, the Keras shapes on this
//! check's random text): the weights' relative L2 difference grows from
//! 1e-6 after step 1 to 1e-4 after step 11 and 5e-3 after step 20. Two
//! correct implementations that round differently (the GPU's FMAs and
//! summation orders) therefore drift apart by more than any bound a wrong
//! kernel would exceed; an H200 drifted to 6e-2 over 20 steps while every
//! step from a shared state agreed to ~1e-6. Within one step the errors do
//! not compound, so the bound can stay tight.
//!
//! The losses and the gradients are compared element-wise (the gradients
//! with the kernel checks' bound, and as whole tensors too), the weights
//! and RMSprop state as whole tensors only (relative L2 error; the worst
//! step is the row).
//! Element-wise, weights after an RMSprop step are ill-conditioned: RMSprop
//! divides each gradient element by its own running RMS, so an element
//! whose gradient is within rounding of zero moves by up to
//! `lr / sqrt(1 - rho)` in a direction set by rounding.

use super::kernels::{random_starts, random_text};
use super::{
    BOUND_EXACT, BOUND_F32_KERNEL, BOUND_TRAINING_LOSS, BOUND_TRAINING_WEIGHTS, SelftestRow, Shape,
    widen,
};
use crate::corpus::OneHotCorpus;
use crate::cpu::CpuEngine;
use crate::engine::{Backend, Batch, Engine};
use crate::error::Result;
use crate::gpu::GpuEngine;
use crate::gpu::device::GpuDevice;
use crate::model::{Hyper, Params, TENSOR_NAMES, init_params};
use crate::sample::{Purpose, RngStream};

/// Philox stream of the training check's text and batches.
const STREAM_TRAINING: u32 = 0x7a1d_57e9;

/// `steps` RMSprop steps of both engines on a random text over `shape.vocab`
/// symbols, batches drawn from `seed` and taken as the trainer takes them:
/// one epoch order given to `begin_epoch`, then [`Batch::Next`] per step, so
/// the GPU engine runs its first step as launches (the warm-up) and the
/// later ones as the captured graph's replays where the device captures.
/// Rows: the losses of all steps; how many steps the captured graph ran
/// (exact: all but the first on a device that captures, none on one that
/// cannot); then, each the worst step, every gradient element-wise (the
/// bound of the kernel checks) and as a whole tensor, every weight tensor
/// and every RMSprop state tensor after the step.
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
    let captures = dev.can_capture();
    // The label only answers `Engine::backend`, which nothing here asks.
    let mut gpu = GpuEngine::new(&mut *dev, Backend::Cuda, &corpus, &hyper, params, rmsprop)?;
    let order: Vec<u32> = (0..steps)
        .flat_map(|_| random_starts(&mut rng, &corpus, b, t))
        .collect();
    cpu.begin_epoch(&order, 0)?;
    gpu.begin_epoch(&order, 0)?;
    let (mut got, mut want) = (Vec::with_capacity(steps), Vec::with_capacity(steps));
    let shape = shape.to_string();
    // The worst step of each (kind, tensor): gradients element-wise and
    // whole, weights, RMSprop state.
    let kinds = 4;
    let mut worst: Vec<Option<SelftestRow>> = vec![None; kinds * TENSOR_NAMES.len()];
    for step in 1..=steps {
        gpu.set_state(&cpu.params()?, &cpu.rmsprop_state()?)?;
        want.push(f64::from(cpu.train(Batch::Next(b))?));
        got.push(f64::from(gpu.train(Batch::Next(b))?));
        let grads = (gpu.grads()?, cpu.grads().clone());
        let compared = [
            (&grads, "gradient", BOUND_F32_KERNEL),
            (&grads, "gradient", BOUND_TRAINING_WEIGHTS),
            (
                &(gpu.params()?, cpu.params()?),
                "weights",
                BOUND_TRAINING_WEIGHTS,
            ),
            (
                &(gpu.rmsprop_state()?, cpu.rmsprop_state()?),
                "RMSprop state",
                BOUND_TRAINING_WEIGHTS,
            ),
        ];
        for (k, ((g, w), what, bound)) in compared.iter().enumerate() {
            for (i, (name, (g, w))) in TENSOR_NAMES
                .iter()
                .zip(g.tensors().iter().zip(w.tensors()))
                .enumerate()
            {
                let output = match *what {
                    "gradient" => format!("d {name} of one step"),
                    _ => format!("{name} {what} after one step"),
                };
                let row = SelftestRow::compare(
                    "GpuEngine",
                    &format!("{output} (worst of {steps}; at step {step})"),
                    &shape,
                    &widen(g),
                    &widen(w),
                    *bound,
                );
                let slot = &mut worst[k * TENSOR_NAMES.len() + i];
                // A NaN error (never written) is the worst and stays.
                let worse = |r: &SelftestRow| {
                    !r.rel_err.is_nan() && (row.rel_err.is_nan() || row.rel_err > r.rel_err)
                };
                if slot.as_ref().is_none_or(worse) {
                    *slot = Some(row);
                }
            }
        }
    }
    let graph = gpu.graph_stats();
    let replays_wanted = if captures { steps.saturating_sub(1) } else { 0 };
    let mut replays = SelftestRow::compare(
        "GpuEngine",
        "steps run as the captured graph's replay",
        &shape,
        &[graph.replays as f64],
        &[replays_wanted as f64],
        BOUND_EXACT,
    );
    if let Some(why) = graph.failed {
        replays.note = Some(format!("capturing the step failed: {why}"));
    }
    let mut rows = vec![
        SelftestRow::compare(
            "GpuEngine",
            &format!("loss, steps 1-{steps} (each from the CPU's state)"),
            &shape,
            &got,
            &want,
            BOUND_TRAINING_LOSS,
        ),
        replays,
    ];
    rows.extend(worst.into_iter().flatten());
    Ok(rows)
}
