//! The RMSprop and head kernels against the CPU reference on the
//! simulator, through the library's selftest checks (`gpu::selftest`, the
//! code `charlstm-cuda selftest` runs), at more shapes than the selftest
//! uses: edges of the warp (32) and block (256) sizes, and random ones. Random
//! inputs fresh every run (the seed is printed; CHARLSTM_TEST_SEED replays);
//! outputs poisoned with NaN before each launch. Then the launchers' grid
//! and argument arithmetic on a device that records instead of running.

mod common;
use charlstm_cuda::model::Tensor;
use common::{Rng, assert_all_pass, seed};

use charlstm_cuda::Result;
use charlstm_cuda::cpu::RmsProp;
use charlstm_cuda::gpu::device::{DeviceError, DevicePtr, GpuDevice, KernelArg, LaunchConfig};
use charlstm_cuda::gpu::head::{HeadBuffers, HeadDims, HeadLauncher};
use charlstm_cuda::gpu::ptx;
use charlstm_cuda::gpu::rmsprop::RmsPropLauncher;
use charlstm_cuda::gpu::selftest::{Case, Shape, check_head, check_rmsprop, check_targets};
use charlstm_cuda::model::ParamLayout;
use charlstm_cuda::model::Params;
use charlstm_cuda::sample::{Purpose, RngStream};

#[test]
fn kernels_match_cpu_on_the_simulator() {
    if !ptx::BUILT_WITH_KERNELS {
        println!("skipped: built without kernels (run bash scripts/setup-cuda.sh)");
        return;
    }
    let seed = seed();
    let mut dev = charlstm_cuda::gpu::SimDevice::new(seed);
    println!("device: {}", dev.name());
    all_kernels_match_cpu(&mut dev, seed);
}

/// RMSprop at random sizes, the head at shapes crossing the warp and block
/// sizes; the same body on every device.
fn all_kernels_match_cpu<D: GpuDevice>(dev: &mut D, seed: u64) {
    let mut rng = Rng(seed);
    let mut stream = RngStream::new(seed, Purpose::Sample, 0);
    for _ in 0..3 {
        let (v, h) = (rng.range(1, 40), rng.range(1, 40));
        assert_all_pass(check_rmsprop(dev, v, h, &mut stream).unwrap());
    }
    // (B, H, V) crossing the warp (32) and block (256) sizes, plus a random
    // one without the optional probabilities (as training runs it).
    let mut shapes = vec![
        (1, 1, 2, true),
        (3, 33, 57, true),
        (2, 5, 300, true),
        (4, 128, 65, true),
        // H above the block: h's copy into shared memory goes round twice.
        (1, 257, 2, true),
    ];
    shapes.push((rng.range(1, 9), rng.range(1, 80), rng.range(2, 300), false));
    for (b, h, v, with_probs) in shapes {
        let shape = Shape {
            vocab: v,
            hidden: h,
            batch: b,
            seq_len: 1, // the head sees h_{T-1} only
        };
        let case = Case::random(shape, &mut stream).unwrap();
        assert_all_pass(check_head(dev, &case, with_probs).unwrap());
    }
    // The targets of more windows than one block of 128 threads.
    let shape = Shape {
        vocab: 2,
        hidden: 1,
        batch: 129,
        seq_len: 1,
    };
    let case = Case::random(shape, &mut stream).unwrap();
    assert_all_pass(check_targets(dev, &case).unwrap());
}

#[test]
fn kernels_match_cpu_on_cuda() {
    if !common::kernels() {
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
    all_kernels_match_cpu(&mut dev, seed());
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
    fn multiprocessors(&self) -> u32 {
        2
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
        row_loss: DevicePtr::NULL,
    };
    HeadLauncher::default()
        .fwd_bwd(&mut dev, dims, &bufs, 1.0 / 128.0)
        .unwrap();
    let (_, kernel, cfg, args) = &dev.launches[1];
    assert_eq!(kernel, "head_fwd_bwd_f32");
    assert_eq!(args.len(), 12);
    // h [H], logits [V] and the reductions' 32-float scratch: the whole block.
    assert_eq!((cfg.grid[0], cfg.shared_bytes), (128, (128 + 57 + 32) * 4));
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
                requested: 868,
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
    assert_eq!(layout.range(Tensor::DenseKernel), 108..123);
    let mut rng = Rng(seed());
    let flat = rng.vec(layout.len(), 1.0);
    let p: Params<f32> = Params::from_flat(layout, flat.clone());
    assert_eq!(p.len(), layout.len());
    assert_eq!(p[Tensor::DenseBias], flat[123..]);
    assert_eq!(p.flat(), &flat[..]);
}
