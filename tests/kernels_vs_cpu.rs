//! The kernels of `kernels/` against the CPU reference, on random inputs
//! drawn fresh every run (the seed is printed; set CHARLSTM_TEST_SEED to
//! replay). Written once, generic over [`GpuDevice`], so the simulator and a
//! real GPU run the same checks. Outputs are poisoned with NaN before each
//! launch; tolerances are `abs + rel * |ref|`, with the worst errors printed.

mod common;
use common::{Rng, seed};

use charlstm_cuda::Result;
use charlstm_cuda::cpu::RmsProp;
use charlstm_cuda::gpu::device::{DeviceError, DevicePtr, GpuDevice, KernelArg, LaunchConfig};
use charlstm_cuda::gpu::head::{HeadBuffers, HeadDims, HeadLauncher};
use charlstm_cuda::gpu::ptx;
use charlstm_cuda::gpu::rmsprop::{ParamLayout, RmsPropLauncher};
use charlstm_cuda::model::Params;

// ---------------------------------------------------------------- helpers

/// Checks `got` against `want` with `|got - want| <= abs + rel * |want|`,
/// printing the worst absolute and relative errors and a few pairs.
fn check(name: &str, got: &[f32], want: &[f64], abs: f64, rel: f64) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let (mut max_abs, mut max_rel, mut bad) = (0f64, 0f64, Vec::new());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (f64::from(g) - w).abs();
        max_abs = max_abs.max(err);
        max_rel = max_rel.max(err / w.abs().max(1e-30));
        if err.is_nan() || err > abs + rel * w.abs() {
            bad.push((i, g, w));
        }
    }
    println!(
        "{name}: {} values, max abs err {max_abs:.3e}, max rel err {max_rel:.3e}, sample {:?}",
        got.len(),
        got.iter().zip(want).take(3).collect::<Vec<_>>()
    );
    assert!(
        bad.is_empty(),
        "{name}: {} of {} outside {abs:e} + {rel:e}*|ref|, first (index, got, want): {:?}",
        bad.len(),
        got.len(),
        &bad[..bad.len().min(5)]
    );
}

fn poisoned<D: GpuDevice>(dev: &mut D, n: usize) -> Result<DevicePtr> {
    dev.upload_new_f32(&vec![f32::NAN; n])
}

// ---------------------------------------------------------------- RMSprop

/// One RMSprop step over a random model: the kernel must equal
/// `RmsProp::step` in f32 (IEEE ops on both sides: at most 1 ulp, expected 0).
fn rmsprop_matches_cpu<D: GpuDevice>(dev: &mut D, rng: &mut Rng) -> Result<()> {
    let (v, h) = (rng.range(1, 40), rng.range(1, 40));
    let layout = ParamLayout::new(v, h);
    let n = layout.len();
    let opt = RmsProp {
        lr: 10f64.powf(-(rng.range(1, 4) as f64)),
        rho: 0.9,
        eps: 1e-7,
    };
    let params = layout.unflatten(&rng.vec(n, 1.0));
    // Some mean squares zero (the first step), some not; some gradients zero.
    let ms = layout.unflatten(
        &(0..n)
            .map(|i| if i % 3 == 0 { 0.0 } else { rng.f32(1.0).abs() })
            .collect::<Vec<_>>(),
    );
    let grads = layout.unflatten(
        &(0..n)
            .map(|i| if i % 7 == 0 { 0.0 } else { rng.f32(2.0) })
            .collect::<Vec<_>>(),
    );

    let d_p = dev.upload_new_f32(&layout.flatten(&params))?;
    let d_ms = dev.upload_new_f32(&layout.flatten(&ms))?;
    let d_g = dev.upload_new_f32(&layout.flatten(&grads))?;
    RmsPropLauncher::default().update(dev, &opt, d_p, d_ms, d_g, n)?;
    dev.synchronize()?;
    let got_p = dev.download_vec_f32(d_p, n)?;
    let got_ms = dev.download_vec_f32(d_ms, n)?;
    for p in [d_p, d_ms, d_g] {
        dev.free(p)?;
    }

    let (mut want_p, mut want_ms) = (params.clone(), ms.clone());
    opt.step(&mut want_p, &mut want_ms, &grads);
    let ulps = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x.to_bits() as i64 - y.to_bits() as i64).unsigned_abs())
            .max()
            .unwrap_or(0)
    };
    let (up, um) = (
        ulps(&got_p, &layout.flatten(&want_p)),
        ulps(&got_ms, &layout.flatten(&want_ms)),
    );
    println!(
        "rmsprop V={v} H={h} n={n} lr={}: max ulp diff params {up}, ms {um}",
        opt.lr
    );
    assert!(
        up <= 1 && um <= 1,
        "rmsprop differs from RmsProp::step by {up} / {um} ulp"
    );
    Ok(())
}

