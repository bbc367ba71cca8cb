//! kernels/lstm.cu on the simulator, through the library's selftest checks
//! (`gpu::selftest`, the code `charlstm-cuda selftest` runs) at more shapes
//! than the selftest uses: the forward over all T steps (gates, c, h, the
//! decoded classes) and the backward (dz, the three weight gradients)
//! against the f64 CPU reference `cpu::trace`, plus the head on the same
//! cases. Random shapes and data, fresh every run (seed printed;
//! CHARLSTM_TEST_SEED replays); every output poisoned before the launches.
//! The chain forward -> head -> backward on the device is the selftest's
//! training check (tests/selftest.rs).

mod common;
use common::{Rng, assert_all_pass, seed};

use charlstm_cuda::gpu::device::{DeviceError, DevicePtr, GpuDevice};
use charlstm_cuda::gpu::lstm::{LstmBuffers, LstmDims, LstmLauncher};
use charlstm_cuda::gpu::selftest::{
    Case, Shape, check_head, check_lstm_backward, check_lstm_forward,
};
use charlstm_cuda::gpu::{CudaDevice, SimDevice, ptx};
use charlstm_cuda::sample::{Purpose, RngStream};
use charlstm_cuda::sim::{ParamValue as P, Simulator};

/// Fixed edge shapes (V, H, B, T): one step, one row, V > 64 so two words
/// per row, B*H across the 128-thread block; then random ones; with `full`
/// also the notebook's job.
fn all_cases<D: GpuDevice>(dev: &mut D, seed: u64, full: bool) {
    let mut rng = Rng(seed);
    let mut stream = RngStream::new(seed, Purpose::Sample, 0);
    let mut cases = vec![(5, 3, 1, 1), (70, 7, 2, 3), (66, 33, 4, 2)];
    for _ in 0..3 {
        cases.push((
            rng.range(5, 71),
            rng.range(3, 41),
            rng.range(1, 7),
            rng.range(1, 8),
        ));
    }
    if full {
        cases.push((57, 128, 128, 60));
    }
    for (vocab, hidden, batch, seq_len) in cases {
        let shape = Shape {
            vocab,
            hidden,
            batch,
            seq_len,
        };
        let case = Case::random(shape, &mut stream).unwrap();
        assert_eq!(case.corpus.words_per_row(), vocab.div_ceil(64));
        let mut rows = check_lstm_forward(dev, &case).unwrap();
        rows.extend(check_lstm_backward(dev, &case).unwrap());
        rows.extend(check_head(dev, &case, false).unwrap());
        assert_all_pass(rows);
    }
}

#[test]
fn lstm_kernels_match_cpu_on_the_simulator() {
    if !common::kernels() {
        return;
    }
    let seed = seed();
    all_cases(&mut SimDevice::new(seed), seed, false);
}

#[test]
fn lstm_kernels_match_cpu_on_cuda() {
    match CudaDevice::new(0) {
        Ok(mut dev) => all_cases(&mut dev, seed(), true),
        Err(e) => println!("SKIPPED: no GPU ({e})"),
    }
}

