//! The PTX simulator: instruction families against Rust-computed results,
//! planted bugs its checks must catch, scheduling properties, and speed.

#![allow(clippy::manual_checked_ops)] // the kernel tests `y != 0 ? x / y : 0` literally

mod common;

use charlstm_cuda::gpu::ptx;
use charlstm_cuda::sim::{ParamValue as P, Simulator};

fn sim(module: &str, seed: u64) -> Option<Simulator> {
    if !common::kernels() {
        return None;
    }
    let mut s = Simulator::new(seed);
    s.load_module(module, ptx::test_module(module).expect("test module"))
        .expect("parse");
    Some(s)
}

fn up<T: bytemuck::Pod>(s: &mut Simulator, v: &[T]) -> u64 {
    let bytes: &[u8] = bytemuck::cast_slice(v);
    let a = s.alloc(bytes.len()).unwrap();
    s.write(a, bytes).unwrap();
    a
}

fn down<T: bytemuck::Pod + Default + Clone>(s: &Simulator, a: u64, n: usize) -> Vec<T> {
    let mut v = vec![T::default(); n];
    s.read(a, bytemuck::cast_slice_mut(&mut v)).unwrap();
    v
}

fn lcg(n: usize, seed: u32) -> Vec<u32> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1664525).wrapping_add(1013904223);
            x
        })
        .collect()
}

fn err_of(r: charlstm_cuda::Result<charlstm_cuda::sim::LaunchStats>) -> String {
    let e = r.expect_err("the simulator must catch this").to_string();
    eprintln!("caught: {e}");
    e
}

#[test]
fn axpy_matches() {
    let Some(mut s) = sim("axpy", 0) else { return };
    let n = 1000;
    let x: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
    let y: Vec<f32> = (0..n).map(|i| 1.0 - i as f32).collect();
    let (dx, dy) = (up(&mut s, &x), up(&mut s, &y));
    s.launch(
        "axpy_f32",
        [4, 1, 1],
        [256, 1, 1],
        0,
        &[P::F32(2.0), P::Ptr(dx), P::Ptr(dy), P::U32(n as u32)],
    )
    .unwrap();
    let r: Vec<f32> = down(&s, dy, n);
    for i in 0..n {
        assert_eq!(r[i].to_bits(), (2.0 * x[i] + y[i]).to_bits());
    }
}

#[test]
fn integer_ops_bit_exact() {
    let Some(mut s) = sim("int_ops", 0) else {
        return;
    };
    let n = 300usize;
    let mut a: Vec<i32> = lcg(n, 1).into_iter().map(|v| v as i32).collect();
    let mut b: Vec<i32> = lcg(n, 2)
        .into_iter()
        .map(|v| (v as i32) >> (v % 24))
        .collect();
    a[0] = i32::MIN;
    b[0] = -1;
    b[1] = 0;
    a[2] = 7;
    b[2] = 7;
    let (da, db) = (up(&mut s, &a), up(&mut s, &b));
    let o32 = s.alloc(n * 16 * 4).unwrap();
    let o64 = s.alloc(n * 4 * 8).unwrap();
    s.launch(
        "int_ops",
        [3, 1, 1],
        [128, 1, 1],
        0,
        &[
            P::Ptr(da),
            P::Ptr(db),
            P::Ptr(o32),
            P::Ptr(o64),
            P::U32(n as u32),
        ],
    )
    .unwrap();
    let r32: Vec<i32> = down(&s, o32, n * 16);
    let r64: Vec<i64> = down(&s, o64, n * 4);
    for i in 0..n {
        let (x, y) = (a[i], b[i]);
        let (ux, uy) = (x as u32, y as u32);
        let e = [
            x.wrapping_add(y),
            x.wrapping_sub(y),
            x.wrapping_mul(y),
            ((x as i64 * y as i64) >> 32) as i32,
            if y != 0 { x.wrapping_div(y) } else { 0 },
            if y != 0 { x.wrapping_rem(y) } else { 0 },
            if uy != 0 { (ux / uy) as i32 } else { 0 },
            if uy != 0 { (ux % uy) as i32 } else { 0 },
            (x << (y & 31)) ^ (x >> (y & 31)) ^ (ux >> (uy & 31)) as i32,
            (x & y) | (!x & 0x0f0f),
            x.min(y).wrapping_add(ux.max(uy) as i32),
            x.wrapping_abs().wrapping_sub(y.wrapping_neg()),
            (x.count_ones() as i32 + y.leading_zeros() as i32 * 64)
                .wrapping_add((ux.reverse_bits() & 0xffff0000) as i32),
            if x < y {
                1
            } else if x == y {
                2
            } else {
                3
            },
            if ux < uy { 5 } else { 7 },
            ((ux as u64 * uy as u64) >> 32) as i32,
        ];
        assert_eq!(
            &r32[i * 16..i * 16 + 16],
            &e,
            "int32 ops, element {i}: a={x} b={y}"
        );
        let e64 = [
            x as i64 * y as i64,
            (x as i64).wrapping_mul(1000003) + y as i64,
            (ux as u64 * uy as u64) as i64,
            (((x as i64) << 20) / ((y | 1) as i64))
                ^ ((((ux as u64) << 20) % ((uy as u64) | 1)) as i64),
        ];
        assert_eq!(&r64[i * 4..i * 4 + 4], &e64, "int64 ops, element {i}");
    }
}