// ---------------------------------------------------------------- head

struct HeadRef {
    loss_mean: f64,
    probs: Vec<f64>,
    dlogits: Vec<f64>,
    dh: Vec<f64>,
    d_dense_kernel: Vec<f64>,
    d_dense_bias: Vec<f64>,
}

/// The head in f64, plainly (the math of src/cpu forward::head / backward).
fn head_ref(h: &[f32], w: &[f32], bias: &[f32], y: &[u32], d: HeadDims) -> HeadRef {
    let HeadDims {
        batch: b,
        hidden: hh,
        vocab: v,
    } = d;
    let scale = 1.0 / b as f64;
    let mut r = HeadRef {
        loss_mean: 0.0,
        probs: vec![0.0; b * v],
        dlogits: vec![0.0; b * v],
        dh: vec![0.0; b * hh],
        d_dense_kernel: vec![0.0; hh * v],
        d_dense_bias: vec![0.0; v],
    };
    for row in 0..b {
        let logits: Vec<f64> = (0..v)
            .map(|j| {
                f64::from(bias[j])
                    + (0..hh)
                        .map(|k| f64::from(h[row * hh + k]) * f64::from(w[k * v + j]))
                        .sum::<f64>()
            })
            .collect();
        let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let log_z = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
        r.loss_mean += (log_z - logits[y[row] as usize]) * scale;
        for j in 0..v {
            let p = (logits[j] - log_z).exp();
            r.probs[row * v + j] = p;
            let dl = (p - if j == y[row] as usize { 1.0 } else { 0.0 }) * scale;
            r.dlogits[row * v + j] = dl;
            r.d_dense_bias[j] += dl;
            for k in 0..hh {
                r.d_dense_kernel[k * v + j] += f64::from(h[row * hh + k]) * dl;
                r.dh[row * hh + k] += dl * f64::from(w[k * v + j]);
            }
        }
    }
    r
}

fn head_matches_cpu<D: GpuDevice>(
    dev: &mut D,
    rng: &mut Rng,
    dims: HeadDims,
    with_probs: bool,
) -> Result<()> {
    let HeadDims {
        batch: b,
        hidden: hh,
        vocab: v,
    } = dims;
    let h = rng.vec(b * hh, 1.0);
    let w = rng.vec(hh * v, 0.5);
    let bias = rng.vec(v, 0.5);
    let y: Vec<u32> = (0..b).map(|_| rng.range(0, v) as u32).collect();
    let want = head_ref(&h, &w, &bias, &y, dims);

    let loss_start = 0.25f32; // loss_sum accumulates: it must end at 0.25 + mean loss
    let bufs = HeadBuffers {
        h: dev.upload_new_f32(&h)?,
        dense_kernel: dev.upload_new_f32(&w)?,
        dense_bias: dev.upload_new_f32(&bias)?,
        targets: dev.upload_new_u32(&y)?,
        probs: if with_probs {
            poisoned(dev, b * v)?
        } else {
            DevicePtr::NULL
        },
        dlogits: poisoned(dev, b * v)?,
        dh: poisoned(dev, b * hh)?,
        d_dense_kernel: poisoned(dev, hh * v)?,
        d_dense_bias: poisoned(dev, v)?,
        loss_sum: dev.upload_new_f32(&[loss_start])?,
    };
    HeadLauncher::default().fwd_bwd(dev, dims, &bufs, 1.0 / b as f32)?;
    dev.synchronize()?;
    println!("head B={b} H={hh} V={v} probs={with_probs}");
    let loss = dev.download_vec_f32(bufs.loss_sum, 1)?[0] - loss_start;
    check("loss", &[loss], &[want.loss_mean], 1e-5, 1e-5);
    if with_probs {
        check(
            "probs",
            &dev.download_vec_f32(bufs.probs, b * v)?,
            &want.probs,
            1e-6,
            1e-4,
        );
    }
    check(
        "dlogits",
        &dev.download_vec_f32(bufs.dlogits, b * v)?,
        &want.dlogits,
        1e-7,
        1e-4,
    );
    check(
        "dh",
        &dev.download_vec_f32(bufs.dh, b * hh)?,
        &want.dh,
        1e-6,
        1e-4,
    );
    check(
        "d_dense_kernel",
        &dev.download_vec_f32(bufs.d_dense_kernel, hh * v)?,
        &want.d_dense_kernel,
        1e-6,
        1e-4,
    );
    check(
        "d_dense_bias",
        &dev.download_vec_f32(bufs.d_dense_bias, v)?,
        &want.d_dense_bias,
        1e-6,
        1e-4,
    );
    for p in [
        bufs.h,
        bufs.dense_kernel,
        bufs.dense_bias,
        bufs.targets,
        bufs.probs,
        bufs.dlogits,
        bufs.dh,
        bufs.d_dense_kernel,
        bufs.d_dense_bias,
        bufs.loss_sum,
    ] {
        if p != DevicePtr::NULL {
            dev.free(p)?;
        }
    }
    Ok(())
}

