//! The device code kernels/generate.cu is built from, on its own
//! (tests/kernels/generate_forms.cu, on the simulator): the Philox 4x32-10 of
//! common.cuh against src/sample/philox.rs and Random123's known answers, the
//! sampler's draw against `strategy::draw` (bit-exact index, degenerate rows
//! included), and libdevice's f64 log / exp plus the other instruction forms
//! the generation kernel adds against Rust. Inputs fresh every run (seed
//! printed; CHARLSTM_TEST_SEED replays).

mod common;
use common::{Rng, seed};

use charlstm_cuda::gpu::generate::GenerateLauncher;
use charlstm_cuda::gpu::ptx;
use charlstm_cuda::sample::{Philox, Purpose, Strategy, draw};
use charlstm_cuda::sim::{ParamValue as P, Simulator};

fn upload(s: &mut Simulator, bytes: &[u8]) -> u64 {
    let p = s.alloc(bytes.len().max(1)).unwrap();
    s.write(p, bytes).unwrap();
    p
}

fn forms_sim() -> Option<Simulator> {
    if !common::kernels() {
        return None;
    }
    let mut s = Simulator::new(11);
    s.load_module(
        "generate_forms",
        ptx::test_module("generate_forms").unwrap(),
    )
    .unwrap();
    Some(s)
}

