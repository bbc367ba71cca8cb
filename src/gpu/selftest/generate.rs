//! The two kernels outside the training step's chain: the targets decode
//! (`batch_targets_u32`, exact) and generation (`generate_fwd_f32`,
//! `generate_stateful_f32`) against the CPU generator of the same mode,
//! equal text except where a draw was a tie within rounding (the device's
//! and the CPU's probabilities differ in the last bits, so a uniform number
//! that lands on a cumulative boundary may pick either side).

use super::kernels::Case;
use super::report::{Metric, SelftestRow};
use super::{BOUND_EXACT, Rows, Shape};
use crate::cpu::{self, CpuModel};
use crate::error::Result;
use crate::gpu::batch::BatchLauncher;
use crate::gpu::device::GpuDevice;
use crate::gpu::generate::{GenerateDims, GenerateLauncher};
use crate::gpu::head::HeadDims;
use crate::model::ParamLayout;
use crate::model::Params;
use crate::sample::{GenMode, GenerateRequest, Philox, Purpose, Strategy, reweight};
use crate::stateful::StatefulModel;

/// Relative distance to a cumulative boundary below which two draws count
/// as a tie (f32 probabilities agree to ~1e-6 relative; see `tie_distance`).
pub const TIE_REL: f64 = 1e-5;

/// `batch_targets_u32` on the case's windows: exactly the CPU's targets.
pub fn check_targets<D: GpuDevice>(dev: &mut D, case: &Case) -> Result<Vec<SelftestRow>> {
    let (v, h, b, t) = case.shape.vhbt();
    let words: &[u8] = bytemuck::cast_slice(case.corpus.words());
    let d_words = dev.alloc(words.len())?;
    dev.upload(d_words, words)?;
    let d_starts = dev.upload_new_u32(&case.starts)?;
    let d_targets = dev.upload_new_u32(&vec![u32::MAX; b])?; // poisoned
    let dims = HeadDims {
        batch: b,
        hidden: h,
        vocab: v,
    };
    BatchLauncher::default().targets(
        dev,
        d_words,
        case.corpus.words_per_row(),
        d_starts,
        t,
        dims,
        d_targets,
    )?;
    let mut got = vec![0u32; b];
    dev.download(d_targets, bytemuck::cast_slice_mut(&mut got))?;
    for p in [d_words, d_starts, d_targets] {
        dev.free(p)?;
    }
    let mut rows = Rows::new(case.shape);
    rows.compare("batch_targets_u32", "targets", &got, &case.y, BOUND_EXACT);
    Ok(rows.rows)
}

/// The strategies generation is checked with: the notebook's temperatures,
/// greedy and uniform.
pub fn strategies() -> Vec<Strategy> {
    vec![
        Strategy::Temperature(0.2),
        Strategy::Temperature(0.5),
        Strategy::Temperature(1.0),
        Strategy::Temperature(1.2),
        Strategy::Greedy,
        Strategy::Uniform,
    ]
}

/// The generation build [`check_generate`] runs for `shape` in `mode` on
/// `dev` (the launcher's own choice), which names its rows.
pub fn generate_kernel<D: GpuDevice>(
    dev: &D,
    shape: Shape,
    length: usize,
    mode: GenMode,
) -> &'static str {
    generate_kernel_for(dev, shape, length, strategies().len(), mode)
}

/// [`generate_kernel`] for `sequences` sequences.
fn generate_kernel_for<D: GpuDevice>(
    dev: &D,
    shape: Shape,
    length: usize,
    sequences: usize,
    mode: GenMode,
) -> &'static str {
    let (v, h, _, t) = shape.vhbt();
    GenerateLauncher::default().kernel_for(
        GenerateDims {
            mode,
            vocab: v,
            hidden: h,
            maxlen: t,
            tail_len: t,
            sequences,
            length,
        },
        dev.max_shared_bytes(),
    )
}

/// The generation kernel of `mode` vs the CPU generator of that mode
/// (`IndexGenerator` over the CPU model, or `stateful::generate_stateful`),
/// `length` characters per strategy from the first window of the case as
/// the seed. One row per strategy: error 0 when equal, or equal up to a
/// first difference that was a tie (the note says where; comparing stops
/// there); the relative distance from the nearest tie otherwise.
pub fn check_generate<D: GpuDevice>(
    dev: &mut D,
    case: &Case,
    length: usize,
    seed: u64,
    mode: GenMode,
) -> Result<Vec<SelftestRow>> {
    check_generate_with(dev, case, length, seed, &strategies(), mode)
}

