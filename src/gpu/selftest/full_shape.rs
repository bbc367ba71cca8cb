//! The selftest's engine and generation checks at the Keras job's shape
//! ([`Shape::KERAS`]: V 57, H 128, B 128, T 60), sized for the simulator
//! (issue 16; `selftest --full-shape`, tests/full_shape.rs).
//!
//! The small shapes of [`SelftestShapes::small`](super::SelftestShapes::small)
//! cross what the kernels' index arithmetic depends on, but not everything
//! the real size has: the persistent kernels' 512-thread blocks carrying
//! four rows each over all 72 shared-memory and 56 register rows of
//! `recurrent_kernel` (on the simulator's two multiprocessors), 32 blocks, 60
//! steps, the weight-gradient GEMM's 16 splits of 480 rows (every small
//! shape has at most 64 per split), a 60-character generation window. A
//! GPU runs the whole selftest at that
//! shape; on the simulator this runs the checks that exercise all of it
//! at once, in about 35 s:
//!
//! 1. training, [`check_training`] at the Keras shape for
//!    [`FullShape::steps`] steps taken as the trainer takes them: the first
//!    as launches, the second as the replay of the captured graph (on a
//!    device that captures), each from the CPU engine's state (loss,
//!    gradients, weights, RMSprop state);
//! 2. generation, [`check_generate_with`] from a random model at the Keras
//!    shape (the selftest's conditioning), a 60-character window, the
//!    notebook's four temperatures ([`Strategy::KERAS`]);
//! 3. stateful generation (`--gen-mode stateful`, `generate_stateful_f32`)
//!    from the same model and 60-character seed: primed once, then one
//!    step per character, against `stateful::generate_stateful`, the same
//!    characters.
//!
//! The rows and bounds are those checks' own. Each phase also says what it
//! cost: wall time, and per kernel what the device counted
//! ([`GpuDevice::take_kernel_counts`]: the simulator's thread-instructions).

use std::fmt;
use std::time::Instant;

use super::kernels::Case;
use super::{SelftestReport, Shape, check_generate_with, check_training, generate_kernel, record};
use crate::error::Result;
use crate::gpu::device::{GpuDevice, KernelCount};
use crate::sample::GenMode;
use crate::sample::{Purpose, RngStream, Strategy};

/// Philox stream of the generation phase's model and window.
const STREAM_FULL_SHAPE: u32 = 0xf0_11_5a_9e;

/// What the full-shape check runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FullShape {
    /// The shape of every phase.
    pub shape: Shape,
    /// Training steps compared, each from the CPU's state: the first runs as
    /// launches (the engine's warm-up), the later ones as the captured graph.
    pub steps: usize,
    /// Characters generated per temperature, in each generation mode.
    pub gen_length: usize,
}

impl FullShape {
    /// The Keras job: two steps (one launched, one the graph's replay) and
    /// 20 characters per temperature.
    pub fn keras() -> Self {
        FullShape {
            shape: Shape::KERAS,
            steps: 2,
            gen_length: 20,
        }
    }
}

impl fmt::Display for FullShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}; training {} steps, generation (window and stateful) {} characters per \
             temperature",
            self.shape, self.steps, self.gen_length
        )
    }
}

/// What one phase cost.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Phase {
    /// What ran.
    pub name: String,
    /// Wall time on the host (the simulator: the simulation).
    pub seconds: f64,
    /// Per kernel, what the device counted (empty on a GPU).
    pub kernels: Vec<KernelCount>,
}

impl Phase {
    /// Thread-instructions of all its kernels.
    pub fn instructions(&self) -> u64 {
        self.kernels.iter().map(|k| k.instructions).sum()
    }
}

/// The rows of the checks and what each phase cost.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct FullShapeReport {
    /// The checks' rows, as the selftest's.
    pub report: SelftestReport,
    /// Training, then generation in window mode, then in stateful mode.
    pub phases: Vec<Phase>,
}

/// Runs the three phases on `dev`, inputs drawn from `seed`. As in
/// [`run`](super::run), a check that fails to run is a failing row.
pub fn run_full_shape<D: GpuDevice>(
    dev: &mut D,
    full: FullShape,
    seed: u64,
) -> Result<FullShapeReport> {
    let shape = full.shape;
    let mut out = FullShapeReport::default();
    let _ = dev.take_kernel_counts(); // count from here
    let started = Instant::now();
    let training = check_training(dev, shape, full.steps, seed);
    record(&mut out.report, "GpuEngine", &shape, training)?;
    out.phases.push(Phase {
        name: format!(
            "training, {} steps (step 1 launched, the rest the captured graph)",
            full.steps
        ),
        seconds: started.elapsed().as_secs_f64(),
        kernels: dev.take_kernel_counts(),
    });

    // One random model and 60-character seed for both generation modes.
    let one_window = Shape { batch: 1, ..shape };
    let mut rng = RngStream::new(seed, Purpose::Sample, STREAM_FULL_SHAPE);
    let case = Case::random(one_window, &mut rng)?;
    let strategies = Strategy::KERAS;
    for mode in [GenMode::Window, GenMode::Stateful] {
        let started = Instant::now();
        let kernel = generate_kernel(dev, one_window, full.gen_length, mode);
        let generated = check_generate_with(dev, &case, full.gen_length, seed, &strategies, mode);
        record(&mut out.report, kernel, &one_window, generated)?;
        out.phases.push(Phase {
            name: format!(
                "generation, {} characters x {} temperatures, {}",
                full.gen_length,
                strategies.len(),
                match mode {
                    GenMode::Window => format!("window {}", shape.seq_len),
                    GenMode::Stateful => format!("stateful from a seed of {}", shape.seq_len),
                }
            ),
            seconds: started.elapsed().as_secs_f64(),
            kernels: dev.take_kernel_counts(),
        });
    }
    Ok(out)
}

/// Its wall time and thread-instructions, then one line per kernel
/// (launches, thread-instructions, share of the phase).
impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.instructions();
        write!(f, "{}: {:.1} s", self.name, self.seconds)?;
        if total > 0 {
            write!(
                f,
                ", {total} thread-instructions ({:.1} M/s)",
                total as f64 / self.seconds.max(1e-9) / 1e6
            )?;
        }
        writeln!(f)?;
        let width = self
            .kernels
            .iter()
            .map(|k| k.kernel.len())
            .max()
            .unwrap_or(0);
        for k in &self.kernels {
            writeln!(
                f,
                "  {:<width$}  {:>3} launches  {:>13} thread-instructions  {:>5.1} %",
                k.kernel,
                k.launches,
                k.instructions,
                100.0 * k.instructions as f64 / total.max(1) as f64
            )?;
        }
        Ok(())
    }
}