#[test]
fn launcher_rejects_bad_dims() {
    let mut dev = SimDevice::new(0);
    let dims = LstmDims {
        batch: 2,
        seq_len: 3,
        hidden: 4,
        vocab: 70,
        words_per_row: 1,
    };
    let p = DevicePtr(64);
    let bufs = LstmBuffers {
        corpus_words: p,
        starts: p,
        kernel: p,
        recurrent_kernel: p,
        bias: p,
        gates: p,
        c: p,
        h: p,
        cls: p,
        dz: p,
        dh: p,
        dc: p,
        d_kernel: p,
        d_recurrent_kernel: p,
        d_bias: p,
        wgrad_scratch: DevicePtr::NULL,
        h0: DevicePtr::NULL,
        c0: DevicePtr::NULL,
        dy: DevicePtr::NULL,
        zx: DevicePtr::NULL,
    };
    let l = LstmLauncher::default();
    let err = l.fwd_step(&mut dev, dims, &bufs, 0).unwrap_err();
    assert!(
        matches!(
            err,
            charlstm_cuda::Error::Device(DeviceError::BadArguments { .. })
        ),
        "{err}"
    );
    let ok = LstmDims {
        words_per_row: 2,
        ..dims
    };
    let err = l.bwd_step(&mut dev, ok, &bufs, 3).unwrap_err();
    assert!(err.to_string().contains("step 3 of T = 3"), "{err}");
    // The tiled kernels' grid has a block row per 8 batch rows, at most
    // 65535: a batch past that is an error naming the limit, before any
    // launch.
    let huge = LstmDims {
        batch: 65_535 * 8 + 1,
        ..ok
    };
    for err in [
        l.fwd_step(&mut dev, huge, &bufs, 0).unwrap_err(),
        l.bwd_step(&mut dev, huge, &bufs, 1).unwrap_err(),
    ] {
        assert!(err.to_string().contains("B <= 524280"), "{err}");
    }
}

/// The instruction forms kernels/lstm.cu adds (tests/kernels/lstm_forms.cu),
/// checked against Rust.
#[test]
fn lstm_instruction_forms_match_rust() {
    if !common::kernels() {
        return;
    }
    let mut s = Simulator::new(5);
    s.load_module("lstm_forms", ptx::test_module("lstm_forms").unwrap())
        .unwrap();
    let n = 100usize;
    let w = common::lstm_forms_words(n);
    let a: Vec<f32> = (0..n).map(|i| (i as f32 - 50.5) * 0.731).collect();
    let u: Vec<u32> = (0..2 * n as u32)
        .map(|i| i.wrapping_mul(2_654_435_761))
        .collect();
    let up = |s: &mut Simulator, b: &[u8]| {
        let p = s.alloc(b.len()).unwrap();
        s.write(p, b).unwrap();
        p
    };
    let (dw, da, du) = (
        up(&mut s, bytemuck::cast_slice(&w)),
        up(&mut s, bytemuck::cast_slice(&a)),
        up(&mut s, bytemuck::cast_slice(&u)),
    );
    let (ow, of, ou) = (
        s.alloc(n * 40).unwrap(),
        s.alloc(2 * n * 4).unwrap(),
        s.alloc(n * 4).unwrap(),
    );
    s.launch(
        "lstm_forms",
        [4, 1, 1],
        [32, 1, 1],
        0,
        &[
            P::Ptr(dw),
            P::Ptr(da),
            P::Ptr(du),
            P::Ptr(ow),
            P::Ptr(of),
            P::Ptr(ou),
            P::U32(n as u32),
        ],
    )
    .unwrap();
    let mut rw = vec![0u64; n * 5];
    let mut rf = vec![0f32; 2 * n];
    let mut ru = vec![0u32; n];
    s.read(ow, bytemuck::cast_slice_mut(&mut rw)).unwrap();
    s.read(of, bytemuck::cast_slice_mut(&mut rf)).unwrap();
    s.read(ou, bytemuck::cast_slice_mut(&mut ru)).unwrap();
    for i in 0..n {
        let (p, q) = (w[2 * i], w[2 * i + 1]);
        let want = [
            u64::from(p.leading_zeros()),
            0u64.wrapping_sub(p),
            u64::from(p <= q),
            u64::from(p as i64 != q as i64),
            if p == 0 || q == 0 { 7 } else { 9 },
        ];
        assert_eq!(rw[i * 5..i * 5 + 5], want, "u64 forms, element {i}");
        assert_eq!(rf[i].to_bits(), (1.0 / a[i]).to_bits(), "rcp.rn {i}");
        assert_eq!(rf[n + i].to_bits(), a[i].to_bits(), "ld.v4 {i}");
        assert_eq!(ru[i], u[2 * i].min(u[2 * i + 1]), "min.u32 {i}");
    }
}