fn inputs_f32(n: usize) -> (Vec<f32>, Vec<f32>) {
    let a: Vec<f32> = lcg(n, 3)
        .iter()
        .map(|&v| (v as i32) as f32 / 1.0e8)
        .collect();
    let b: Vec<f32> = lcg(n, 4)
        .iter()
        .map(|&v| (v as i32) as f32 / 3.0e7 + 0.01)
        .collect();
    (a, b)
}

#[test]
fn f32_exact_ops_bit_exact() {
    let Some(mut s) = sim("f32_ops", 0) else {
        return;
    };
    let (mut a, mut b) = inputs_f32(256);
    // Zeros of opposite signs, both ways: PTX min/max order -0 below +0
    // (Rust's f32::min does not; the H200 showed the difference).
    a.extend([0.0, -0.0, -0.0, 0.0]);
    b.extend([-0.0, 0.0, -0.0, 0.0]);
    let n = a.len();
    let (da, db) = (up(&mut s, &a), up(&mut s, &b));
    let o = s.alloc(n * 10 * 4).unwrap();
    s.launch(
        "f32_exact",
        [n.div_ceil(128) as u32, 1, 1],
        [128, 1, 1],
        0,
        &[P::Ptr(da), P::Ptr(db), P::Ptr(o), P::U32(n as u32)],
    )
    .unwrap();
    let r: Vec<f32> = down(&s, o, n * 10);
    for i in 0..n {
        let (x, y) = (a[i], b[i]);
        let e = [
            x + y,
            x - y,
            x * y,
            x.mul_add(y, 1.5),
            x / y,
            x.abs().sqrt(),
            ptx_min_max(x, y, false),
            ptx_min_max(x, y, true),
            -y.abs(),
            (x as i32) as f32 + (y.abs() as u32) as f32 + if x < y { 1.0 } else { 0.0 },
        ];
        for j in 0..10 {
            assert_eq!(
                r[i * 10 + j].to_bits(),
                e[j].to_bits(),
                "f32 op {j}, element {i}: {} vs {}",
                r[i * 10 + j],
                e[j]
            );
        }
    }
}

/// PTX `min`/`max` on f32: NaN loses to a number, -0 is below +0.
fn ptx_min_max(x: f32, y: f32, max: bool) -> f32 {
    if x.is_nan() || y.is_nan() {
        return if x.is_nan() { y } else { x };
    }
    if x == 0.0 && y == 0.0 {
        return if x.is_sign_negative() != max { x } else { y };
    }
    if max { x.max(y) } else { x.min(y) }
}

#[test]
fn f32_approx_ops_within_documented_error() {
    let Some(mut s) = sim("f32_ops", 0) else {
        return;
    };
    let n = 256;
    let a: Vec<f32> = (0..n).map(|i| (i as f32 - 128.0) / 16.0 + 0.03).collect();
    let da = up(&mut s, &a);
    let o = s.alloc(n * 6 * 4).unwrap();
    s.launch(
        "f32_approx",
        [1, 1, 1],
        [256, 1, 1],
        0,
        &[P::Ptr(da), P::Ptr(o), P::U32(n as u32)],
    )
    .unwrap();
    let r: Vec<f32> = down(&s, o, n * 6);
    for i in 0..n {
        let x = a[i] as f64;
        let e = [
            x.exp(),
            (x.abs() + 1.0).ln(),
            x.tanh(),
            1.0 / x,
            1.0 / (x.abs() + 1.0).sqrt(),
            x.exp(),
        ];
        // PTX ISA: ex2/lg2.approx ~2 ulp (+ the range reduction of __expf/__logf), tanh.approx 2^-11 rel,
        // rcp/rsqrt.approx 1 ulp. Bound: 2^-10 relative plus 1e-6 absolute.
        for j in 0..6 {
            let g = r[i * 6 + j] as f64;
            assert!(
                (g - e[j]).abs() <= 1e-6 + e[j].abs() / 1024.0,
                "approx op {j} at x={x}: {g} vs {}",
                e[j]
            );
        }
    }
}

