//! Shared memory is budgeted as the hardware counts it: static + dynamic per
//! block, against the opt-in limit. The kernels that take dynamic shared
//! memory declare no static arrays (their scratch lives in the dynamic
//! block), so a launcher's fit check is the launch's whole footprint; the
//! simulator refuses static + dynamic above the limit, and above 48 KiB
//! without the kernel's opt-in, as the driver does; and the launch shapes a
//! GPU refuses.
//! The head runs at its largest vocabulary and is refused one symbol above
//! it, on the simulator here and on a GPU with the same body (generation at
//! H = 256, the other shape that filled shared memory to the byte, is in
//! tests/generate_kernel.rs).

mod common;

use charlstm_cuda::gpu::device::{DeviceError, GpuDevice, SCRATCH_FLOATS};
use charlstm_cuda::gpu::head::{HeadBuffers, HeadDims, HeadLauncher};
use charlstm_cuda::gpu::{CudaDevice, DevicePtr, SimDevice, ptx};
use charlstm_cuda::sim::{DEFAULT_SHARED_PER_BLOCK, MAX_SHARED_PER_BLOCK, ParamValue, Simulator};
use charlstm_cuda::{Error, Result};

/// `(kernel, declares static .shared, references a dynamic .extern .shared)`
/// for every entry of the embedded kernel modules.
fn shared_use() -> Vec<(String, bool, bool)> {
    let mut found = Vec::new();
    for m in ptx::MODULES {
        let dynamic: Vec<&str> = m
            .ptx
            .lines()
            .filter(|l| l.trim_start().starts_with(".extern .shared"))
            .filter_map(|l| l.split_whitespace().last())
            .map(|n| {
                n.trim_end_matches(';')
                    .split('[')
                    .next()
                    .unwrap_or_default()
            })
            .collect();
        for body in m.ptx.split(".entry ").skip(1) {
            let name = body
                .split('(')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            let declares_static = body.lines().any(|l| l.trim_start().starts_with(".shared "));
            let uses_dynamic = dynamic.iter().any(|d| body.contains(d));
            found.push((name, declares_static, uses_dynamic));
        }
    }
    found
}

#[test]
fn kernels_with_dynamic_shared_memory_declare_no_static_shared_memory() {
    if !common::kernels() {
        return;
    }
    let uses = shared_use();
    let both: Vec<&String> = uses
        .iter()
        .filter(|(_, s, d)| *s && *d)
        .map(|(n, _, _)| n)
        .collect();
    assert!(
        both.is_empty(),
        "these kernels take dynamic shared memory and also declare static shared arrays, \
         which their launchers' budgets do not count: {both:?}; move the arrays into the \
         dynamic block"
    );
    // The check sees both kinds at all (it would pass vacuously otherwise).
    assert!(uses.iter().any(|(n, _, d)| *d && n == "head_fwd_bwd_f32"));
    assert!(
        uses.iter().any(|(_, s, _)| *s),
        "no static shared memory anywhere?"
    );
}

