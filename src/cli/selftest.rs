//! `selftest`: every kernel, and a few training steps, against the CPU
//! reference on a device, from the binary a user runs (DESIGN §7); with
//! `--full-shape`, a training step and generation at the Keras shape
//! instead (`selftest::run_full_shape`, sized for the simulator).

use std::process::ExitCode;
use std::time::Instant;

use charlstm_cuda::gpu::cuda_device::NO_CLUSTERS;
use charlstm_cuda::gpu::selftest::{self, FullShape, Phase, SelftestShapes};
use charlstm_cuda::gpu::{CudaDevice, GpuDevice, SimDevice, ptx};
use charlstm_cuda::{Backend, Device};
use charlstm_cuda::{Error, Result};

use super::args::SelftestArgs;

pub fn selftest(a: SelftestArgs) -> Result<ExitCode> {
    match checks(a) {
        // The generic hint ("use --device cpu") would be wrong here: the
        // selftest has no CPU device.
        Err(
            e @ Error::BackendUnavailable {
                backend: "cuda", ..
            },
        ) => {
            eprintln!("error: {e}");
            eprintln!("  hint: `--device sim` runs the same checks on the PTX simulator");
            Ok(ExitCode::FAILURE)
        }
        Err(e @ (Error::BackendUnavailable { .. } | Error::NoKernels { .. })) => {
            eprintln!("error: {e}");
            eprintln!("  hint: install nvcc with `bash scripts/setup-cuda.sh` and rebuild");
            Ok(ExitCode::FAILURE)
        }
        result => result,
    }
}

fn checks(a: SelftestArgs) -> Result<ExitCode> {
    let backend = pick(a.device.as_deref())?;
    let seed = a.seed.unwrap_or_else(fresh_seed);
    // One arm per device kind; the checks themselves are the same code for all.
    let checks = |shapes| {
        if a.full_shape {
            Checks::FullShape(FullShape::keras())
        } else {
            Checks::All(shapes)
        }
    };
    match backend {
        Backend::Sim => report(
            SimDevice::new(seed),
            checks(SelftestShapes::small()),
            seed,
            a.json,
        ),
        Backend::Cuda => report(
            CudaDevice::new(0)?,
            checks(SelftestShapes::full()),
            seed,
            a.json,
        ),
        Backend::Cpu => Err(cpu_refused()),
    }
}

/// What the selftest runs.
#[derive(Clone, Copy)]
enum Checks {
    /// Every kernel, generation and training steps (`selftest::run`).
    All(SelftestShapes),
    /// Training and generation at the Keras shape (`selftest::run_full_shape`).
    FullShape(FullShape),
}

/// The device to check: `--device`, else CUDA when `auto` finds a usable
/// GPU, else the simulator. Refuses what this build or machine cannot run.
fn pick(device: Option<&str>) -> Result<Backend> {
    match device {
        None | Some("auto") => match Device::Auto.resolve() {
            Ok((Backend::Cuda, _)) => Ok(Backend::Cuda),
            _ => Device::Exact(Backend::Sim).resolve().map(|(b, _)| b),
        },
        Some(name) => match name.parse::<Device>()? {
            Device::Exact(Backend::Cpu) => Err(cpu_refused()),
            d => d.resolve().map(|(b, _)| b),
        },
    }
}

fn cpu_refused() -> Error {
    Error::InvalidArgument {
        name: "--device",
        what: "cpu: the selftest checks a device against the CPU reference; use cuda or sim".into(),
    }
}

/// Which kernels this binary embeds, in words.
fn kernels_from() -> &'static str {
    match ptx::KERNELS_FROM {
        "nvcc" => "compiled by nvcc from kernels/ when this binary was built",
        _ => "the prebuilt ones of kernels/prebuilt/ (no nvcc at build time)",
    }
}

/// Nanoseconds of the clock: a different seed every run.
fn fresh_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

/// Runs the checks on `dev` and prints the table (or JSON); exit 1 when any fails.
fn report<D: GpuDevice>(mut dev: D, checks: Checks, seed: u64, json: bool) -> Result<ExitCode> {
    let name = dev.name();
    if !json {
        println!("device: {name}");
        println!("kernels: {}", kernels_from());
        println!("seed: {seed} (replay with --seed {seed})");
        match checks {
            Checks::All(shapes) => println!(
                "shapes: kernels {}; training {}, {} steps",
                shapes.kernels, shapes.training, shapes.steps
            ),
            Checks::FullShape(full) => println!("full shape: {full}"),
        }
        println!();
    }
    let clusters = dev.clusters();
    if !clusters && matches!(checks, Checks::All(_)) {
        eprintln!(
            "note: {name} runs no thread-block clusters here (compute capability below 9.0, or \
             {NO_CLUSTERS} set): the cluster kernels' rows are left out"
        );
    }
    let started = Instant::now();
    let (report, phases): (_, Vec<Phase>) = match checks {
        Checks::All(shapes) => (selftest::run(&mut dev, shapes, seed)?, Vec::new()),
        Checks::FullShape(full) => {
            let out = selftest::run_full_shape(&mut dev, full, seed)?;
            (out.report, out.phases)
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let (failed, total) = (report.failed(), report.rows.len());
    if json {
        let mut out = serde_json::json!({
            "device": name,
            "kernels": ptx::KERNELS_FROM,
            "seed": seed,
            "seconds": seconds,
            "passed": report.all_passed(),
            "failed": failed,
            "clusters": clusters,
            "rows": report.rows,
        });
        match checks {
            Checks::All(shapes) => out["shapes"] = serde_json::json!(shapes),
            Checks::FullShape(full) => {
                out["full_shape"] = serde_json::json!(full);
                out["phases"] = serde_json::json!(phases);
            }
        }
        println!("{out}");
    } else {
        print!("{report}");
        println!();
        for phase in &phases {
            print!("{phase}");
        }
        if !phases.is_empty() {
            println!();
        }
        if report.all_passed() {
            println!("all {total} checks passed ({seconds:.1} s)");
        } else {
            println!("{failed} of {total} checks FAILED ({seconds:.1} s)");
        }
    }
    if report.all_passed() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("error: {failed} of {total} selftest checks failed");
    eprintln!(
        "  hint: each FAIL row names the kernel and output that disagree with the CPU reference; \
         replay with --seed {seed}"
    );
    Ok(ExitCode::FAILURE)
}