#[test]
fn f64_and_conversions() {
    let Some(mut s) = sim("f64_cvt", 0) else {
        return;
    };
    let n = 200;
    let (a, b) = inputs_f32(n);
    let a64: Vec<f64> = a.iter().map(|&x| x as f64 * 1.1).collect();
    let b64: Vec<f64> = b.iter().map(|&x| x as f64 + 0.3).collect();
    let (da, db) = (up(&mut s, &a64), up(&mut s, &b64));
    let o = s.alloc(n * 5 * 8).unwrap();
    s.launch(
        "f64_ops",
        [1, 1, 1],
        [256, 1, 1],
        0,
        &[P::Ptr(da), P::Ptr(db), P::Ptr(o), P::U32(n as u32)],
    )
    .unwrap();
    let r: Vec<f64> = down(&s, o, n * 5);
    for i in 0..n {
        let (x, y) = (a64[i], b64[i]);
        let e = [x + y, x * y, x.mul_add(y, 0.25), x / y, x.abs().sqrt()];
        for j in 0..5 {
            assert_eq!(
                r[i * 5 + j].to_bits(),
                e[j].to_bits(),
                "f64 op {j}, element {i}"
            );
        }
    }
    let mut x: Vec<f32> = a.iter().map(|v| v * 1000.0).collect();
    x[0] = 2.5;
    x[1] = -2.5;
    x[2] = 65520.0; // rounds to f16 infinity
    x[3] = 1.0e-6; // f16 subnormal
    x[4] = 3.5;
    let dx = up(&mut s, &x);
    let (h, bf, back, ints, d) = (
        s.alloc(n * 2).unwrap(),
        s.alloc(n * 2).unwrap(),
        s.alloc(n * 8).unwrap(),
        s.alloc(n * 12).unwrap(),
        s.alloc(n * 8).unwrap(),
    );
    s.launch(
        "cvt_ops",
        [1, 1, 1],
        [256, 1, 1],
        0,
        &[
            P::Ptr(dx),
            P::Ptr(h),
            P::Ptr(bf),
            P::Ptr(back),
            P::Ptr(ints),
            P::Ptr(d),
            P::U32(n as u32),
        ],
    )
    .unwrap();
    let rh: Vec<u16> = down(&s, h, n);
    let rb: Vec<u16> = down(&s, bf, n);
    let rback: Vec<f32> = down(&s, back, n * 2);
    let ri: Vec<i32> = down(&s, ints, n * 3);
    let rd: Vec<f64> = down(&s, d, n);
    for i in 0..n {
        let v = x[i];
        assert_eq!(rh[i], half::f16::from_f32(v).to_bits(), "f16 of {v}");
        assert_eq!(rb[i], half::bf16::from_f32(v).to_bits(), "bf16 of {v}");
        assert_eq!(
            rback[2 * i].to_bits(),
            half::f16::from_f32(v).to_f32().to_bits()
        );
        assert_eq!(
            rback[2 * i + 1].to_bits(),
            half::bf16::from_f32(v).to_f32().to_bits()
        );
        assert_eq!(ri[3 * i], v.round_ties_even() as i32, "rni of {v}");
        assert_eq!(ri[3 * i + 1], v.trunc() as i32);
        assert_eq!(ri[3 * i + 2], v.floor() as i32);
        assert_eq!(rd[i].to_bits(), (v as f64 * 3.0).to_bits());
    }
}

#[test]
fn warp_collectives() {
    for seed in [0, 7] {
        let Some(mut s) = sim("warp_ops", seed) else {
            return;
        };
        let n = 64;
        let a: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.25)
            .collect();
        let da = up(&mut s, &a);
        let (o, v) = (s.alloc(n * 16).unwrap(), s.alloc(n * 12).unwrap());
        s.launch(
            "warp_ops",
            [1, 1, 1],
            [n as u32, 1, 1],
            0,
            &[P::Ptr(da), P::Ptr(o), P::Ptr(v)],
        )
        .unwrap();
        let r: Vec<f32> = down(&s, o, n * 4);
        let votes: Vec<u32> = down(&s, v, n * 3);
        for t in 0..n {
            let (w0, lane) = (t / 32 * 32, t % 32);
            // The butterfly sum in the same order as the kernel.
            let mut sums: Vec<f32> = a[w0..w0 + 32].to_vec();
            for o in [16, 8, 4, 2, 1] {
                sums = (0..32).map(|l| sums[l] + sums[l ^ o]).collect();
            }
            assert_eq!(r[4 * t].to_bits(), sums[lane].to_bits());
            assert_eq!(r[4 * t + 1], if lane + 3 < 32 { a[t + 3] } else { a[t] });
            assert_eq!(r[4 * t + 2], if lane >= 5 { a[t - 5] } else { a[t] });
            assert_eq!(r[4 * t + 3], a[w0 + (lane * 7) % 32]);
            let ballot = (0..32)
                .filter(|&l| a[w0 + l] > 0.0)
                .fold(0u32, |m, l| m | 1 << l);
            assert_eq!(votes[3 * t..3 * t + 3], [ballot, 0, 1]);
        }
    }
}

/// The shared-memory race shadow keeps 16 bits of a block's barrier
/// epoch and sweeps every 32,768 barriers: an access 65,536 barriers old
/// is not taken for a current one (no false race), and a race right at or
/// after a sweep is still found.
#[test]
fn races_in_shared_memory_are_judged_right_after_tens_of_thousands_of_barriers() {
    let Some(mut s) = sim("block_ops", 0) else {
        return;
    };
    let o = s.alloc(64 * 4).unwrap();
    let mut run = |before: u32, after: u32| {
        s.launch(
            "barriers_then_share",
            [1, 1, 1],
            [64, 1, 1],
            0,
            &[P::Ptr(o), P::U32(before), P::U32(after)],
        )
    };
    for (before, after) in [(0, 65535), (0, 65536), (32767, 1), (65535, 65537)] {
        run(before, after).unwrap_or_else(|e| panic!("({before}, {after}): {e}"));
    }
    for before in [32766, 32767, 65534, 65535, 98303] {
        let e = err_of(run(before, 0));
        assert!(e.contains("data race on shared"), "{before}: {e}");
    }
}

