//! Every instruction form the real kernels use is exercised by a test kernel
//! whose results are computed independently, the coverage kernel itself, and
//! the explicitly rounded f64 forms of the gradient-clipping kernel.

mod common;

use std::collections::BTreeSet;

use charlstm_cuda::gpu::ptx;
use charlstm_cuda::sim::{ParamValue as P, Simulator};

/// Opcode forms (`fma.rn.f32`, `ld.global.nc.u32`, ...) of a PTX text.
fn forms(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(|l| l.split("//").next().unwrap_or("").trim())
        .filter(|l| !l.is_empty() && !l.starts_with('.') && !l.ends_with(':'))
        .filter(|l| !matches!(l.chars().next(), Some('{' | '}' | '(' | ')' | '$' | '%')))
        .map(|l| {
            if l.starts_with('@') {
                l.split_once(char::is_whitespace).map_or("", |x| x.1)
            } else {
                l
            }
        })
        .filter_map(|l| l.split(|c: char| c.is_whitespace() || c == ';').next())
        .filter(|op| !op.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn every_form_used_by_the_kernels_has_a_test_kernel() {
    if !common::kernels() {
        return;
    }
    let used: BTreeSet<String> = ptx::MODULES.iter().flat_map(|m| forms(m.ptx)).collect();
    let tested: BTreeSet<String> = ptx::TEST_MODULES
        .iter()
        .flat_map(|m| forms(m.ptx))
        .collect();
    assert!(
        used.len() > 20,
        "the form extraction found too little: {used:?}"
    );
    let missing: Vec<_> = used.difference(&tested).collect();
    eprintln!(
        "{} forms used by kernels/, all covered by tests/kernels/",
        used.len()
    );
    assert!(
        missing.is_empty(),
        "kernels/ use instruction forms no test kernel exercises: {missing:?}; add them to a \
         tests/kernels/*.cu kernel with an independent check"
    );
}

#[test]
fn coverage_kernel_matches_rust() {
    if !common::kernels() {
        return;
    }
    let mut s = Simulator::new(3);
    s.load_module("coverage", ptx::test_module("coverage").expect("module"))
        .expect("parse");
    let n = 200usize;
    let a: Vec<f32> = (0..n).map(|i| (i as f32 - 77.0) * 0.37).collect();
    let u: Vec<u32> = (0..n as u32)
        .map(|i| i.wrapping_mul(2_654_435_761) >> 7)
        .collect();
    let mut w = Vec::with_capacity(2 * n);
    for i in 0..n as u64 {
        w.push(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        w.push(if i % 7 == 0 {
            0
        } else {
            (i * 1_000_003) << (i % 40)
        });
    }
    let up = |s: &mut Simulator, bytes: &[u8]| {
        let p = s.alloc(bytes.len()).expect("alloc");
        s.write(p, bytes).expect("write");
        p
    };
    let (da, du, dw) = (
        up(&mut s, bytemuck::cast_slice(&a)),
        up(&mut s, bytemuck::cast_slice(&u)),
        up(&mut s, bytemuck::cast_slice(&w)),
    );
    let of = s.alloc(n * 5 * 4).expect("alloc");
    let ow = s.alloc(n * 4 * 8).expect("alloc");
    // 64-thread blocks: every block's tile is full and indexed by its own threads.
    let blocks = n.div_ceil(64) as u32;
    let args = [
        P::Ptr(da),
        P::Ptr(du),
        P::Ptr(dw),
        P::Ptr(of),
        P::Ptr(ow),
        P::U32(n as u32),
    ];
    s.launch("coverage_forms", [blocks, 1, 1], [64, 1, 1], 0, &args)
        .expect("launch");
    let mut f = vec![0f32; n * 5];
    let mut r = vec![0u64; n * 4];
    s.read(of, bytemuck::cast_slice_mut(&mut f)).expect("read");
    s.read(ow, bytemuck::cast_slice_mut(&mut r)).expect("read");
    for i in 0..n {
        // The tile slot thread t reads is the one it wrote: blocks are 64 wide.
        let x = a[i];
        let v = [x, x + 1.0, u[i] as f32, 2.0];
        let want = [x + v[1], x - v[2], x * v[3], 1.0, v[0] + v[1] + v[2] + v[3]];
        for (k, (&g, &e)) in f[i * 5..i * 5 + 5].iter().zip(&want).enumerate() {
            assert_eq!(
                g.to_bits(),
                e.to_bits(),
                "thread {i}, float result {k}: {g} vs {e}"
            );
        }
        let (p, q) = (w[2 * i], w[2 * i + 1]);
        let want = [
            p.checked_div(q).unwrap_or(0),
            u64::from(p < q),
            u64::from(p >= q),
            (p as i64).wrapping_sub(q as i64) as u64,
        ];
        assert_eq!(&r[i * 4..i * 4 + 4], &want, "thread {i}, integer results");
    }
}

/// `mul.rn.f64` (unfused, even next to an add) and `cvt.rn.f32.f64`, bit for
/// bit against Rust (which never fuses and narrows to nearest even).
#[test]
fn rounded_f64_products_and_narrowing_match_rust() {
    if !common::kernels() {
        return;
    }
    let mut s = Simulator::new(5);
    s.load_module("f64_cvt", ptx::test_module("f64_cvt").expect("module"))
        .expect("parse");
    let n = 300usize;
    let a: Vec<f64> = (0..n)
        .map(|i| (i as f64 - 150.3) * 1.000_000_123_4)
        .collect();
    let b: Vec<f64> = (0..n).map(|i| 0.1 + (i as f64).sqrt() * 3.7e-3).collect();
    let up = |s: &mut Simulator, v: &[f64]| {
        let p = s.alloc(v.len() * 8).expect("alloc");
        s.write(p, bytemuck::cast_slice(v)).expect("write");
        p
    };
    let (da, db) = (up(&mut s, &a), up(&mut s, &b));
    let (out, narrowed) = (
        s.alloc(n * 16).expect("alloc"),
        s.alloc(n * 4).expect("alloc"),
    );
    let args = [
        P::Ptr(da),
        P::Ptr(db),
        P::Ptr(out),
        P::Ptr(narrowed),
        P::U32(n as u32),
    ];
    s.launch("f64_rn_ops", [3, 1, 1], [128, 1, 1], 0, &args)
        .expect("launch");
    let mut r = vec![0f64; 2 * n];
    let mut f = vec![0f32; n];
    s.read(out, bytemuck::cast_slice_mut(&mut r)).expect("read");
    s.read(narrowed, bytemuck::cast_slice_mut(&mut f))
        .expect("read");
    for i in 0..n {
        let (x, y) = (a[i], b[i]);
        assert_eq!(r[2 * i].to_bits(), (x * y).to_bits(), "x*y, element {i}");
        assert_eq!(
            r[2 * i + 1].to_bits(),
            (x * x + y).to_bits(),
            "x*x+y, element {i}"
        );
        assert_eq!(
            f[i].to_bits(),
            ((x / y) as f32).to_bits(),
            "(float)(x/y), element {i}"
        );
    }
}