/// The simulator budgets shared memory as the driver does: without an
/// opt-in a block gets 48 KiB, static and dynamic together; a kernel opts in
/// to more dynamic memory (`cuFuncSetAttribute`), and an opt-in whose static
/// plus dynamic exceeds the block limit is refused, naming both.
#[test]
fn simulator_refuses_static_plus_dynamic_above_the_limit() {
    if !common::kernels() {
        return;
    }
    let mut s = Simulator::new(0);
    s.load_module("block_ops", ptx::test_module("block_ops").unwrap())
        .unwrap();
    // block_sum declares a static tile of 256 floats (1 KiB) and uses no
    // dynamic memory; asking for the rest of the block's limit as dynamic
    // memory on top overflows it by exactly the static part.
    let a = s.alloc(4 * 256).unwrap();
    s.write(a, &[0u8; 4 * 256]).unwrap();
    let out = s.alloc(4).unwrap();
    let args = [ParamValue::Ptr(a), ParamValue::Ptr(out)];
    let launch = |s: &mut Simulator, dynamic: u32| {
        s.launch("block_sum", [1, 1, 1], [256, 1, 1], dynamic, &args)
    };
    assert_eq!(
        s.max_dynamic_shared("block_sum").unwrap(),
        DEFAULT_SHARED_PER_BLOCK - 1024
    );
    launch(&mut s, DEFAULT_SHARED_PER_BLOCK - 1024).unwrap();
    let e = launch(&mut s, DEFAULT_SHARED_PER_BLOCK - 1023)
        .expect_err("above the default without an opt-in")
        .to_string();
    assert!(e.contains("opt in") && e.contains("1024 static"), "{e}");
    let e = s
        .set_max_dynamic_shared("block_sum", MAX_SHARED_PER_BLOCK)
        .expect_err("static + dynamic above the limit")
        .to_string();
    assert!(e.contains("static") && e.contains("exceeds"), "{e}");
    // Within the limit it runs.
    s.set_max_dynamic_shared("block_sum", MAX_SHARED_PER_BLOCK - 1024)
        .unwrap();
    launch(&mut s, MAX_SHARED_PER_BLOCK - 1024).unwrap();
}

/// A PTX kernel with launch bounds, as `__launch_bounds__(64)` and
/// `.reqntid` emit them.
fn bounded(directive: &str) -> String {
    format!(
        ".version 9.0\n.target sm_90\n.address_size 64\n\n.visible .entry k(\n\t.param .u32 k_param_0\n)\n\
         {directive}\n{{\n\tret;\n}}\n"
    )
}

/// Launches the GPU would refuse, the simulator refuses with the reason:
/// more threads than `__launch_bounds__` allows, another shape than
/// `.reqntid`, block and grid dimensions past the hardware's.
#[test]
fn simulator_refuses_launches_the_driver_refuses() {
    let arg = [ParamValue::U32(0)];
    let mut s = Simulator::new(0);
    s.load_module("m", &bounded(".maxntid 64, 1, 1")).unwrap();
    s.launch("k", [1, 1, 1], [64, 1, 1], 0, &arg).unwrap();
    s.launch("k", [1, 1, 1], [8, 8, 1], 0, &arg).unwrap();
    let e = s
        .launch("k", [1, 1, 1], [65, 1, 1], 0, &arg)
        .unwrap_err()
        .to_string();
    assert!(e.contains(".maxntid 64") && e.contains("refuses"), "{e}");

    let mut s = Simulator::new(0);
    s.load_module("m", &bounded(".reqntid 32, 2")).unwrap();
    s.launch("k", [1, 1, 1], [32, 2, 1], 0, &arg).unwrap();
    let e = s
        .launch("k", [1, 1, 1], [64, 1, 1], 0, &arg)
        .unwrap_err()
        .to_string();
    assert!(e.contains(".reqntid [32, 2, 1]"), "{e}");

    let mut s = Simulator::new(0);
    s.load_module("m", &bounded("")).unwrap();
    for (grid, block, want) in [
        ([1, 1, 1], [1, 1, 65], "z is 65, more than 64"),
        ([1, 1, 1], [1, 1025, 1], "y is 1025, more than 1024"),
        ([1, 1, 1], [64, 32, 1], "2048 threads, more than 1024"),
        ([1, 65536, 1], [1, 1, 1], "y is 65536, more than 65535"),
        (
            [1 << 31, 1, 1],
            [1, 1, 1],
            "x is 2147483648, more than 2147483647",
        ),
    ] {
        let e = s.launch("k", grid, block, 0, &arg).unwrap_err().to_string();
        assert!(e.contains(want), "{grid:?} {block:?}: {e}");
    }
}

/// splitmix64 in [-scale, scale).
fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            scale * (2.0 * ((z >> 40) as f32 / (1u64 << 24) as f32) - 1.0)
        })
        .collect()
}