#[test]
fn shared_memory_reduction_and_dynamic_shared() {
    let Some(mut s) = sim("block_ops", 0) else {
        return;
    };
    let a: Vec<f32> = (0..1024).map(|i| (i % 17) as f32 * 0.5).collect();
    let da = up(&mut s, &a);
    let o = s.alloc(16).unwrap();
    s.launch(
        "block_sum",
        [4, 1, 1],
        [256, 1, 1],
        0,
        &[P::Ptr(da), P::Ptr(o)],
    )
    .unwrap();
    let r: Vec<f32> = down(&s, o, 4);
    for b in 0..4 {
        let mut t = a[b * 256..b * 256 + 256].to_vec();
        let mut n = 128;
        while n > 0 {
            for i in 0..n {
                t[i] += t[i + n];
            }
            n /= 2;
        }
        assert_eq!(r[b].to_bits(), t[0].to_bits());
    }
    let v: Vec<f32> = (0..256).map(|i| i as f32).collect();
    let dv = up(&mut s, &v);
    let o = s.alloc(256 * 4).unwrap();
    s.launch(
        "dyn_reverse",
        [1, 1, 1],
        [64, 1, 1],
        64 * 16,
        &[P::Ptr(dv), P::Ptr(o)],
    )
    .unwrap();
    let r: Vec<f32> = down(&s, o, 256);
    for t in 0..64 {
        assert_eq!(&r[4 * t..4 * t + 4], &v[4 * (63 - t)..4 * (63 - t) + 4]);
    }
    // Too little dynamic shared memory is an out-of-bounds shared access.
    let e = err_of(s.launch(
        "dyn_reverse",
        [1, 1, 1],
        [64, 1, 1],
        32 * 16,
        &[P::Ptr(dv), P::Ptr(o)],
    ));
    assert!(e.contains("out-of-bounds shared"), "{e}");
}

#[test]
fn atomics_global_and_shared() {
    for seed in [0, 3] {
        let Some(mut s) = sim("block_ops", seed) else {
            return;
        };
        let a: Vec<u32> = lcg(512, 9).iter().map(|v| v >> 8).collect();
        let da = up(&mut s, &a);
        let c = up(&mut s, &[0u32, u32::MAX, 0, 0, 0]);
        let f = up(&mut s, &[0f32]);
        let u = up(&mut s, &[0u64]);
        s.launch(
            "atomics",
            [4, 1, 1],
            [128, 1, 1],
            0,
            &[P::Ptr(da), P::Ptr(c), P::Ptr(f), P::Ptr(u)],
        )
        .unwrap();
        let rc: Vec<u32> = down(&s, c, 5);
        let sum = a.iter().fold(0u32, |s, &v| s.wrapping_add(v));
        assert_eq!(rc[0], sum);
        assert_eq!(rc[1], *a.iter().min().unwrap());
        assert_eq!(rc[2], 7);
        assert!((1..=4).contains(&rc[3]), "cas winner {}", rc[3]);
        assert_eq!(rc[4], *a.iter().max().unwrap());
        let rf: Vec<f32> = down(&s, f, 1);
        assert_eq!(rf[0], a.iter().map(|v| (v & 15) as f32).sum::<f32>()); // small integers: exact in any order
        let ru: Vec<u64> = down(&s, u, 1);
        assert_eq!(ru[0], a.iter().map(|&v| (v as u64) << 20).sum::<u64>());
    }
}

#[test]
fn grid_barrier_spin_wait_completes() {
    for seed in [0, 11] {
        let Some(mut s) = sim("grid_barrier", seed) else {
            return;
        };
        let nb = 6;
        let vals = s.alloc(nb * 4).unwrap();
        let arrived = s.alloc_zeroed(4).unwrap();
        let out = s.alloc(nb * 4).unwrap();
        s.launch(
            "grid_barrier",
            [nb as u32, 1, 1],
            [64, 1, 1],
            0,
            &[P::Ptr(vals), P::Ptr(arrived), P::Ptr(out)],
        )
        .unwrap();
        let r: Vec<f32> = down(&s, out, nb);
        assert!(r.iter().all(|&x| x == 21.0), "{r:?}");
    }
}

#[test]
fn seeded_interleavings_agree_on_race_free_kernels() {
    let run = |seed| {
        let mut s = sim("block_ops", seed)?;
        let a: Vec<f32> = (0..512).map(|i| (i as f32).sin()).collect();
        let da = up(&mut s, &a);
        let o = s.alloc(8).unwrap();
        s.launch(
            "block_sum",
            [2, 1, 1],
            [256, 1, 1],
            0,
            &[P::Ptr(da), P::Ptr(o)],
        )
        .unwrap();
        Some(down::<u32>(&s, o, 2))
    };
    let Some(base) = run(0) else { return };
    for seed in 1..5 {
        assert_eq!(run(seed).unwrap(), base);
    }
}