#[test]
fn device_philox_is_the_cpu_philox() {
    let Some(mut s) = forms_sim() else { return };
    let mut rng = Rng(seed());
    // Random123's known answers first, then random keys and counters.
    let mut keys = vec![0u64, u64::MAX, 0x299f_31d0_a409_3822];
    let mut ctrs = vec![
        [0u32; 4],
        [u32::MAX; 4],
        [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
    ];
    for _ in 0..61 {
        keys.push(rng.next_u64());
        let w = rng.next_u64();
        ctrs.push([
            w as u32,
            (w >> 32) as u32 & 0xff,
            rng.next_u64() as u32,
            rng.range(1, 5) as u32,
        ]);
    }
    let n = keys.len();
    let (dc, dk) = (
        upload(&mut s, bytemuck::cast_slice(&ctrs)),
        upload(&mut s, bytemuck::cast_slice(&keys)),
    );
    let (out, uni) = (s.alloc(16 * n).unwrap(), s.alloc(4 * n).unwrap());
    let args = [
        P::Ptr(dc),
        P::Ptr(dk),
        P::Ptr(out),
        P::Ptr(uni),
        P::U32(n as u32),
    ];
    s.launch("philox_blocks", [2, 1, 1], [64, 1, 1], 0, &args)
        .unwrap();
    let mut got = vec![[0u32; 4]; n];
    let mut got_u = vec![0f32; n];
    s.read(out, bytemuck::cast_slice_mut(&mut got)).unwrap();
    s.read(uni, bytemuck::cast_slice_mut(&mut got_u)).unwrap();
    assert_eq!(got[0], [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]);
    assert_eq!(got[1], [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]);
    assert_eq!(got[2], [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]);
    for i in 0..n {
        let key = [keys[i] as u32, (keys[i] >> 32) as u32];
        assert_eq!(got[i], Philox::with_key(key).block(ctrs[i]), "block {i}");
        let c = ctrs[i];
        let purpose = [
            Purpose::Init,
            Purpose::Shuffle,
            Purpose::SeedText,
            Purpose::Sample,
        ]
        .into_iter()
        .find(|p| *p as u32 == c[3]);
        if let Some(purpose) = purpose {
            let index = u64::from(c[1]) << 32 | u64::from(c[0]);
            let want = Philox::new(keys[i]).uniform_f32(purpose, c[2], index);
            assert_eq!(got_u[i].to_bits(), want.to_bits(), "uniform {i}");
        }
    }
}

#[test]
fn device_draw_is_strategy_draw() {
    let Some(mut s) = forms_sim() else { return };
    let mut rng = Rng(seed());
    let v = 67;
    let (mut probs, mut codes, mut us, mut strats) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let pool = [
        Strategy::Temperature(0.2),
        Strategy::Temperature(1.0),
        Strategy::Temperature(1.2),
        Strategy::Temperature(1e-3),
        Strategy::Temperature(1e-300),
        Strategy::Greedy,
        Strategy::Uniform,
    ];
    for r in 0..200 {
        let mut row: Vec<f32> = (0..v)
            .map(|_| rng.f32(1.0).abs().powi(rng.range(1, 12) as i32))
            .collect();
        match r % 10 {
            0 => row.iter_mut().for_each(|p| *p = 0.0), // nothing positive
            1 => row[rng.range(0, v)] = f32::NAN,
            2 => row[rng.range(0, v)] = -0.5,
            3 => row[rng.range(0, v)] = f32::INFINITY,
            4 => {
                let m = row[0];
                row[v - 1] = m; // a tie for greedy
            }
            _ => {}
        }
        let sum: f32 = row.iter().filter(|p| p.is_finite() && **p > 0.0).sum();
        if sum > 0.0 && r % 3 == 0 {
            row.iter_mut().for_each(|p| *p /= sum);
        }
        let st = pool[rng.range(0, pool.len())];
        probs.extend_from_slice(&row);
        strats.push(st);
        codes.extend(GenerateLauncher::encode(&[st]));
        us.push(if r % 7 == 0 {
            0.0
        } else {
            (rng.next_u64() >> 40) as f32 / 16_777_216.0
        });
    }
    let n = strats.len();
    let (dp, dc, du) = (
        upload(&mut s, bytemuck::cast_slice(&probs)),
        upload(&mut s, bytemuck::cast_slice(&codes)),
        upload(&mut s, bytemuck::cast_slice(&us)),
    );
    let (dw, dout) = (s.alloc(8 * n * v).unwrap(), s.alloc(4 * n).unwrap());
    let args = [
        P::Ptr(dp),
        P::Ptr(dc),
        P::Ptr(du),
        P::Ptr(dw),
        P::Ptr(dout),
        P::U32(n as u32),
        P::U32(v as u32),
    ];
    s.launch("draw_rows", [4, 1, 1], [64, 1, 1], 0, &args)
        .unwrap();
    let mut got = vec![0u32; n];
    s.read(dout, bytemuck::cast_slice_mut(&mut got)).unwrap();
    for r in 0..n {
        let row = &probs[r * v..(r + 1) * v];
        let want = draw(row, strats[r], us[r]) as u32;
        assert_eq!(
            got[r], want,
            "row {r} ({}), u = {}: {row:?}",
            strats[r], us[r]
        );
    }
}

/// Error of `got` in units of the f64 spacing at `want`.
fn ulps(got: f64, want: f64) -> f64 {
    if got == want || (got.is_nan() && want.is_nan()) {
        return 0.0;
    }
    (got - want).abs() / (f64::EPSILON * want.abs().max(f64::MIN_POSITIVE))
}

#[test]
// `!(a < b)` is the point: it is the unordered comparison (true on NaN) the
// kernel's PTX uses, written the way the CUDA source writes it.
#[allow(clippy::neg_cmp_op_on_partial_ord)]
fn device_f64_math_matches_rust() {
    let Some(mut s) = forms_sim() else { return };
    let mut rng = Rng(seed());
    let n = 150usize;
    let mut a: Vec<f64> = (0..n)
        .map(|i| {
            let x = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            match i % 5 {
                0 => x * 1e-30,
                1 => x,
                2 => (x - 0.5) * 1400.0, // exp over its whole range, incl. under/overflow
                3 => x * 1e300,
                _ => -x,
            }
        })
        .collect();
    a[0] = 0.0;
    a[1] = f64::NAN;
    a[2] = f64::INFINITY;
    a[3] = f64::NEG_INFINITY;
    a[4] = 5e-324; // subnormal
    let b: Vec<f64> = (0..n)
        .map(|i| if i % 4 == 0 { a[i] } else { a[(i * 7) % n] })
        .collect();
    let f: Vec<f32> = (0..2 * n)
        .map(|i| match i % 9 {
            0 => f32::NAN,
            1 => f32::INFINITY,
            _ => rng.f32(2.0),
        })
        .collect();
    let si: Vec<i32> = (0..2 * n).map(|_| rng.next_u64() as i32).collect();
    let (da, db, df, ds) = (
        upload(&mut s, bytemuck::cast_slice(&a)),
        upload(&mut s, bytemuck::cast_slice(&b)),
        upload(&mut s, bytemuck::cast_slice(&f)),
        upload(&mut s, bytemuck::cast_slice(&si)),
    );
    let (dout, dflags) = (s.alloc(8 * 12 * n).unwrap(), s.alloc(4 * n).unwrap());
    let args = [
        P::Ptr(da),
        P::Ptr(db),
        P::Ptr(df),
        P::Ptr(ds),
        P::Ptr(dout),
        P::Ptr(dflags),
        P::U32(n as u32),
    ];
    s.launch("f64_math", [3, 1, 1], [64, 1, 1], 0, &args)
        .unwrap();
    let mut out = vec![0f64; 12 * n];
    let mut flags = vec![0u32; n];
    s.read(dout, bytemuck::cast_slice_mut(&mut out)).unwrap();
    s.read(dflags, bytemuck::cast_slice_mut(&mut flags))
        .unwrap();
    let (mut worst_log, mut worst_exp) = (0f64, 0f64);
    for i in 0..n {
        let (x, y, fx, fy) = (a[i], b[i], f[2 * i], f[2 * i + 1]);
        let o = &out[i * 12..(i + 1) * 12];
        // CUDA documents log and exp as within 1 ulp; Rust's are within 1 too.
        let (el, ee) = (ulps(o[0], x.ln()), ulps(o[1], x.exp()));
        assert!(el <= 2.0, "log({x:e}) = {:e}, Rust {:e}", o[0], x.ln());
        assert!(ee <= 2.0, "exp({x:e}) = {:e}, Rust {:e}", o[1], x.exp());
        worst_log = worst_log.max(el);
        worst_exp = worst_exp.max(ee);
        let ax = x.abs();
        let exact = [
            x.floor(),
            x.max(y),
            x - y,
            x + y,
            -x,
            if ax < 4e9 { (ax as u32) as f64 } else { -1.0 },
            x,
            x + y,
            f64::from(fx + fy),
            f64::from(si[2 * i].max(si[2 * i + 1])),
        ];
        for (k, (&g, &e)) in o[2..].iter().zip(&exact).enumerate() {
            assert!(
                g.to_bits() == e.to_bits() || (g.is_nan() && e.is_nan()),
                "element {i}, result {}: {g:e} vs {e:e}",
                k + 2
            );
        }
        let want = [
            !(fx < fy),
            !(fx <= fy),
            !(fx > fy),
            !(x > y),
            x < y,
            x == y,
            x > y,
            fx > 0.0 && fx.is_finite(),
        ]
        .iter()
        .enumerate()
        .fold(0u32, |acc, (k, &bit)| acc | (u32::from(bit) << k));
        assert_eq!(
            flags[i], want,
            "comparisons of element {i}: ({fx}, {fy}), ({x:e}, {y:e})"
        );
    }
    println!("f64 log worst {worst_log} ulp, exp worst {worst_exp} ulp");
}