/// Every kernel check on one device.
fn all_kernels_match_cpu<D: GpuDevice>(dev: &mut D, seed: u64) -> Result<()> {
    let mut rng = Rng(seed);
    for _ in 0..3 {
        rmsprop_matches_cpu(dev, &mut rng)?;
    }
    // Shapes that cross the warp (32) and block (256) sizes, plus a random one.
    let shapes = [(1, 1, 2), (3, 33, 57), (2, 5, 300), (4, 128, 65)];
    for (b, h, v) in shapes {
        head_matches_cpu(
            dev,
            &mut rng,
            HeadDims {
                batch: b,
                hidden: h,
                vocab: v,
            },
            true,
        )?;
    }
    let dims = HeadDims {
        batch: rng.range(1, 9),
        hidden: rng.range(1, 80),
        vocab: rng.range(2, 300),
    };
    head_matches_cpu(dev, &mut rng, dims, false)?;
    Ok(())
}

#[test]
fn kernels_match_cpu_on_the_simulator() {
    if !ptx::BUILT_WITH_KERNELS {
        println!("skipped: built without kernels (run bash scripts/setup-cuda.sh)");
        return;
    }
    let seed = seed();
    let mut dev = charlstm_cuda::gpu::SimDevice::new(seed);
    println!("device: {}", dev.name());
    all_kernels_match_cpu(&mut dev, seed).unwrap();
}

#[test]
fn kernels_match_cpu_on_cuda() {
    if !ptx::BUILT_WITH_KERNELS {
        println!("SKIPPED: built without kernels (run bash scripts/setup-cuda.sh)");
        return;
    }
    let mut dev = match charlstm_cuda::gpu::CudaDevice::new(0) {
        Ok(dev) => dev,
        Err(e) => {
            println!("SKIPPED: no GPU ({e})");
            return;
        }
    };
    println!("device: {}", dev.name());
    all_kernels_match_cpu(&mut dev, seed()).unwrap();
}

// ------------------------------------------- launcher contracts, no device

/// Records launches without running them: checks the launchers' grid and
/// argument arithmetic and their shared-memory check on any machine.
#[derive(Default)]
struct RecordingDevice {
    launches: Vec<(String, String, LaunchConfig, Vec<KernelArg>)>,
    next: u64,
    max_shared: u32,
}