#[test]
fn planted_off_by_one_store() {
    let Some(mut s) = sim("bugs", 0) else { return };
    let y = s.alloc(100 * 4).unwrap();
    let e = err_of(s.launch(
        "bug_off_by_one",
        [1, 1, 1],
        [128, 1, 1],
        0,
        &[P::Ptr(y), P::U32(100)],
    ));
    assert!(
        e.contains("out-of-bounds global")
            && e.contains("thread (100, 0, 0)")
            && e.contains("block (0, 0, 0)")
            && e.contains("PTX line"),
        "{e}"
    );
}

#[test]
fn planted_missing_syncthreads() {
    for seed in [0, 5] {
        let Some(mut s) = sim("bugs", seed) else {
            return;
        };
        let o = s.alloc(64 * 4).unwrap();
        let e = err_of(s.launch("bug_missing_sync", [1, 1, 1], [64, 1, 1], 0, &[P::Ptr(o)]));
        assert!(
            e.contains("data race on shared") || e.contains("never-written"),
            "{e}"
        );
    }
    // Round-robin: thread 0 reads tile[63] before thread 63 ran at all.
    let Some(mut s) = sim("bugs", 0) else { return };
    let o = s.alloc(64 * 4).unwrap();
    assert!(
        s.launch("bug_missing_sync", [1, 1, 1], [64, 1, 1], 0, &[P::Ptr(o)])
            .is_err()
    );
}

#[test]
fn planted_read_of_unwritten_memory() {
    let Some(mut s) = sim("bugs", 0) else { return };
    let a = s.alloc(32 * 4).unwrap();
    s.write(a, bytemuck::cast_slice(&[1f32; 31])).unwrap(); // element 31 never written
    let o = s.alloc(32 * 4).unwrap();
    let e = err_of(s.launch(
        "bug_read_unwritten",
        [1, 1, 1],
        [32, 1, 1],
        0,
        &[P::Ptr(a), P::Ptr(o)],
    ));
    assert!(
        e.contains("never-written") && e.contains("thread (31, 0, 0)"),
        "{e}"
    );
}

#[test]
fn planted_wrong_shuffle_mask() {
    let Some(mut s) = sim("bugs", 0) else { return };
    let a = up(&mut s, &[1f32; 16]);
    let o = s.alloc(16 * 4).unwrap();
    let e = err_of(s.launch(
        "bug_wrong_mask",
        [1, 1, 1],
        [16, 1, 1],
        0,
        &[P::Ptr(a), P::Ptr(o)],
    ));
    assert!(e.contains("wrong shuffle mask"), "{e}");
}

#[test]
fn planted_misaligned_vector_load() {
    let Some(mut s) = sim("bugs", 0) else { return };
    let a = up(&mut s, &[1f32; 80]);
    let o = s.alloc(16 * 4).unwrap();
    let e = err_of(s.launch(
        "bug_misaligned",
        [1, 1, 1],
        [16, 1, 1],
        0,
        &[P::Ptr(a), P::Ptr(o)],
    ));
    assert!(e.contains("misaligned 16-byte load"), "{e}");
}

#[test]
fn cross_block_race_on_global() {
    // Every block writes y[i] for the same i: blocks overlap, no fence between.
    let Some(mut s) = sim("axpy", 0) else { return };
    let x = up(&mut s, &[1f32; 64]);
    let y = up(&mut s, &[0f32; 64]);
    let mut s2 = s;
    let e = err_of(s2.launch(
        "axpy_f32",
        [1, 2, 1],
        [64, 1, 1],
        0,
        &[P::F32(1.0), P::Ptr(x), P::Ptr(y), P::U32(64)],
    ));
    assert!(e.contains("data race on global"), "{e}");
}

const TINY: &str = ".version 9.0\n.target sm_80\n.address_size 64\n\n.visible .entry tiny(\n\t.param .u64 tiny_param_0,\n\t.param .u32 tiny_param_1\n)\n{\n\t.reg .b32 %r<3>;\n\tmov.u32 %r1, 1;\n\tfrobnicate.b32 %r2, %r1;\n\tret;\n}\n";

#[test]
fn unknown_instruction_is_an_error_naming_it_and_its_line() {
    let mut s = Simulator::new(0);
    let e = s.load_module("tiny", TINY).unwrap_err().to_string();
    assert!(e.contains("frobnicate.b32") && e.contains("line 12"), "{e}");
}