/// The head at the largest V its fit check allows on `dev` (H = 16, one
/// row): the launch runs and its loss matches an f64 reference; one symbol
/// more is refused by the launcher with `SharedMemory`, before the device.
fn head_at_its_largest_vocabulary<D: GpuDevice>(dev: &mut D) -> Result<()> {
    let hidden = 16;
    let limit = dev.max_shared_bytes() as usize;
    let vocab = limit / 4 - hidden - SCRATCH_FLOATS;
    let dims = HeadDims {
        batch: 1,
        hidden,
        vocab,
    };
    assert_eq!(
        HeadLauncher::shared_bytes(dims),
        limit,
        "fills the block exactly"
    );
    println!("head at V = {vocab}, H = {hidden}: {limit} bytes of shared memory");
    let h = values(hidden, 1, 1.0);
    let w = values(hidden * vocab, 2, 0.5);
    let b = values(vocab, 3, 0.5);
    let y = (vocab - 7) as u32;
    let up = |dev: &mut D, x: &[f32]| dev.upload_new_f32(x);
    let bufs = HeadBuffers {
        h: up(dev, &h)?,
        dense_kernel: up(dev, &w)?,
        dense_bias: up(dev, &b)?,
        targets: dev.upload_new_u32(&[y])?,
        probs: DevicePtr::NULL,
        dlogits: dev.alloc(4 * vocab)?,
        dh: dev.alloc(4 * hidden)?,
        d_dense_kernel: dev.alloc(4 * hidden * vocab)?,
        d_dense_bias: dev.alloc(4 * vocab)?,
        loss_sum: dev.alloc_zeroed(4)?,
        row_loss: DevicePtr::NULL,
    };
    let launcher = HeadLauncher::default();
    launcher.fwd_bwd(dev, dims, &bufs, 1.0)?;
    let loss = dev.download_vec_f32(bufs.loss_sum, 1)?[0];
    // f64 reference: log-sum-exp of the logits minus the target's.
    let logits: Vec<f64> = (0..vocab)
        .map(|v| {
            (0..hidden).fold(f64::from(b[v]), |acc, k| {
                acc + f64::from(h[k]) * f64::from(w[k * vocab + v])
            })
        })
        .collect();
    let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let log_z = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
    let want = log_z - logits[y as usize];
    let rel = (f64::from(loss) - want).abs() / want.abs();
    println!("loss {loss} vs f64 {want}: rel err {rel:.2e}");
    assert!(rel < 1e-4, "loss {loss}, want {want}");

    let over = HeadDims {
        vocab: vocab + 1,
        ..dims
    };
    let e = launcher
        .fwd_bwd(dev, over, &bufs, 1.0)
        .expect_err("one symbol over the limit");
    assert!(
        matches!(
            e,
            Error::Device(DeviceError::SharedMemory { requested, limit: l, .. })
                if requested == limit + 4 && l as usize == limit
        ),
        "{e:?}"
    );
    for p in [
        bufs.h,
        bufs.dense_kernel,
        bufs.dense_bias,
        bufs.targets,
        bufs.dlogits,
        bufs.dh,
        bufs.d_dense_kernel,
        bufs.d_dense_bias,
        bufs.loss_sum,
    ] {
        dev.free(p)?;
    }
    Ok(())
}

#[test]
fn head_at_its_largest_vocabulary_on_the_simulator() {
    if !common::kernels() {
        return;
    }
    head_at_its_largest_vocabulary(&mut SimDevice::new(3)).unwrap();
}

#[test]
fn head_at_its_largest_vocabulary_on_cuda() {
    match CudaDevice::new(0) {
        Ok(mut dev) => head_at_its_largest_vocabulary(&mut dev).unwrap(),
        Err(e) => println!("SKIPPED: no GPU ({e})"),
    }
}
