//! `gpu::selftest::run` on the simulator: it passes on the kernels as they
//! are, names every kernel, and fails (in the right rows) on a device that
//! skips one launch or returns one wrong value, so a pass means something.

mod common;
use common::seed;

use charlstm_cuda::Result;
use charlstm_cuda::gpu::device::{DevicePtr, GpuDevice, KernelArg, LaunchConfig};
use charlstm_cuda::gpu::selftest::{self, KERNELS, SelftestReport, SelftestShapes};
use charlstm_cuda::gpu::{SimDevice, ptx};

/// What the faulty device does wrong, once.
#[derive(Clone, Copy)]
enum Fault {
    /// Does not run the n-th (1-based) launch of this kernel.
    SkipLaunch(&'static str, usize),
    /// After the first launch of this kernel, scales the largest-magnitude
    /// element of the f32 output that is argument `arg` (`len` elements) by
    /// `1 + 1e-3`: a kernel that is subtly wrong in one place.
    Corrupt {
        kernel: &'static str,
        arg: usize,
        len: usize,
    },
}

/// The simulator, with one fault injected.
struct Faulty {
    inner: SimDevice,
    fault: Fault,
    seen: usize,
}

impl GpuDevice for Faulty {
    fn name(&self) -> String {
        format!("{} with a fault", self.inner.name())
    }
    fn alloc(&mut self, bytes: usize) -> Result<DevicePtr> {
        self.inner.alloc(bytes)
    }
    fn alloc_zeroed(&mut self, bytes: usize) -> Result<DevicePtr> {
        self.inner.alloc_zeroed(bytes)
    }
    fn free(&mut self, ptr: DevicePtr) -> Result<()> {
        self.inner.free(ptr)
    }
    fn upload(&mut self, dst: DevicePtr, bytes: &[u8]) -> Result<()> {
        self.inner.upload(dst, bytes)
    }
    fn download(&mut self, src: DevicePtr, out: &mut [u8]) -> Result<()> {
        self.inner.download(src, out)
    }
    fn launch(
        &mut self,
        module: &str,
        kernel: &str,
        cfg: LaunchConfig,
        args: &[KernelArg],
    ) -> Result<()> {
        match self.fault {
            Fault::SkipLaunch(k, n) if k == kernel => {
                self.seen += 1;
                if self.seen == n {
                    return Ok(());
                }
                self.inner.launch(module, kernel, cfg, args)
            }
            Fault::Corrupt {
                kernel: k,
                arg,
                len,
            } if k == kernel => {
                self.inner.launch(module, kernel, cfg, args)?;
                self.seen += 1;
                if self.seen == 1 {
                    let KernelArg::Ptr(out) = args[arg] else {
                        panic!("argument {arg} of {kernel} is not a pointer")
                    };
                    let mut v = self.inner.download_vec_f32(out, len)?;
                    let i = (0..len)
                        .max_by(|&a, &b| v[a].abs().total_cmp(&v[b].abs()))
                        .expect("a non-empty output");
                    v[i] *= 1.001;
                    self.inner.upload_f32(out, &v)?;
                }
                Ok(())
            }
            _ => self.inner.launch(module, kernel, cfg, args),
        }
    }
    fn synchronize(&mut self) -> Result<()> {
        self.inner.synchronize()
    }
    fn max_shared_bytes(&self) -> u32 {
        self.inner.max_shared_bytes()
    }
    fn multiprocessors(&self) -> u32 {
        self.inner.multiprocessors()
    }
    fn time<F: FnOnce(&mut Self) -> Result<()>>(&mut self, f: F) -> Result<f64> {
        let start = std::time::Instant::now();
        f(self)?;
        Ok(start.elapsed().as_secs_f64())
    }
}

/// A fresh seed (printed), or `None` (after saying SKIPPED) in a build
/// without kernels.
fn sim_seed() -> Option<u64> {
    if !common::kernels() {
        return None;
    }
    Some(seed())
}

fn run_with(fault: Fault, seed: u64) -> SelftestReport {
    let mut dev = Faulty {
        inner: SimDevice::new(seed),
        fault,
        seen: 0,
    };
    let report = selftest::run(&mut dev, SelftestShapes::small(), seed).unwrap();
    print!("{report}");
    report
}

/// Whether every row of `kernel` / `output` passed (at least one such row).
fn passed(report: &SelftestReport, kernel: &str, output: &str) -> bool {
    let rows: Vec<_> = report
        .rows
        .iter()
        .filter(|r| r.kernel.contains(kernel) && r.output.starts_with(output))
        .collect();
    assert!(!rows.is_empty(), "no row {kernel} / {output}");
    rows.iter().all(|r| r.pass)
}

#[test]
fn selftest_passes_on_the_simulator_and_names_every_kernel() {
    let Some(seed) = sim_seed() else { return };
    let report = selftest::run(&mut SimDevice::new(seed), SelftestShapes::small(), seed).unwrap();
    print!("{report}");
    assert!(report.all_passed(), "{} checks failed", report.failed());
    for k in KERNELS {
        assert!(
            report.rows.iter().any(|r| r.kernel.contains(k)),
            "no row checks {k}"
        );
    }
    assert!(report.rows.iter().any(|r| r.kernel == "GpuEngine"));
}

#[test]
fn a_skipped_launch_is_caught_by_the_poison() {
    let Some(seed) = sim_seed() else { return };
    // The last forward step of the kernel check (T = 3 in the small shapes)
    // never runs: its slice of gates, c, h stays NaN, its classes u32::MAX.
    let t = SelftestShapes::small().kernels.seq_len;
    let report = run_with(Fault::SkipLaunch("lstm_cell_fwd_f32", t), seed);
    assert!(!report.all_passed());
    for output in ["gates", "c", "h", "cls"] {
        assert!(!passed(&report, "lstm_cell_fwd_f32", output), "{output}");
    }
    let gates = report
        .rows
        .iter()
        .find(|r| r.kernel == "lstm_cell_fwd_f32" && r.output == "gates")
        .unwrap();
    let note = gates.note.as_deref().unwrap_or_default();
    assert!(note.contains("NaN"), "{note}");
    // The other kernels' rows are unaffected: the failure is located.
    assert!(passed(&report, "rmsprop_update_f32", ""));
    assert!(passed(&report, "head_fwd_bwd_f32", ""));
    assert!(passed(&report, "lstm_wgrad_bwd_f32", ""));
}

#[test]
fn one_value_off_by_a_thousandth_fails_its_row() {
    let Some(seed) = sim_seed() else { return };
    let vocab = SelftestShapes::small().kernels.vocab;
    // head_wgrad_bwd_f32's argument 6 is d_dense_bias, [V].
    let fault = Fault::Corrupt {
        kernel: "head_wgrad_bwd_f32",
        arg: 6,
        len: vocab,
    };
    let report = run_with(fault, seed);
    assert!(!report.all_passed());
    assert_eq!(report.failed(), 1, "only d dense.bias should fail");
    assert!(!passed(&report, "head_wgrad_bwd_f32", "d dense.bias"));
    assert!(passed(&report, "head_wgrad_bwd_f32", "d dense.kernel"));
}

#[test]
fn a_skipped_fast_wgrad_launch_fails_only_its_rows() {
    let Some(seed) = sim_seed() else { return };
    // The first wgrad_rk_partial_f32 launch is the kernel check's first
    // fast run: its partials stay NaN, so d recurrent_kernel is NaN there
    // and differs from the second run; the reference's rows still pass.
    let report = run_with(Fault::SkipLaunch("wgrad_rk_partial_f32", 1), seed);
    let fast = "wgrad_rk_partial_f32 + wgrad_reduce_f32";
    assert!(!passed(&report, fast, "d lstm.recurrent_kernel"));
    assert_eq!(
        report.failed(),
        2,
        "the fast d recurrent_kernel and its second-run bits"
    );
    assert!(passed(
        &report,
        "lstm_wgrad_bwd_f32",
        "d lstm.recurrent_kernel"
    ));
    assert!(passed(&report, "wgrad_cls_partial_f32", "d lstm.kernel"));
}

/// Every `.entry` of the embedded kernel modules is in `selftest::KERNELS`.
#[test]
fn every_kernel_in_the_build_is_listed() {
    for m in ptx::MODULES {
        let module = m.name;
        for line in m.ptx.lines().filter(|l| l.contains(".entry ")) {
            let name = line
                .split(".entry ")
                .nth(1)
                .and_then(|rest| rest.split('(').next())
                .unwrap_or_default()
                .trim();
            assert!(
                KERNELS.contains(&name),
                "kernels/{module}.cu defines {name}, which selftest::KERNELS (and so the selftest) lacks"
            );
        }
    }
}

#[test]
fn an_empty_report_has_not_passed() {
    assert!(!SelftestReport::default().all_passed());
}