#[test]
fn param_mismatch_is_an_error() {
    let mut s = Simulator::new(0);
    s.load_module("tiny", &TINY.replace("frobnicate", "not"))
        .unwrap();
    let e = err_of(s.launch("tiny", [1, 1, 1], [1, 1, 1], 0, &[P::U32(1), P::U32(2)]));
    assert!(e.contains("parameter tiny_param_0"), "{e}");
    let e = err_of(s.launch("tiny", [1, 1, 1], [1, 1, 1], 0, &[P::Ptr(0)]));
    assert!(e.contains("1 arguments given"), "{e}");
    s.launch("tiny", [1, 1, 1], [1, 1, 1], 0, &[P::Ptr(0), P::I32(-1)])
        .unwrap();
}

#[test]
fn speed_instructions_per_second() {
    let Some(mut s) = sim("bench_loop", 0) else {
        return;
    };
    let o = s.alloc(64 * 256 * 4).unwrap();
    let iters = if cfg!(debug_assertions) { 50 } else { 400 };
    let t = std::time::Instant::now();
    let st = s
        .launch(
            "bench_loop",
            [64, 1, 1],
            [256, 1, 1],
            0,
            &[P::Ptr(o), P::U32(iters)],
        )
        .unwrap();
    let dt = t.elapsed().as_secs_f64();
    eprintln!(
        "simulator speed: {} thread-instructions in {dt:.3} s = {:.1} M/s",
        st.instructions,
        st.instructions as f64 / dt / 1e6
    );
    let r: Vec<u32> = down(&s, o, 64 * 256);
    for (g, &v) in r.iter().enumerate() {
        let mut x = (g % 256) as u32 + (g / 256) as u32 * 977;
        for _ in 0..iters {
            x = x.wrapping_mul(1664525).wrapping_add(1013904223);
            x ^= x >> 13;
        }
        assert_eq!(v, x);
    }
}

/// Byte stores into words: `bytes` stores thread i's index at p + i *
/// stride (stride 0: every thread the same byte); `word_then_byte` has
/// thread 0 store a whole word at p and thread 1 one byte of it.
const BYTES: &str = ".version 9.0\n.target sm_90\n.address_size 64\n\n\
.visible .entry bytes(\n\t.param .u64 bytes_param_0,\n\t.param .u32 bytes_param_1\n)\n{\n\
\t.reg .pred %p<2>;\n\t.reg .b16 %rs<2>;\n\t.reg .b32 %r<4>;\n\t.reg .b64 %rd<4>;\n\
\tld.param.u64 %rd1, [bytes_param_0];\n\tld.param.u32 %r1, [bytes_param_1];\n\
\tmov.u32 %r2, %tid.x;\n\tmul.lo.s32 %r3, %r2, %r1;\n\tcvt.u64.u32 %rd2, %r3;\n\
\tadd.s64 %rd3, %rd1, %rd2;\n\tcvt.u16.u32 %rs1, %r2;\n\tst.global.u8 [%rd3], %rs1;\n\tret;\n}\n\n\
.visible .entry word_then_byte(\n\t.param .u64 word_then_byte_param_0\n)\n{\n\
\t.reg .pred %p<2>;\n\t.reg .b16 %rs<2>;\n\t.reg .b32 %r<3>;\n\t.reg .b64 %rd<2>;\n\
\tld.param.u64 %rd1, [word_then_byte_param_0];\n\tmov.u32 %r2, %tid.x;\n\
\tcvt.u16.u32 %rs1, %r2;\n\tsetp.eq.s32 %p1, %r2, 0;\n\
\t@%p1 st.global.u32 [%rd1], %r2;\n\t@!%p1 st.global.u8 [%rd1+1], %rs1;\n\tret;\n}\n";

/// The race shadow is kept per word and split per byte at the first
/// sub-word access: threads storing neighbouring bytes of one word do not
/// race, two storing the same byte do, and a byte store after another
/// thread's whole-word store races on that byte (the split copies the
/// word's history to its bytes).
#[test]
fn byte_accesses_race_per_byte_within_a_word() {
    let mut s = Simulator::new(0);
    s.load_module("bytes", BYTES).unwrap();
    let p = s.alloc(8).unwrap();
    s.launch("bytes", [1, 1, 1], [8, 1, 1], 0, &[P::Ptr(p), P::U32(1)])
        .unwrap();
    let mut got = [0u8; 8];
    s.read(p, &mut got).unwrap();
    assert_eq!(got, [0, 1, 2, 3, 4, 5, 6, 7]);
    let e = err_of(s.launch("bytes", [1, 1, 1], [2, 1, 1], 0, &[P::Ptr(p), P::U32(0)]));
    assert!(
        e.contains("data race on global") && e.contains("byte offset 0"),
        "{e}"
    );
    let e = err_of(s.launch("word_then_byte", [1, 1, 1], [2, 1, 1], 0, &[P::Ptr(p)]));
    assert!(
        e.contains("data race on global") && e.contains("byte offset 1"),
        "{e}"
    );
    assert!(
        e.contains("conflicts with a write by thread (0, 0, 0)"),
        "{e}"
    );
}