/// [`check_generate`] with the given strategies, one sequence (and row) each.
pub fn check_generate_with<D: GpuDevice>(
    dev: &mut D,
    case: &Case,
    length: usize,
    seed: u64,
    strategies: &[Strategy],
    mode: GenMode,
) -> Result<Vec<SelftestRow>> {
    let (v, h, _, t) = case.shape.vhbt();
    let layout = ParamLayout::new(v, h);
    let seed_indices = &case.x[..t];
    let stream = (seed >> 32) as u32;
    let d_params = dev.upload_new_f32(case.params.flat())?;
    let launcher = GenerateLauncher::default();
    let kernel = generate_kernel_for(dev, case.shape, length, strategies.len(), mode);
    let req = GenerateRequest {
        seed_indices,
        maxlen: t,
        length,
        strategies,
        seed,
        stream,
        mode,
    };
    let got = launcher.generate(dev, d_params, layout, &req);
    dev.free(d_params)?;
    let got = got?;
    let want = match mode {
        GenMode::Window => req.run_on(CpuModel::new(&case.params), v)?,
        GenMode::Stateful => {
            crate::stateful::generate_stateful(&case.params, &req, &mut crate::sample::no_progress)?
        }
    };
    let shape = Shape {
        seq_len: t,
        batch: strategies.len(),
        ..case.shape
    };
    let mut rows = Vec::new();
    for (j, ((g, w), &strategy)) in got.iter().zip(&want).zip(strategies).enumerate() {
        let (mut err, mut note, mut bound) = (0.0, None, 0.0);
        if g.len() != w.len() {
            err = f64::INFINITY;
            note = Some(format!("{} characters, expected {}", g.len(), w.len()));
        } else if let Some(k) = g.iter().zip(w).position(|(a, b)| a != b) {
            let (dist, allowed) = tie_distance(
                &case.params,
                mode,
                t,
                seed_indices,
                strategy,
                seed,
                stream.wrapping_add(j as u32),
                k,
                &w[..k],
                (g[k], w[k]),
            );
            bound = allowed;
            err = dist;
            note = Some(format!(
                "first difference at character {k} (device {}, CPU {}): {}",
                g[k],
                w[k],
                if dist <= allowed {
                    "a tie within rounding"
                } else {
                    "NOT a tie"
                }
            ));
        }
        rows.push(SelftestRow {
            kernel: kernel.into(),
            output: format!("{length} chars, {strategy}"),
            shape: match mode {
                GenMode::Window => format!("{shape} (window {t})"),
                GenMode::Stateful => format!("{shape} (stateful, seed {t})"),
            },
            metric: Metric::MaxRel,
            rel_err: err,
            bound,
            pass: err <= bound,
            note,
        });
    }
    Ok(rows)
}

/// How close the draw of character `k` (device and CPU choices `ab`, after
/// the common prefix `cpu_prefix`) in `mode` was to a tie, as (relative
/// distance, allowed distance). The CPU's probabilities of that draw: the
/// window of the last `maxlen` of seed ++ prefix (window mode), or the
/// state primed on all of it (stateful). Temperature: the largest relative distance between u
/// and the CPU's cumulative boundaries between the two choices; a weight
/// p^(1/T) carries 1/T times the probabilities' relative error, so the
/// allowance is `TIE_REL / min(T, 1)`. Greedy: the relative difference of
/// the two probabilities. Uniform (floor(u V) ignores the model): never a tie.
#[allow(clippy::too_many_arguments)]
pub fn tie_distance(
    params: &Params<f32>,
    mode: GenMode,
    maxlen: usize,
    seed_indices: &[u32],
    strategy: Strategy,
    seed: u64,
    stream: u32,
    k: usize,
    cpu_prefix: &[u32],
    ab: (u32, u32),
) -> (f64, f64) {
    let all: Vec<u32> = seed_indices.iter().chain(cpu_prefix).copied().collect();
    let probs = match mode {
        GenMode::Window => {
            let window = &all[all.len().saturating_sub(maxlen)..];
            cpu::predict(params, window, window.len())
        }
        // The generation that drew `ab` ran on this model and seed, so
        // neither fails; if one did, nothing is a tie.
        GenMode::Stateful => match StatefulModel::new(params, 1)
            .and_then(|mut m| m.prime(&all).map(<[f32]>::to_vec))
        {
            Ok(p) => p,
            Err(_) => return (f64::INFINITY, TIE_REL),
        },
    };
    let u = f64::from(Philox::new(seed).uniform_f32(Purpose::Sample, stream, k as u64));
    let (lo, hi) = (ab.0.min(ab.1) as usize, ab.0.max(ab.1) as usize);
    match strategy {
        Strategy::Greedy => {
            let (pa, pb) = (f64::from(probs[lo]), f64::from(probs[hi]));
            ((pa - pb).abs() / pa.max(pb), TIE_REL)
        }
        Strategy::Temperature(t) => {
            let mut acc = 0.0;
            let cum: Vec<f64> = reweight(&probs, t)
                .into_iter()
                .map(|x| {
                    acc += x;
                    acc
                })
                .collect();
            let worst = cum[lo..hi]
                .iter()
                .map(|&c| (c - u).abs() / c.max(u))
                .fold(0.0, f64::max);
            (worst, TIE_REL / t.min(1.0))
        }
        Strategy::Uniform => (f64::INFINITY, TIE_REL),
    }
}