impl GpuDevice for RecordingDevice {
    fn name(&self) -> String {
        "recording device (runs nothing)".into()
    }
    fn alloc(&mut self, bytes: usize) -> Result<DevicePtr> {
        self.next += 256 + bytes as u64;
        Ok(DevicePtr(self.next))
    }
    fn alloc_zeroed(&mut self, bytes: usize) -> Result<DevicePtr> {
        self.alloc(bytes)
    }
    fn free(&mut self, _: DevicePtr) -> Result<()> {
        Ok(())
    }
    fn upload(&mut self, _: DevicePtr, _: &[u8]) -> Result<()> {
        Ok(())
    }
    fn download(&mut self, _: DevicePtr, _: &mut [u8]) -> Result<()> {
        Ok(())
    }
    fn launch(
        &mut self,
        module: &str,
        kernel: &str,
        cfg: LaunchConfig,
        args: &[KernelArg],
    ) -> Result<()> {
        self.launches
            .push((module.into(), kernel.into(), cfg, args.to_vec()));
        Ok(())
    }
    fn synchronize(&mut self) -> Result<()> {
        Ok(())
    }
    fn max_shared_bytes(&self) -> u32 {
        self.max_shared
    }
    fn time<F: FnOnce(&mut Self) -> Result<()>>(&mut self, f: F) -> Result<f64> {
        f(self).map(|()| 0.0)
    }
}

#[test]
fn launchers_build_the_documented_launches() {
    let mut dev = RecordingDevice {
        max_shared: 48 * 1024,
        ..Default::default()
    };
    let layout = ParamLayout::new(57, 128);
    let n = layout.len();
    let p = |d: &mut RecordingDevice| d.alloc(4 * n).unwrap();
    let (a, b, c) = (p(&mut dev), p(&mut dev), p(&mut dev));
    RmsPropLauncher::default()
        .update(&mut dev, &RmsProp::default(), a, b, c, n)
        .unwrap();
    let (module, kernel, cfg, args) = &dev.launches[0];
    assert_eq!(
        (module.as_str(), kernel.as_str()),
        ("rmsprop", "rmsprop_update_f32")
    );
    assert_eq!(args.len(), 7);
    assert_eq!(args[3], KernelArg::U32(n as u32));
    assert_eq!(args[6], KernelArg::F32(1e-7));
    assert!(cfg.grid[0] as usize * cfg.block[0] as usize >= n);

    let dims = HeadDims {
        batch: 128,
        hidden: 128,
        vocab: 57,
    };
    let bufs = HeadBuffers {
        h: a,
        dense_kernel: a,
        dense_bias: a,
        targets: a,
        probs: DevicePtr::NULL,
        dlogits: a,
        dh: a,
        d_dense_kernel: a,
        d_dense_bias: a,
        loss_sum: a,
    };
    HeadLauncher::default()
        .fwd_bwd(&mut dev, dims, &bufs, 1.0 / 128.0)
        .unwrap();
    let (_, kernel, cfg, args) = &dev.launches[1];
    assert_eq!(kernel, "head_fwd_bwd_f32");
    assert_eq!(args.len(), 12);
    assert_eq!((cfg.grid[0], cfg.shared_bytes), (128, (128 + 57) * 4));
    assert_eq!(cfg.block[0] % 32, 0);
    let (_, kernel, cfg, args) = &dev.launches[2];
    assert_eq!(kernel, "head_wgrad_bwd_f32");
    assert_eq!(args.len(), 7);
    assert!(cfg.grid[0] as usize * cfg.block[0] as usize >= 128 * 57 + 57);

    // Too much shared memory is a typed error, not a failed launch.
    dev.max_shared = 512;
    let err = HeadLauncher::default()
        .fwd_bwd(&mut dev, dims, &bufs, 1.0)
        .unwrap_err();
    assert!(
        matches!(
            err,
            charlstm_cuda::Error::Device(DeviceError::SharedMemory {
                requested: 740,
                limit: 512,
                ..
            })
        ),
        "{err}"
    );
}

#[test]
fn param_layout_offsets_and_round_trip() {
    let layout = ParamLayout::new(5, 3);
    let r = layout.ranges();
    assert_eq!(r.map(|r| r.start), [0, 60, 96, 108, 123]);
    assert_eq!(layout.len(), 128);
    assert_eq!(layout.range("dense.kernel"), Some(108..123));
    let mut rng = Rng(seed());
    let flat = rng.vec(layout.len(), 1.0);
    let p: Params<f32> = layout.unflatten(&flat);
    assert_eq!(p.len(), layout.len());
    assert_eq!(p.dense_bias, flat[123..]);
    assert_eq!(layout.flatten(&p), flat);
}