/// `bcast(out, writer, mode)`: thread `writer` stores its index to a shared
/// word and every thread loads it (a warp-wide broadcast read); mode 1
/// puts a `bar.sync` between, mode 2 loads first and stores after, with
/// no barrier (the writer stores first, before a barrier, so the word is
/// written).
const BCAST: &str = ".version 9.0\n.target sm_90\n.address_size 64\n\n\
.visible .entry bcast(\n\t.param .u64 bcast_param_0,\n\t.param .u32 bcast_param_1,\n\t.param .u32 bcast_param_2\n)\n{\n\
\t.reg .pred %p<4>;\n\t.reg .b32 %r<6>;\n\t.reg .b64 %rd<4>;\n\t.shared .align 4 .b8 word[4];\n\
\tld.param.u64 %rd1, [bcast_param_0];\n\tld.param.u32 %r1, [bcast_param_1];\n\
\tld.param.u32 %r2, [bcast_param_2];\n\tmov.u32 %r3, %tid.x;\n\
\tsetp.eq.s32 %p1, %r3, %r1;\n\tsetp.eq.s32 %p2, %r2, 1;\n\tsetp.eq.s32 %p3, %r2, 2;\n\
\t@%p3 bra LOADFIRST;\n\
\t@%p1 st.shared.u32 [word], %r3;\n\t@%p2 bar.sync 0;\n\tld.shared.u32 %r4, [word];\n\tbra DONE;\n\
LOADFIRST:\n\t@%p1 st.shared.u32 [word], 99;\n\tbar.sync 0;\n\tld.shared.u32 %r4, [word];\n\
\t@%p1 st.shared.u32 [word], %r3;\n\
DONE:\n\tmul.wide.u32 %rd2, %r3, 4;\n\tadd.s64 %rd3, %rd1, %rd2;\n\tst.global.u32 [%rd3], %r4;\n\tret;\n}\n";

/// A warp's broadcast read is checked through three of its lanes (see
/// `sim/warpmem.rs`); what it reports must be what checking every lane
/// reports: the first lane to conflict, the writer named, and the readers
/// recorded for a later write.
#[test]
fn broadcast_reads_are_checked_as_every_lane_would_be() {
    let mut s = Simulator::new(0);
    s.load_module("bcast", BCAST).unwrap();
    let out = s.alloc(64 * 4).unwrap();
    let run = |s: &mut Simulator, threads: u32, writer: u32, mode: u32| {
        s.launch(
            "bcast",
            [1, 1, 1],
            [threads, 1, 1],
            0,
            &[P::Ptr(out), P::U32(writer), P::U32(mode)],
        )
    };
    run(&mut s, 64, 7, 1).unwrap();
    assert_eq!(down::<u32>(&s, out, 64), vec![7; 64]);
    for (writer, reader) in [(0, 1), (5, 0), (31, 0)] {
        let e = err_of(run(&mut s, 64, writer, 0));
        assert!(
            e.contains(&format!("thread ({reader}, 0, 0)"))
                && e.contains("this read conflicts with a write")
                && e.contains(&format!("by thread ({writer}, 0, 0)")),
            "writer {writer}: {e}"
        );
    }
    // Loads, then a store by one of the loaders with no barrier: warp 0
    // loads and its lane 3 stores before warp 1 runs; lane 63 stores after
    // its own load, which followed the other 63.
    for (writer, other) in [(3, "thread (31, 0, 0)"), (63, "other threads")] {
        let e = err_of(run(&mut s, 64, writer, 2));
        assert!(
            e.contains(&format!("thread ({writer}, 0, 0)"))
                && e.contains(&format!("this write conflicts with a read by {other}")),
            "writer {writer}: {e}"
        );
    }
}

/// `prmt.b32` as the PTX ISA defines its default mode: result byte i is
/// byte (nibble i of s) & 7 of {b, a} (a's bytes first), replaced by that
/// byte's sign spread over 8 bits when the nibble's top bit is set.
fn prmt(a: u32, b: u32, s: u32) -> u32 {
    let bytes = u64::from(b) << 32 | u64::from(a);
    (0..4).fold(0, |v, i| {
        let nib = (s >> (4 * i)) & 0xf;
        let byte = (bytes >> (8 * (nib & 7))) as u32 & 0xff;
        let out = match (nib & 8 != 0, byte & 0x80 != 0) {
            (false, _) => byte,
            (true, true) => 0xff,
            (true, false) => 0,
        };
        v | out << (8 * i)
    })
}

#[test]
fn prmt_matches_the_ptx_definition() {
    let Some(mut s) = sim("byte_forms", 0) else {
        return;
    };
    // Every nibble value in every position, then random words and selectors.
    let n = 64 + 300;
    let sel = common::prmt_selectors(&lcg(300, 9));
    let a: Vec<u32> = (0..n as u32)
        .map(|i| 0x80ff_7f01 ^ i.wrapping_mul(0x0101_0101))
        .collect();
    let mut b = lcg(n, 10);
    b[0] = 0x8000_8000;
    let (da, db, ds) = (up(&mut s, &a), up(&mut s, &b), up(&mut s, &sel));
    let out = s.alloc(2 * n * 4).unwrap();
    s.launch(
        "prmt_forms",
        [2, 1, 1],
        [256, 1, 1],
        0,
        &[
            P::Ptr(da),
            P::Ptr(db),
            P::Ptr(ds),
            P::Ptr(out),
            P::U32(n as u32),
        ],
    )
    .unwrap();
    let r: Vec<u32> = down(&s, out, 2 * n);
    for i in 0..n {
        let masked = prmt(a[i], b[i], sel[i] & 0x7777);
        let raw = prmt(a[i], b[i], sel[i]);
        assert_eq!(
            r[2 * i],
            masked,
            "__byte_perm({:#x}, {:#x}, {:#x})",
            a[i],
            b[i],
            sel[i]
        );
        assert_eq!(
            r[2 * i + 1],
            raw,
            "prmt({:#x}, {:#x}, {:#x})",
            a[i],
            b[i],
            sel[i]
        );
    }
}

#[test]
fn sixteen_bit_compares_match_rust() {
    let Some(mut s) = sim("byte_forms", 0) else {
        return;
    };
    let n = 300;
    let a = lcg(n, 11);
    let b = common::short_forms_b(&a, &lcg(n, 12));
    let (da, db) = (up(&mut s, &a), up(&mut s, &b));
    let out = s.alloc(3 * n * 4).unwrap();
    s.launch(
        "short_forms",
        [2, 1, 1],
        [256, 1, 1],
        0,
        &[P::Ptr(da), P::Ptr(db), P::Ptr(out), P::U32(n as u32)],
    )
    .unwrap();
    let r: Vec<u32> = down(&s, out, 3 * n);
    for i in 0..n {
        let (x, y) = (a[i] as u16 as i16, b[i] as u16 as i16);
        let want = [a[i] & 0xffff, u32::from(x == y), u32::from(x != y)];
        assert_eq!(r[3 * i..3 * i + 3], want, "{:#x} {:#x}", a[i], b[i]);
    }
}

/// `unwritten(out)`: every thread stores f32 and b32 registers it never
/// wrote; `shared_fill` writes its block's shared word `tid`, and
/// `shared_read(out)` reads it without writing it.
const LEFTOVERS: &str = ".version 9.0\n.target sm_80\n.address_size 64\n\n\
.visible .entry unwritten(\n\t.param .u64 unwritten_param_0\n)\n{\n\
\t.reg .f32 %f<2>;\n\t.reg .b32 %r<3>;\n\t.reg .b64 %rd<5>;\n\
\tld.param.u64 %rd1, [unwritten_param_0];\n\tmov.u32 %r1, %tid.x;\n\
\tmul.wide.u32 %rd2, %r1, 8;\n\tadd.s64 %rd3, %rd1, %rd2;\n\
\tst.global.f32 [%rd3], %f1;\n\tst.global.u32 [%rd3+4], %r2;\n\tret;\n}\n\n\
.visible .entry shared_fill()\n{\n\
\t.reg .b32 %r<3>;\n\t.shared .align 4 .b8 words[256];\n\
\tmov.u32 %r1, %tid.x;\n\tshl.b32 %r2, %r1, 2;\n\tst.shared.u32 [%r2], %r1;\n\tret;\n}\n\n\
.visible .entry shared_read(\n\t.param .u64 shared_read_param_0\n)\n{\n\
\t.reg .b32 %r<4>;\n\t.reg .b64 %rd<4>;\n\t.shared .align 4 .b8 words[256];\n\
\tld.param.u64 %rd1, [shared_read_param_0];\n\tmov.u32 %r1, %tid.x;\n\
\tshl.b32 %r2, %r1, 2;\n\tld.shared.u32 %r3, [%r2];\n\
\tmul.wide.u32 %rd2, %r1, 4;\n\tadd.s64 %rd3, %rd1, %rd2;\n\tst.global.u32 [%rd3], %r3;\n\tret;\n}\n";

/// A launch reuses the registers and shared memory of the one before
/// (fresh pages cost the simulator a third of its time): a register never
/// written reads as a NaN poison, not a quiet zero, and shared memory is
/// new to every launch as far as the checks go (a read of a word the
/// launch before wrote is still a read of never-written memory).
#[test]
fn unwritten_registers_read_as_nan_and_reused_shared_memory_is_unwritten() {
    let mut s = Simulator::new(0);
    s.load_module("leftovers", LEFTOVERS).unwrap();
    let out = s.alloc(64 * 8).unwrap();
    s.launch("unwritten", [1, 1, 1], [64, 1, 1], 0, &[P::Ptr(out)])
        .unwrap();
    let got: Vec<u32> = down(&s, out, 64 * 2);
    for pair in got.chunks(2) {
        assert!(f32::from_bits(pair[0]).is_nan(), "{:#x}", pair[0]);
        assert!(f32::from_bits(pair[1]).is_nan(), "{:#x}", pair[1]);
    }
    s.launch("shared_fill", [2, 1, 1], [64, 1, 1], 0, &[])
        .unwrap();
    let e = err_of(s.launch("shared_read", [1, 1, 1], [64, 1, 1], 0, &[P::Ptr(out)]));
    assert!(e.contains("read of never-written memory at shared"), "{e}");
}
