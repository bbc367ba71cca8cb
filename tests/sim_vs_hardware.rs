//! The simulator checked against a real GPU (DESIGN §10): every instruction
//! test kernel of `tests/kernels/*.cu` runs on the GPU and on the simulator
//! with the same inputs, through the same device seam (`GpuDevice`, module
//! `tests/NAME`, see `gpu::ptx::resolve`), and every output is compared:
//! bit for bit where PTX defines the result exactly, within the documented
//! error of the `.approx` instructions (and of the libdevice functions built
//! on them) elsewhere. One table of cases drives three tests:
//!
//! - `simulator_runs_every_case`: the whole table on two simulators with
//!   different interleavings, compared with the same rules (so the harness,
//!   its inputs and its rules run in CI, without a GPU);
//! - `every_test_kernel_is_run_or_excluded`: every `__global__` kernel of
//!   `tests/kernels/*.cu` is in the table or in [`EXCLUDED`] with a reason;
//! - `cuda_simulator_matches_hardware`: GPU 0 against the simulator, one line
//!   per output, all mismatches collected before it fails. Without a GPU it
//!   prints `SKIPPED: no GPU (...)` (the GPU check treats that as a failure).
//!   Run it with `--nocapture`: the per-output lines are the check's record.
//!
//! Two more check the harness: `rules_judge_as_documented` (the rules on
//! hand-made bit patterns) and `differences_are_reported` (a flipped bit, an
//! unwritten element and a failed launch all fail the comparison).
//!
//! Inputs are deterministic (fixed seeds), so a mismatch on the GPU replays
//! exactly. Outputs start as 0xFF bytes (a NaN in every float format), so an
//! element one device never wrote cannot pass for a computed value.
//!
//! NaN payloads. CUDA documents the result of an f32 operation on a NaN as
//! the canonical 0x7fffffff (CUDA C++ Programming Guide, "Floating-Point
//! Standard"), leaves f64 payloads unspecified (and f64 `neg`/`abs` passing
//! a NaN through unchanged), and PTX says half-precision instructions
//! "return an unspecified NaN" (PTX ISA 9.7.4). The simulator computes with
//! host floats and keeps whatever payload those give; no kernel of ours
//! depends on one. So in a float slot, a NaN on both sides with different
//! bits is tolerated and counted (`nan-payload=K` on the output's line);
//! a NaN against a number, or either side still holding the 0xFF poison, is
//! a mismatch under every rule.

mod common;

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use charlstm_cuda::gpu::{CudaDevice, GpuDevice, KernelArg, LaunchConfig, SimDevice, ptx};

// ---------------------------------------------------------------------------
// Element types and comparison rules
// ---------------------------------------------------------------------------

/// How the bytes of one element are read and shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Elem {
    U16,
    U32,
    I32,
    U64,
    I64,
    F16,
    Bf16,
    F32,
    F64,
}

impl Elem {
    fn size(self) -> usize {
        match self {
            Elem::U16 | Elem::F16 | Elem::Bf16 => 2,
            Elem::U32 | Elem::I32 | Elem::F32 => 4,
            Elem::U64 | Elem::I64 | Elem::F64 => 8,
        }
    }

    /// The bits of an output element nobody wrote (all 0xFF).
    fn poison(self) -> u64 {
        u64::MAX >> (64 - 8 * self.size())
    }

    fn is_nan(self, b: u64) -> bool {
        match self {
            Elem::F16 => b & 0x7c00 == 0x7c00 && b & 0x03ff != 0,
            Elem::Bf16 => b & 0x7f80 == 0x7f80 && b & 0x007f != 0,
            Elem::F32 => f32::from_bits(b as u32).is_nan(),
            Elem::F64 => f64::from_bits(b).is_nan(),
            _ => false,
        }
    }

    fn value(self, b: u64) -> f64 {
        match self {
            Elem::F16 => half::f16::from_bits(b as u16).to_f64(),
            Elem::Bf16 => half::bf16::from_bits(b as u16).to_f64(),
            Elem::F32 => f64::from(f32::from_bits(b as u32)),
            Elem::F64 => f64::from_bits(b),
            _ => self.ordinal(b) as f64,
        }
    }

    /// The element's place on its number line: for a float, in units of the
    /// format's spacing (so the difference of two is their ulp distance,
    /// across zero, subnormals and up to infinity); for an integer, itself.
    fn ordinal(self, b: u64) -> i128 {
        let sign_magnitude = |sign_bit: u32| {
            let magnitude = i128::from(b & ((1u64 << sign_bit) - 1));
            if (b >> sign_bit) & 1 == 1 {
                -magnitude
            } else {
                magnitude
            }
        };
        match self {
            Elem::F16 | Elem::Bf16 => sign_magnitude(15),
            Elem::F32 => sign_magnitude(31),
            Elem::F64 => sign_magnitude(63),
            Elem::I32 => i128::from(b as u32 as i32),
            Elem::I64 => i128::from(b as i64),
            Elem::U16 | Elem::U32 | Elem::U64 => i128::from(b),
        }
    }

    /// Hex and decimal.
    fn show(self, b: u64) -> String {
        let decimal = match self {
            Elem::F16 => format!("{:e}", half::f16::from_bits(b as u16).to_f32()),
            Elem::Bf16 => format!("{:e}", half::bf16::from_bits(b as u16).to_f32()),
            Elem::F32 => format!("{:e}", f32::from_bits(b as u32)),
            Elem::F64 => format!("{:e}", f64::from_bits(b)),
            _ => self.ordinal(b).to_string(),
        };
        format!("{b:#0w$x} ({decimal})", w = 2 + 2 * self.size())
    }
}

/// What counts as agreement between the two devices for one element.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Rule {
    /// The same bits (NaN payloads aside, see the file's header).
    Exact,
    /// Floats at most this many ulps apart.
    Ulps(u64),
    /// Floats at most this many ulps apart, or this close in absolute value
    /// (an absolute bound near a zero of the function, a relative one away
    /// from it, as PTX documents `lg2.approx`).
    UlpsOrAbs(u64, f64),
    /// Both integers in `lo..=hi`: an output that legitimately depends on
    /// the order in which blocks run.
    Range(i128, i128),
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Rule::Exact => write!(f, "exact"),
            Rule::Ulps(n) => write!(f, "ulps<={n}"),
            Rule::UlpsOrAbs(n, x) => write!(f, "ulps<={n}|abs<={x:e}"),
            Rule::Range(lo, hi) => write!(f, "in {lo}..={hi}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Equal,
    /// Both NaN, different bits: tolerated, counted.
    NanPayload,
    /// Different, but within the rule.
    Within,
    Mismatch,
}

fn judge(elem: Elem, rule: Rule, a: u64, b: u64) -> Verdict {
    if a == b {
        return Verdict::Equal;
    }
    if a == elem.poison() || b == elem.poison() {
        return Verdict::Mismatch; // one device never wrote it
    }
    let (nan_a, nan_b) = (elem.is_nan(a), elem.is_nan(b));
    if nan_a && nan_b {
        return Verdict::NanPayload;
    }
    let ok = match rule {
        Rule::Exact => false,
        Rule::Range(lo, hi) => {
            (lo..=hi).contains(&elem.ordinal(a)) && (lo..=hi).contains(&elem.ordinal(b))
        }
        Rule::Ulps(n) => !nan_a && !nan_b && ulp_distance(elem, a, b) <= u128::from(n),
        Rule::UlpsOrAbs(n, x) => {
            !nan_a
                && !nan_b
                && (ulp_distance(elem, a, b) <= u128::from(n)
                    || (elem.value(a) - elem.value(b)).abs() <= x)
        }
    };
    if ok {
        Verdict::Within
    } else {
        Verdict::Mismatch
    }
}

fn ulp_distance(elem: Elem, a: u64, b: u64) -> u128 {
    elem.ordinal(a).abs_diff(elem.ordinal(b))
}

/// How an output is compared: one (element, rule) per slot of a stride
/// (one slot: every element alike), and why a rule is not `Exact`.
#[derive(Clone, Debug)]
struct Check {
    slots: Vec<(Elem, Rule)>,
    why: &'static str,
}

fn exact(elem: Elem) -> Check {
    Check {
        slots: vec![(elem, Rule::Exact)],
        why: "",
    }
}

fn per_slot(slots: Vec<(Elem, Rule)>, why: &'static str) -> Check {
    let size = slots[0].0.size();
    assert!(slots.iter().all(|(e, _)| e.size() == size), "{slots:?}");
    Check { slots, why }
}

// ---------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------

/// One kernel parameter, in the kernel's order.
enum Param {
    /// A buffer uploaded before the launch and, when `check` is set,
    /// downloaded and compared after it (an output, or an in-out buffer).
    Buf {
        name: &'static str,
        init: Vec<u8>,
        check: Option<Check>,
    },
    U32(u32),
    F32(f32),
}

/// One launch of one test kernel.
struct Case {
    /// The file stem in `tests/kernels/`.
    module: &'static str,
    kernel: &'static str,
    grid: u32,
    block: u32,
    shared_bytes: u32,
    params: Vec<Param>,
}

fn input<T: bytemuck::Pod>(name: &'static str, data: &[T]) -> Param {
    Param::Buf {
        name,
        init: bytemuck::cast_slice(data).to_vec(),
        check: None,
    }
}

fn inout<T: bytemuck::Pod>(name: &'static str, data: &[T], check: Check) -> Param {
    Param::Buf {
        name,
        init: bytemuck::cast_slice(data).to_vec(),
        check: Some(check),
    }
}

/// `count` elements of the check's element size, poisoned with 0xFF.
fn output(name: &'static str, count: usize, check: Check) -> Param {
    Param::Buf {
        name,
        init: vec![0xFF; count * check.slots[0].0.size()],
        check: Some(check),
    }
}

/// Test kernels deliberately not run on a GPU.
const EXCLUDED: &[(&str, &str, &str)] = &[
    (
        "bugs",
        "bug_off_by_one",
        "planted out-of-bounds store (y[n]): undefined on a GPU, may corrupt a neighbouring \
         allocation or fault and kill the context for every later case",
    ),
    (
        "bugs",
        "bug_missing_sync",
        "planted shared-memory race: its output is undefined, nothing to compare",
    ),
    (
        "bugs",
        "bug_read_unwritten",
        "planted read of never-written memory: its output is whatever the GPU's memory held",
    ),
    (
        "bugs",
        "bug_wrong_mask",
        "planted shfl.sync whose mask names lanes that do not exist: undefined behaviour",
    ),
    (
        "cluster_forms_sm90",
        "bug_cluster_no_barrier",
        "planted race on another block's shared memory: its output is undefined",
    ),
    (
        "cluster_forms_sm90",
        "bug_cluster_rank",
        "planted mapa to a rank outside the cluster: undefined behaviour, may fault",
    ),
    (
        "cluster_forms_sm90",
        "bug_cluster_early_exit",
        "planted read of an exited block's shared memory: undefined behaviour, may fault",
    ),
    (
        "cluster_forms_sm90",
        "bug_cluster_wait_only",
        "planted cluster barrier wait with no arrive: undefined behaviour, may hang",
    ),
    (
        "bugs",
        "bug_misaligned",
        "planted misaligned 16-byte load: a misaligned-address fault kills the CUDA context",
    ),
];

/// splitmix64: the same test data on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Either sign, a random mantissa and an exponent uniform in [lo, hi).
    fn spread(&mut self, lo: i32, hi: i32) -> f64 {
        let e = lo + self.below((hi - lo) as u64) as i32;
        let sign = if self.next() & 1 == 1 { -1.0 } else { 1.0 };
        sign * (1.0 + self.unit()) * 2f64.powi(e)
    }
}

/// The canonical f32 NaN: as input, results that propagate it keep the bits
/// the GPU would produce anyway.
const NAN32: f32 = f32::from_bits(0x7fff_ffff);
const NAN64: f64 = f64::from_bits(0x7fff_ffff_ffff_ffff);

/// Signed zeros, infinities, NaN, subnormals, extremes, an int-overflowing value.
const F32_EDGES: [f32; 14] = [
    0.0,
    -0.0,
    1.0,
    -1.5,
    0.5,
    -2.5,
    f32::INFINITY,
    f32::NEG_INFINITY,
    NAN32,
    1.0e-40,
    -3.0e-39,
    f32::MAX,
    f32::MIN_POSITIVE,
    3.0e9,
];

const F64_EDGES: [f64; 14] = [
    0.0,
    -0.0,
    1.0,
    -2.5,
    0.1,
    3.0,
    f64::INFINITY,
    f64::NEG_INFINITY,
    NAN64,
    5e-324,
    -2.0e-310,
    f64::MAX,
    1.0e300,
    -1.0e-300,
];

/// `n` pairs: every pair of `edges` first, then random values with binary
/// exponents in [lo, hi).
fn pairs_f32(n: usize, seed: u64, edges: &[f32], lo: i32, hi: i32) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Rng(seed);
    let e = edges.len();
    (0..n)
        .map(|i| {
            if i < e * e {
                (edges[i / e], edges[i % e])
            } else {
                (rng.spread(lo, hi) as f32, rng.spread(lo, hi) as f32)
            }
        })
        .unzip()
}

fn pairs_f64(n: usize, seed: u64, edges: &[f64], lo: i32, hi: i32) -> (Vec<f64>, Vec<f64>) {
    let mut rng = Rng(seed);
    let e = edges.len();
    (0..n)
        .map(|i| {
            if i < e * e {
                (edges[i / e], edges[i % e])
            } else {
                (rng.spread(lo, hi), rng.spread(lo, hi))
            }
        })
        .unzip()
}

/// `edges`, then random values with binary exponents in [lo, hi).
fn f32s(n: usize, seed: u64, edges: &[f32], lo: i32, hi: i32) -> Vec<f32> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|i| {
            edges
                .get(i)
                .copied()
                .unwrap_or_else(|| rng.spread(lo, hi) as f32)
        })
        .collect()
}

fn u32s(n: usize, seed: u64) -> Vec<u32> {
    let mut rng = Rng(seed);
    (0..n).map(|_| rng.next() as u32).collect()
}

/// Every test kernel worth running on hardware, with inputs valid there.
/// Sizes and block shapes follow the simulator's own tests of each kernel
/// (tests/sim.rs, sim_calls_and_half.rs, sim_coverage.rs, generate_forms.rs,
/// lstm_kernels.rs, lstm_persistent.rs), with edge values added.
fn cases() -> Vec<Case> {
    use Elem::*;
    let mut v = Vec::new();

    // axpy: y = a * x + y (an fma), every edge pair.
    let n = 1000;
    let (x, y) = pairs_f32(n, 1, &F32_EDGES, -20, 20);
    v.push(Case {
        module: "axpy",
        kernel: "axpy_f32",
        grid: 4,
        block: 256,
        shared_bytes: 0,
        params: vec![
            Param::F32(-1.75),
            input("x", &x),
            inout("y", &y, exact(F32)),
            Param::U32(n as u32),
        ],
    });

    // int_ops: 32/64-bit integer arithmetic, every pair of integer edges
    // (INT_MIN / -1 and division by zero included, as tests/sim.rs has them).
    let n = 300;
    let edges = [
        0,
        1,
        -1,
        7,
        i32::MIN,
        i32::MAX,
        31,
        32,
        -32,
        0x0f0f,
        65536,
        -65537,
    ];
    let mut rng = Rng(2);
    let (a, b): (Vec<i32>, Vec<i32>) = (0..n)
        .map(|i| {
            if i < edges.len() * edges.len() {
                (edges[i / edges.len()], edges[i % edges.len()])
            } else {
                let (p, q) = (rng.next() as u32, rng.next() as u32);
                (p as i32, (q as i32) >> (q % 24))
            }
        })
        .unzip();
    v.push(Case {
        module: "int_ops",
        kernel: "int_ops",
        grid: 3,
        block: 128,
        shared_bytes: 0,
        params: vec![
            input("a", &a),
            input("b", &b),
            output("out32", 16 * n, exact(I32)),
            output("out64", 4 * n, exact(I64)),
            Param::U32(n as u32),
        ],
    });

    // f32_exact: correctly rounded f32 arithmetic, min/max (PTX: -0 < +0,
    // a NaN operand yields the other), conversions to int (saturating, NaN -> 0).
    let n = 512;
    let (a, b) = pairs_f32(n, 3, &F32_EDGES, -30, 30);
    v.push(Case {
        module: "f32_ops",
        kernel: "f32_exact",
        grid: 4,
        block: 128,
        shared_bytes: 0,
        params: vec![
            input("a", &a),
            input("b", &b),
            output("out", 10 * n, exact(F32)),
            Param::U32(n as u32),
        ],
    });

    // f32_approx: out[6 i + k] = __expf (mul, ex2.approx.f32), __logf (lg2.approx.f32,
    // mul), tanhf (|x| < 0.6: an fma polynomial, exact; else ex2.approx.ftz, rcp.approx.ftz),
    // __fdividef(1, x) (div.approx.f32), rsqrtf (rsqrt.approx.f32), expf (fma range
    // reduction, ex2.approx.ftz, exact scaling). Bounds: PTX ISA 9.7.3 per instruction
    // (ex2.approx.f32: 2 ulp from the correctly rounded result over the full range;
    // lg2.approx.f32: absolute 2^-22 for inputs in (0.5, 2), relative 2^-22 elsewhere;
    // rcp.approx.f32: 1 ulp; div.approx.f32: 2 ulp for |divisor| in [2^-126, 2^126];
    // rsqrt.approx.f32: relative 2^-22.9), plus the simulator's own rounding of the
    // exact function (<= 1 ulp), composed through each formula:
    //   0 __expf   : 2 + 1                                         -> 3 ulp
    //   1 __logf   : ln2 * (2^-22 + 2^-24) + 2 roundings < 2^-21 near log 0,
    //                else 2^-22 relative (<= 4 ulp) + 2           -> 6 ulp or 2^-21
    //   2 tanhf    : 1 - 2 / (2^(2|x| log2 e) + 1) with r <= 0.231: hardware
    //                2 r (2 + 1/2 + 1) 2^-23 <= 3.2 ulp of t in [0.53, 1), simulator
    //                <= 1.4 ulp (CUDA documents tanhf as 2 ulp)     -> 5 ulp
    //   3 __fdividef: 2 (vs the exact quotient) + 1/2 -> 3 ulp
    //   4 rsqrtf   : 2^-22.9 relative <= 2.2 ulp + 1               -> 4 ulp
    //   5 expf     : 2 (ex2 on the reduced argument) + 1, exact scaling -> 3 ulp
    // Inputs stay where all six are documented: |x| in [2^-126, 2^126] (div.approx
    // says nothing for 0, subnormal or infinite divisors) or NaN; the tanh branch
    // points, exp overflow / subnormal results and lg2 near 1 included.
    let n = 256;
    let edges = [
        0.6,
        -0.6,
        0.599_999_96,
        f32::from_bits(0x4110_2CB4),
        -f32::from_bits(0x4110_2CB4),
        88.7,
        -87.0,
        -103.0,
        1.0e-30,
        -1.0e-30,
        1.0e30,
        -1.0e30,
        NAN32,
        1.0,
        -1.0,
        0.03,
        100.0,
        -100.0,
    ];
    let a = f32s(n, 4, &edges, -6, 7);
    v.push(Case {
        module: "f32_ops",
        kernel: "f32_approx",
        grid: 1,
        block: 256,
        shared_bytes: 0,
        params: vec![
            input("a", &a),
            output(
                "out",
                6 * n,
                per_slot(
                    vec![
                        (F32, Rule::Ulps(3)),
                        (F32, Rule::UlpsOrAbs(6, 2f64.powi(-21))),
                        (F32, Rule::Ulps(5)),
                        (F32, Rule::Ulps(3)),
                        (F32, Rule::Ulps(4)),
                        (F32, Rule::Ulps(3)),
                    ],
                    "ex2/lg2/rcp/div/rsqrt.approx: PTX ISA 9.7.3 bounds composed per formula, \
                     see cases()",
                ),
            ),
            Param::U32(n as u32),
        ],
    });

    // f64_ops: add, mul, fma, div.rn, sqrt.rn in f64 (IEEE, subnormals kept).
    let n = 256;
    let (a, b) = pairs_f64(n, 5, &F64_EDGES, -60, 60);
    v.push(Case {
        module: "f64_cvt",
        kernel: "f64_ops",
        grid: 1,
        block: 256,
        shared_bytes: 0,
        params: vec![
            input("a", &a),
            input("b", &b),
            output("out", 5 * n, exact(F64)),
            Param::U32(n as u32),
        ],
    });

    // cvt_ops: f32 -> f16 / bf16 (round to nearest even, overflow to inf,
    // subnormals), back to f32, to int (rni, rzi, floor; saturating), to f64.
    let n = 256;
    let edges = [
        2.5,
        -2.5,
        3.5,
        65520.0, // rounds to f16 infinity
        65504.0,
        65519.99,
        1.0e-6, // f16 subnormal
        -5.9604645e-8,
        1.0e-40,
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        NAN32,
        3.0e9,
        -3.0e9,
        2_147_483_520.0,
        -2_147_483_648.0,
        1.003_906_3, // a bf16 tie
        f32::MAX,
    ];
    let x: Vec<f32> = f32s(n, 6, &edges, -30, 24);
    v.push(Case {
        module: "f64_cvt",
        kernel: "cvt_ops",
        grid: 1,
        block: 256,
        shared_bytes: 0,
        params: vec![
            input("a", &x),
            output("h", n, exact(F16)),
            output("bf", n, exact(Bf16)),
            output("back", 2 * n, exact(F32)),
            output("ints", 3 * n, exact(I32)),
            output("d", n, exact(F64)),
            Param::U32(n as u32),
        ],
    });

    // f64_rn_ops: unfused mul.rn / add.rn f64 and the cvt.rn.f32.f64 narrowing.
    let n = 300;
    let (a, b) = pairs_f64(n, 7, &F64_EDGES, -140, 140);
    v.push(Case {
        module: "f64_cvt",
        kernel: "f64_rn_ops",
        grid: 3,
        block: 128,
        shared_bytes: 0,
        params: vec![
            input("a", &a),
            input("b", &b),
            output("out", 2 * n, exact(F64)),
            output("narrowed", n, exact(F32)),
            Param::U32(n as u32),
        ],
    });

    // warp_ops: shfl.sync butterfly (same order on every lane: exact), down, up,
    // idx, ballot / any / all. Two full warps.
    let mut rng = Rng(8);
    let a: Vec<f32> = (0..64)
        .map(|i| match i {
            3 => 0.0,
            17 => -0.0,
            40 => 100.25,
            41 => -100.25,
            50 => 1.0e-40,
            _ => ((rng.unit() - 0.5) * 300.0) as f32,
        })
        .collect();
    v.push(Case {
        module: "warp_ops",
        kernel: "warp_ops",
        grid: 1,
        block: 64,
        shared_bytes: 0,
        params: vec![
            input("a", &a),
            output("out", 4 * 64, exact(F32)),
            output("votes", 3 * 64, exact(U32)),
        ],
    });

    // block_ops: a shared-memory tree reduction (a fixed order: exact) ...
    let a = f32s(1024, 9, &[], -10, 10);
    v.push(Case {
        module: "block_ops",
        kernel: "block_sum",
        grid: 4,
        block: 256,
        shared_bytes: 0,
        params: vec![input("a", &a), output("out", 4, exact(F32))],
    });
    // ... a dynamic-shared-memory float4 reversal of raw bits (compared as
    // bits: a copy must keep every NaN payload too) ...
    let bits = u32s(256, 10);
    v.push(Case {
        module: "block_ops",
        kernel: "dyn_reverse",
        grid: 1,
        block: 64,
        shared_bytes: 64 * 16,
        params: vec![input("a", &bits), output("out", 256, exact(U32))],
    });
    // ... and global / shared atomics.
    let a = u32s(512, 11);
    v.push(Case {
        module: "block_ops",
        kernel: "atomics",
        grid: 4,
        block: 128,
        shared_bytes: 0,
        params: vec![
            input("a", &a),
            inout(
                "counters",
                &[0u32, u32::MAX, 0, 0, 0],
                per_slot(
                    vec![
                        (U32, Rule::Exact),
                        (U32, Rule::Exact),
                        (U32, Rule::Exact),
                        (U32, Rule::Range(1, 4)),
                        (U32, Rule::Exact),
                    ],
                    "counters[3] is atomicCAS(0 -> blockIdx + 1): the first block to get \
                     there wins, which depends on scheduling",
                ),
            ),
            // Sums of small integers (v & 15, at most 7680): exact in any order.
            inout("fsum", &[0f32], exact(F32)),
            inout("usum", &[0u64], exact(U64)),
        ],
    });

    // calls: call.uni to .func with arguments, return values, nesting.
    let n = 300;
    let a = u32s(n, 12);
    v.push(Case {
        module: "calls",
        kernel: "calls",
        grid: 2,
        block: 160,
        shared_bytes: 0,
        params: vec![
            input("a", &a),
            output("out", 3 * n, exact(U32)),
            Param::U32(n as u32),
        ],
    });

    // coverage_forms: add/sub/mul.rn f32, ld.global.nc, ld.shared.v4, div.u64,
    // 64-bit compares. 64-thread blocks (each thread reads its own tile slot).
    let n = 200;
    let a = f32s(n, 13, &F32_EDGES, -20, 20);
    let u = u32s(n, 14);
    let mut rng = Rng(15);
    let w: Vec<u64> = (0..2 * n as u64)
        .map(|i| match i % 10 {
            1 => 0, // q = 0: guarded division
            3 => u64::MAX,
            5 => 1,
            7 => 1 << 63,
            _ => rng.next() >> rng.below(64),
        })
        .collect();
    v.push(Case {
        module: "coverage",
        kernel: "coverage_forms",
        grid: n.div_ceil(64) as u32,
        block: 64,
        shared_bytes: 0,
        params: vec![
            input("a", &a),
            input("u", &u),
            input("w", &w),
            output("out_f", 5 * n, exact(F32)),
            output("out_w", 4 * n, exact(U64)),
            Param::U32(n as u32),
        ],
    });

    // philox_blocks: Philox 4x32-10 (mul.hi, 64-bit shifts) and its uniform
    // float; Random123's known-answer inputs first.
    let n = 64;
    let mut rng = Rng(16);
    let mut keys = vec![0u64, u64::MAX, 0x299f_31d0_a409_3822];
    let mut counters = vec![
        [0u32; 4],
        [u32::MAX; 4],
        [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
    ];
    while keys.len() < n {
        keys.push(rng.next());
        let w = rng.next();
        counters.push([
            w as u32,
            (w >> 32) as u32 & 0xff,
            rng.next() as u32,
            1 + rng.below(4) as u32,
        ]);
    }
    v.push(Case {
        module: "generate_forms",
        kernel: "philox_blocks",
        grid: 2,
        block: 64,
        shared_bytes: 0,
        params: vec![
            input("counters", &counters),
            input("keys", &keys),
            output("out", 4 * n, exact(U32)),
            output("uniform", n, exact(F32)),
            Param::U32(n as u32),
        ],
    });

    // f64_math: out[12 i ..] = libdevice log, exp (built on rcp.approx.ftz.f64,
    // which the simulator computes exactly and the GPU grossly: the Newton steps
    // after it make both results agree with the true value within 1 ulp, which
    // CUDA documents for log and exp (CUDA C++ Programming Guide, double-precision
    // mathematical functions): 2 ulp apart at most), then exact forms; flags: the
    // ordered / unordered comparisons. Inputs as tests/generate_forms.rs makes them.
    let n = 150;
    let mut rng = Rng(17);
    let mut a: Vec<f64> = (0..n)
        .map(|i| {
            let x = rng.unit();
            match i % 5 {
                0 => x * 1e-30,
                1 => x,
                2 => (x - 0.5) * 1400.0, // exp over its whole range, under/overflow included
                3 => x * 1e300,
                _ => -x,
            }
        })
        .collect();
    a[..5].copy_from_slice(&[0.0, NAN64, f64::INFINITY, f64::NEG_INFINITY, 5e-324]);
    let b: Vec<f64> = (0..n)
        .map(|i| if i % 4 == 0 { a[i] } else { a[(i * 7) % n] })
        .collect();
    let f: Vec<f32> = (0..2 * n)
        .map(|i| match i % 9 {
            0 => NAN32,
            1 => f32::INFINITY,
            _ => ((rng.unit() - 0.5) * 4.0) as f32,
        })
        .collect();
    let s: Vec<i32> = (0..2 * n).map(|_| rng.next() as i32).collect();
    let mut slots = vec![(F64, Rule::Ulps(2)), (F64, Rule::Ulps(2))];
    slots.extend([(F64, Rule::Exact); 10]);
    v.push(Case {
        module: "generate_forms",
        kernel: "f64_math",
        grid: 3,
        block: 64,
        shared_bytes: 0,
        params: vec![
            input("a", &a),
            input("b", &b),
            input("f", &f),
            input("s", &s),
            output(
                "out",
                12 * n,
                per_slot(
                    slots,
                    "libdevice log / exp: 1 ulp each (CUDA C++ Programming Guide), so 2 apart",
                ),
            ),
            output("flags", n, exact(U32)),
            Param::U32(n as u32),
        ],
    });

    // draw_rows: the sampler's draw, one row per thread, every strategy and
    // degenerate rows (all zero, NaN, negative, infinite, ties), as
    // tests/generate_forms.rs builds them. Strategy codes: T > 0 temperature,
    // 0 greedy, < 0 uniform (GenerateLauncher::encode).
    let (rows, vocab) = (200usize, 67usize);
    let mut rng = Rng(18);
    let pool = [0.2, 1.0, 1.2, 1e-3, 1e-300, 0.0, -1.0];
    let (mut probs, mut codes, mut us) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..rows {
        let mut row: Vec<f32> = (0..vocab)
            .map(|_| {
                let x = (rng.unit() * 2.0 - 1.0) as f32;
                x.abs().powi(1 + rng.below(11) as i32)
            })
            .collect();
        match r % 10 {
            0 => row.iter_mut().for_each(|p| *p = 0.0),
            1 => row[rng.below(vocab as u64) as usize] = NAN32,
            2 => row[rng.below(vocab as u64) as usize] = -0.5,
            3 => row[rng.below(vocab as u64) as usize] = f32::INFINITY,
            4 => row[vocab - 1] = row[0],
            _ => {}
        }
        let sum: f32 = row.iter().filter(|p| p.is_finite() && **p > 0.0).sum();
        if sum > 0.0 && r % 3 == 0 {
            row.iter_mut().for_each(|p| *p /= sum);
        }
        probs.extend_from_slice(&row);
        codes.push(pool[rng.below(pool.len() as u64) as usize]);
        us.push(if r % 7 == 0 {
            0.0f32
        } else {
            (rng.next() >> 40) as f32 / 16_777_216.0
        });
    }
    v.push(Case {
        module: "generate_forms",
        kernel: "draw_rows",
        grid: rows.div_ceil(64) as u32,
        block: 64,
        shared_bytes: 0,
        params: vec![
            input("probs", &probs),
            input("codes", &codes),
            input("u", &us),
            output(
                "w",
                rows * vocab,
                per_slot(
                    vec![(F64, Rule::Ulps(4096))],
                    "w = exp(log p / T) in f64 (libdevice, 1 ulp each, CUDA C++ Programming \
                     Guide): exp turns a 2-ulp relative difference of its argument into \
                     |argument| times that, and |argument| <= 745 where w is not 0; \
                     4096 >= 2 * 745 * 2.5 + 2 ulp",
                ),
            ),
            // The drawn index: equal unless u falls within an ulp of a
            // cumulative boundary, which these inputs do not.
            output("out", rows, exact(U32)),
            Param::U32(rows as u32),
            Param::U32(vocab as u32),
        ],
    });

    // half_ops: every f16 / bf16 form, specials first, as
    // tests/sim_calls_and_half.rs builds them. Each slot's format decides
    // which bits are a NaN; the setp slots are 0 / 1.
    let n = 600;
    let special: [u16; 14] = [
        0x0000, 0x8000, 0x7c00, 0xfc00, 0x7e00, 0x0001, 0x83ff, 0x3c00, 0xbc00, 0x7bff, 0x3c01,
        0x1400, 0x3800, 0x0400,
    ];
    let mut seed = 12345u32;
    let mut rnd = || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (seed >> 16) as u16
    };
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    let e = special.len();
    for i in 0..n {
        if i < e * e {
            a.push(special[i / e]);
            b.push(special[i % e]);
            c.push(special[(i * 7) % e]);
        } else {
            let mut h = || {
                let r = rnd();
                if r % 4 == 0 {
                    r
                } else {
                    (r & 0x83ff) | (0x3000 + (r % 12) * 0x400)
                }
            };
            a.push(h());
            b.push(h());
            c.push(h());
        }
    }
    let slots: Vec<(Elem, Rule)> = (0..48)
        .map(|k| match k {
            12 | 13 | 22 | 23 => (U16, Rule::Exact),
            16..22 | 38..48 => (Bf16, Rule::Exact),
            _ => (F16, Rule::Exact),
        })
        .collect();
    v.push(Case {
        module: "half_ops",
        kernel: "half_ops",
        grid: 3,
        block: 256,
        shared_bytes: 0,
        params: vec![
            input("a", &a),
            input("b", &b),
            input("c", &c),
            output("out", 48 * n, per_slot(slots, "")),
            Param::U32(n as u32),
        ],
    });

    // lstm_forms: clz.b64, neg.s64, 64-bit compares, or.pred, rcp.rn.f32
    // (correctly rounded: exact, subnormal results included), min.u32,
    // ld.global.nc.v4.f32 (out_f's second half: a read back as float4s).
    let n = 100;
    let w = common::lstm_forms_words(n);
    let a = f32s(n, 19, &F32_EDGES, -120, 120);
    let u = u32s(2 * n, 20);
    v.push(Case {
        module: "lstm_forms",
        kernel: "lstm_forms",
        grid: 4,
        block: 32,
        shared_bytes: 0,
        params: vec![
            input("w", &w),
            input("a", &a),
            input("u", &u),
            output("out_w", 5 * n, exact(U64)),
            output("out_f", 2 * n, exact(F32)),
            output("out_u", n, exact(U32)),
            Param::U32(n as u32),
        ],
    });

    // persistent_forms: max.u32, min.u64, not.b64, setp.le.u32, setp.eq.b32,
    // xor.pred, not.pred; equal / smaller / larger / low-byte-equal pairs.
    let n = 96;
    let (a, w) = common::persistent_forms_inputs(n);
    v.push(Case {
        module: "persistent_forms",
        kernel: "persistent_forms",
        grid: 3,
        block: 32,
        shared_bytes: 0,
        params: vec![
            input("a", &a),
            input("w", &w),
            output("out32", 5 * n, exact(U32)),
            output("out64", 2 * n, exact(U64)),
            Param::U32(n as u32),
        ],
    });

    // bench_loop: an integer LCG loop, few iterations (it is a speed kernel).
    v.push(Case {
        module: "bench_loop",
        kernel: "bench_loop",
        grid: 8,
        block: 128,
        shared_bytes: 0,
        params: vec![output("out", 8 * 128, exact(U32)), Param::U32(20)],
    });

    // barriers_then_share with barriers between the write and the reads (the
    // race-free form; the simulator's own test runs the racy ones).
    v.push(Case {
        module: "block_ops",
        kernel: "barriers_then_share",
        grid: 1,
        block: 64,
        shared_bytes: 0,
        params: vec![output("out", 64, exact(F32)), Param::U32(3), Param::U32(2)],
    });

    // byte_forms/prmt_forms: prmt.b32 through __byte_perm and raw, every selector
    // nibble with and without its sign bit.
    let n = 256;
    let sel = common::prmt_selectors(&u32s(n - 64, 23));
    v.push(Case {
        module: "byte_forms",
        kernel: "prmt_forms",
        grid: 2,
        block: 128,
        shared_bytes: 0,
        params: vec![
            input("a", &u32s(n, 24)),
            input("b", &u32s(n, 25)),
            input("s", &sel),
            output("out", 2 * n, exact(U32)),
            Param::U32(n as u32),
        ],
    });
    // short_forms: cvt.u16.u32, setp.eq.s16 / setp.ne.s16; every third pair
    // equal in the low half only, every third equal.
    let a = u32s(n, 26);
    let b = common::short_forms_b(&a, &u32s(n, 27));
    v.push(Case {
        module: "byte_forms",
        kernel: "short_forms",
        grid: 2,
        block: 128,
        shared_bytes: 0,
        params: vec![
            input("a", &a),
            input("b", &b),
            output("out", 3 * n, exact(U32)),
            Param::U32(n as u32),
        ],
    });

    // cluster_forms_sm90 (compute_90 PTX): the cluster special registers,
    // another block's shared memory through mapa + ld/st.shared::cluster and
    // through a generic address from mapa.u64, the cluster barrier; two
    // clusters of 4 blocks each.
    v.push(Case {
        module: "cluster_forms_sm90",
        kernel: "cluster_regs",
        grid: 8,
        block: 32,
        shared_bytes: 0,
        params: vec![output("out", 8 * 8, exact(U32))],
    });
    let x = f32s(8 * 64, 21, &F32_EDGES, -60, 60);
    v.push(Case {
        module: "cluster_forms_sm90",
        kernel: "cluster_pull",
        grid: 8,
        block: 64,
        shared_bytes: 0,
        params: vec![input("in", &x), output("out", 8 * 128, exact(F32))],
    });
    let x = f32s(8 * 32, 22, &F32_EDGES, -60, 60);
    v.push(Case {
        module: "cluster_forms_sm90",
        kernel: "cluster_gather",
        grid: 8,
        block: 32,
        shared_bytes: 0,
        params: vec![input("in", &x), output("out", 8 * 32, exact(F32))],
    });

    // grid_barrier: a spin-wait across blocks, which needs every block resident
    // at once: 6 blocks of 64 threads are co-resident on any GPU (an H200 has
    // 132 SMs; one SM holds them all). Last in the table: if it ever hung, every
    // other case would already have been compared.
    v.push(Case {
        module: "grid_barrier",
        kernel: "grid_barrier",
        grid: 6,
        block: 64,
        shared_bytes: 0,
        params: vec![
            output("vals", 6, exact(F32)),
            inout("arrived", &[0u32], exact(U32)),
            output("out", 6, exact(F32)),
        ],
    });
    v
}

// ---------------------------------------------------------------------------
// Running and comparing
// ---------------------------------------------------------------------------

/// The bytes of every checked buffer after the launch, in parameter order,
/// or what went wrong.
type Outcome = Result<Vec<Vec<u8>>, String>;

/// Runs `case` on `dev`: allocate and upload every buffer, launch module
/// `tests/MODULE`, download the checked buffers, free everything.
fn run_case<D: GpuDevice>(dev: &mut D, case: &Case) -> Outcome {
    let mut ptrs = Vec::new();
    let result = (|| -> charlstm_cuda::Result<Vec<Vec<u8>>> {
        let mut args = Vec::new();
        for p in &case.params {
            args.push(match p {
                Param::Buf { init, .. } => {
                    let ptr = dev.alloc(init.len())?;
                    ptrs.push(ptr);
                    dev.upload(ptr, init)?;
                    KernelArg::Ptr(ptr)
                }
                Param::U32(x) => KernelArg::U32(*x),
                Param::F32(x) => KernelArg::F32(*x),
            });
        }
        let module = format!("{}{}", ptx::TEST_PREFIX, case.module);
        let cfg = LaunchConfig::linear(case.grid, case.block, case.shared_bytes);
        dev.launch(&module, case.kernel, cfg, &args)?;
        dev.synchronize()?;
        let mut outs = Vec::new();
        let bufs = case.params.iter().filter_map(|p| match p {
            Param::Buf { init, check, .. } => Some((init.len(), check.is_some())),
            _ => None,
        });
        for ((len, checked), &ptr) in bufs.zip(&ptrs) {
            if checked {
                let mut out = vec![0u8; len];
                dev.download(ptr, &mut out)?;
                outs.push(out);
            }
        }
        Ok(outs)
    })();
    for ptr in ptrs {
        let _ = dev.free(ptr); // after a fault the context is gone; the error above says so
    }
    result.map_err(|e| e.to_string())
}

fn run_all<D: GpuDevice>(dev: &mut D, cases: &[Case]) -> Vec<Outcome> {
    cases.iter().map(|c| run_case(dev, c)).collect()
}

/// Agreement of one output (or one slot of it) between the two devices.
#[derive(Default)]
struct Stats {
    mismatches: usize,
    nan_payload: usize,
    /// Largest ulp (float) or integer difference between non-NaN values.
    max_diff: u128,
}

impl Stats {
    fn add(&mut self, elem: Elem, verdict: Verdict, a: u64, b: u64) {
        match verdict {
            Verdict::Mismatch => self.mismatches += 1,
            Verdict::NanPayload => self.nan_payload += 1,
            Verdict::Equal | Verdict::Within => {}
        }
        if !elem.is_nan(a) && !elem.is_nan(b) {
            self.max_diff = self.max_diff.max(ulp_distance(elem, a, b));
        }
    }
}

/// What the comparison found, printed line by line as it goes.
#[derive(Default)]
struct Report {
    failures: Vec<String>,
    kernels: usize,
    outputs: usize,
    nan_payload: usize,
}

/// Mismatching elements listed per output; the count says how many more.
const LISTED: usize = 32;

fn compare_all(cases: &[Case], a: (&str, &[Outcome]), b: (&str, &[Outcome])) -> Report {
    let mut report = Report::default();
    for (i, case) in cases.iter().enumerate() {
        report.case(case, (a.0, &a.1[i]), (b.0, &b.1[i]));
    }
    report
}

impl Report {
    /// Compares one case's outputs on the two devices, printing a line per
    /// output as it goes (a hang in a later case leaves them printed).
    fn case(&mut self, case: &Case, (la, a): (&str, &Outcome), (lb, b): (&str, &Outcome)) {
        self.kernels += 1;
        let (ra, rb) = match (a, b) {
            (Ok(ra), Ok(rb)) => (ra, rb),
            _ => {
                for (label, r) in [(la, a), (lb, b)] {
                    if let Err(e) = r {
                        println!("{} FAILED on {label}: {e}", case.kernel);
                        self.failures
                            .push(format!("{}: launch failed on {label}: {e}", case.kernel));
                    }
                }
                return;
            }
        };
        let checked = case.params.iter().filter_map(|p| match p {
            Param::Buf {
                name,
                check: Some(check),
                ..
            } => Some((*name, check)),
            _ => None,
        });
        for ((name, check), (xa, xb)) in checked.zip(ra.iter().zip(rb)) {
            self.outputs += 1;
            compare_output(self, case.kernel, name, check, (la, xa), (lb, xb));
        }
    }
}

fn compare_output(
    report: &mut Report,
    kernel: &str,
    name: &str,
    check: &Check,
    (label_a, a): (&str, &[u8]),
    (label_b, b): (&str, &[u8]),
) {
    let stride = check.slots.len();
    let size = check.slots[0].0.size();
    let count = a.len() / size;
    let word = |bytes: &[u8], i: usize| {
        let mut w = [0u8; 8];
        w[..size].copy_from_slice(&bytes[i * size..(i + 1) * size]);
        u64::from_le_bytes(w)
    };
    let mut total = Stats::default();
    let mut per_slot: Vec<Stats> = (0..stride).map(|_| Stats::default()).collect();
    let mut listed = Vec::new();
    for i in 0..count {
        let (elem, rule) = check.slots[i % stride];
        let (x, y) = (word(a, i), word(b, i));
        let verdict = judge(elem, rule, x, y);
        total.add(elem, verdict, x, y);
        per_slot[i % stride].add(elem, verdict, x, y);
        if verdict == Verdict::Mismatch && listed.len() < LISTED {
            let at = if stride > 1 {
                format!("{i} (element {}, slot {})", i / stride, i % stride)
            } else {
                i.to_string()
            };
            listed.push(format!(
                "  {kernel}.{name}[{at}] {rule}: {label_a} {} vs {label_b} {}",
                elem.show(x),
                elem.show(y)
            ));
        }
    }
    let rules: BTreeSet<String> = check.slots.iter().map(|(_, r)| r.to_string()).collect();
    let rule = if rules.len() == 1 {
        check.slots[0].1.to_string()
    } else {
        format!("per-slot[{stride}]")
    };
    let result = if total.mismatches == 0 {
        "ok".to_string()
    } else {
        format!("MISMATCH({})", total.mismatches)
    };
    let nan = if total.nan_payload > 0 {
        format!(" nan-payload={}", total.nan_payload)
    } else {
        String::new()
    };
    println!(
        "{kernel:<17} {name:<9} {count:>6} {rule:<22} {result:<13} max-ulp-diff={}{nan}",
        total.max_diff
    );
    if rules.len() > 1 {
        for (k, s) in per_slot.iter().enumerate() {
            let (elem, rule) = check.slots[k];
            if rule != Rule::Exact || s.mismatches > 0 {
                println!(
                    "    slot {k:>2} {elem:?} {rule} mismatches={} max-ulp-diff={}",
                    s.mismatches, s.max_diff
                );
            }
        }
    }
    report.nan_payload += total.nan_payload;
    if total.mismatches > 0 {
        let why = if check.why.is_empty() {
            String::new()
        } else {
            format!(" ({})", check.why)
        };
        let more = total.mismatches.saturating_sub(listed.len());
        let more = if more > 0 {
            format!("\n  ... and {more} more")
        } else {
            String::new()
        };
        report.failures.push(format!(
            "{kernel}.{name}: {} of {count} elements differ{why}:\n{}{more}",
            total.mismatches,
            listed.join("\n")
        ));
    }
}

impl Report {
    /// Prints the summary, or panics listing every failure.
    fn finish(self, what: &str) {
        if self.nan_payload > 0 {
            println!(
                "{what}: {} NaN results with different payloads tolerated (see the file header)",
                self.nan_payload
            );
        }
        assert!(
            self.failures.is_empty(),
            "{what}: {} of {} outputs / launches disagree:\n{}",
            self.failures.len(),
            self.outputs,
            self.failures.join("\n")
        );
        println!(
            "{what}: {} kernels, {} outputs, all match",
            self.kernels, self.outputs
        );
    }
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

/// The whole table on two simulators that interleave threads differently,
/// compared with the GPU check's rules: the harness itself, in CI.
#[test]
fn simulator_runs_every_case() {
    if !common::kernels() {
        return;
    }
    let cases = cases();
    let a = run_all(&mut SimDevice::new(1), &cases);
    let b = run_all(&mut SimDevice::new(2), &cases);
    compare_all(&cases, ("sim(seed 1)", &a), ("sim(seed 2)", &b)).finish("sim-vs-sim");
}

/// The GPU check: GPU 0 against the simulator.
#[test]
fn cuda_simulator_matches_hardware() {
    if !common::kernels() {
        return;
    }
    let mut gpu = match CudaDevice::new(0) {
        Ok(gpu) => gpu,
        Err(e) => {
            println!("SKIPPED: no GPU ({e})");
            return;
        }
    };
    println!("device: {}", gpu.name());
    let cases = cases();
    let sim = run_all(&mut SimDevice::new(1), &cases);
    let mut report = Report::default();
    for (case, sim) in cases.iter().zip(&sim) {
        // Cluster kernels where the GPU runs none (before Hopper, or
        // CHARLSTM_NO_CLUSTERS set after they hung): a failed line, not a launch.
        let hw = match case.module.ends_with("_sm90") && !gpu.clusters() {
            true => Err(format!(
                "not run: {} runs no thread-block clusters here",
                gpu.name()
            )),
            false => run_case(&mut gpu, case),
        };
        report.case(case, ("sim", sim), ("gpu", &hw));
    }
    report.finish("sim-vs-hardware");
}

/// `(module, kernel, extern "C")` of every `__global__` function in
/// `tests/kernels/*.cu`; `None` when the sources are not there (a test binary
/// copied to another machine).
fn kernels_in_sources() -> Option<Vec<(String, String, bool)>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kernels");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .collect();
    files.sort();
    let mut found = Vec::new();
    for f in files {
        let module = f.file_stem().and_then(|s| s.to_str()).expect("UTF-8 name");
        let src = std::fs::read_to_string(&f).expect("readable kernel source");
        for (kernel, extern_c) in global_functions(&src) {
            found.push((module.to_string(), kernel, extern_c));
        }
    }
    Some(found)
}

/// The `__global__` functions of a CUDA source, and whether each is
/// `extern "C"` (launchable by its plain name).
fn global_functions(src: &str) -> Vec<(String, bool)> {
    let code = strip_comments(src);
    code.match_indices("__global__")
        .map(|(at, _)| {
            let decl_start = code[..at].rfind([';', '}', '{']).map_or(0, |p| p + 1);
            let extern_c = code[decl_start..at].contains("extern \"C\"");
            // The name is the identifier before the first `(` that does not
            // open an attribute's arguments (`__cluster_dims__(4, 1, 1)`).
            let mut from = at;
            loop {
                let open = from + code[from..].find('(').expect("a parameter list");
                let name = code[from..open]
                    .trim_end()
                    .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .next()
                    .unwrap_or_default();
                if !matches!(name, "__launch_bounds__" | "__cluster_dims__") {
                    break (name.to_string(), extern_c);
                }
                from = open + code[open..].find(')').expect("the attribute's arguments") + 1;
            }
        })
        .collect()
}

fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("//") {
            rest = r.find('\n').map_or("", |p| &r[p..]);
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.find("*/").map_or("", |p| &r[p + 2..]);
            out.push(' ');
        } else {
            let c = rest.chars().next().expect("non-empty");
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// The `.entry` names of a PTX module.
fn ptx_entries(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split(".entry ").nth(1))
        .map(|r| {
            r.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

/// A new test kernel cannot be skipped silently: every `__global__` kernel
/// of `tests/kernels/*.cu` is in [`cases`] or in [`EXCLUDED`] with a reason,
/// and both lists name only kernels that exist.
#[test]
fn every_test_kernel_is_run_or_excluded() {
    let from_ptx = || -> BTreeSet<(String, String)> {
        ptx::TEST_MODULES
            .iter()
            .flat_map(|m| {
                ptx_entries(m.ptx)
                    .into_iter()
                    .map(|k| (m.name.to_string(), k))
            })
            .collect()
    };
    let mut problems = Vec::new();
    let kernels: BTreeSet<(String, String)> = match kernels_in_sources() {
        Some(found) => {
            for (m, k, extern_c) in &found {
                if !extern_c {
                    problems.push(format!(
                        "tests/kernels/{m}.cu: kernel {k} is not extern \"C\": it cannot be \
                         launched by name"
                    ));
                }
            }
            let kernels: BTreeSet<_> = found.into_iter().map(|(m, k, _)| (m, k)).collect();
            if ptx::BUILT_WITH_KERNELS && kernels != from_ptx() {
                problems.push(format!(
                    "the sources' kernels {kernels:?} are not the embedded PTX's entries {:?}",
                    from_ptx()
                ));
            }
            kernels
        }
        None if ptx::BUILT_WITH_KERNELS => {
            println!("tests/kernels not found: checking the embedded PTX's entries instead");
            from_ptx()
        }
        None => {
            println!("SKIPPED: neither tests/kernels nor embedded kernels to check");
            return;
        }
    };
    let run: BTreeSet<(String, String)> = cases()
        .iter()
        .map(|c| (c.module.to_string(), c.kernel.to_string()))
        .collect();
    let excluded: BTreeSet<(String, String)> = EXCLUDED
        .iter()
        .map(|(m, k, why)| {
            assert!(!why.is_empty(), "{m}/{k}: an exclusion needs a reason");
            (m.to_string(), k.to_string())
        })
        .collect();
    for (m, k) in &kernels {
        let key = (m.clone(), k.clone());
        match (run.contains(&key), excluded.contains(&key)) {
            (false, false) => problems.push(format!(
                "tests/kernels/{m}.cu: kernel {k} is neither run by tests/sim_vs_hardware.rs \
                 (add a case to cases()) nor in EXCLUDED with a reason"
            )),
            (true, true) => problems.push(format!("{m}/{k} is both run and excluded")),
            _ => {}
        }
    }
    for (m, k) in run.union(&excluded) {
        if !kernels.contains(&(m.clone(), k.clone())) {
            problems.push(format!("{m}/{k} is listed but no such test kernel exists"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    println!(
        "{} test kernels: {} run on hardware, {} excluded",
        kernels.len(),
        run.len(),
        excluded.len()
    );
}

/// The comparison rules themselves, on hand-made bit patterns.
#[test]
fn rules_judge_as_documented() {
    use Elem::*;
    let f = |x: f32| u64::from(x.to_bits());
    assert_eq!(judge(F32, Rule::Exact, f(1.0), f(1.0)), Verdict::Equal);
    assert_eq!(judge(F32, Rule::Exact, f(0.0), f(-0.0)), Verdict::Mismatch);
    assert_eq!(
        judge(F32, Rule::Exact, 0x7fff_ffff, 0x7fc0_0000),
        Verdict::NanPayload
    );
    // Poison is never a NaN payload difference, nor within any bound.
    assert_eq!(
        judge(F32, Rule::Ulps(1000), F32.poison(), 0x7fff_ffff),
        Verdict::Mismatch
    );
    let one_up = f(1.0) + 1;
    assert_eq!(judge(F32, Rule::Ulps(1), f(1.0), one_up), Verdict::Within);
    assert_eq!(judge(F32, Rule::Ulps(0), f(1.0), one_up), Verdict::Mismatch);
    // Across zero: the smallest subnormals of either sign are 2 ulps apart.
    assert_eq!(ulp_distance(F32, 1, 0x8000_0001), 2);
    assert_eq!(
        ulp_distance(F32, f(f32::MAX), f(f32::INFINITY)),
        1,
        "overflow to infinity is one step"
    );
    assert_eq!(
        judge(F32, Rule::Ulps(5), f(1.0), f(f32::NAN)),
        Verdict::Mismatch
    );
    assert_eq!(
        judge(F32, Rule::UlpsOrAbs(1, 1e-6), f(1e-3), f(1e-3 + 5e-7)),
        Verdict::Within
    );
    assert_eq!(judge(U32, Rule::Range(1, 4), 2, 4), Verdict::Within);
    assert_eq!(judge(U32, Rule::Range(1, 4), 2, 5), Verdict::Mismatch);
    assert_eq!(judge(I64, Rule::Exact, u64::MAX - 1, 3), Verdict::Mismatch);
    assert!(F16.is_nan(0x7e00) && !F16.is_nan(0x7c00) && Bf16.is_nan(0x7fc1));
    assert_eq!(I32.ordinal(0xffff_ffff), -1);
    assert_eq!(
        global_functions(
            "/* __global__ x( */ extern \"C\" __global__ void k1(int a) {}\n__global__ void k2(float* p);\n\
             extern \"C\" __global__ void __cluster_dims__(4, 1, 1) k3(int a) {}"
        ),
        vec![
            ("k1".to_string(), true),
            ("k2".to_string(), false),
            ("k3".to_string(), true)
        ]
    );
}

/// The comparison finds a one-bit difference, an element one device never
/// wrote and a failed launch, and names them.
#[test]
fn differences_are_reported() {
    if !common::kernels() {
        return;
    }
    let cases: Vec<Case> = cases()
        .into_iter()
        .filter(|c| c.kernel == "f32_exact")
        .collect();
    let sim = run_all(&mut SimDevice::new(1), &cases);
    let mut other = sim.clone();
    let out = &mut other[0].as_mut().expect("f32_exact runs")[0];
    out[4 * 3004] ^= 1; // element 3004 (a random pair's quotient): one ulp
    out[4 * 99..4 * 100].fill(0xFF); // element 99: never written
    let report = compare_all(&cases, ("a", &sim), ("b", &other));
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    let f = &report.failures[0];
    assert!(
        f.contains("2 of 5120 elements differ")
            && f.contains("f32_exact.out[3004] exact")
            && f.contains("f32_exact.out[99] exact")
            && f.contains("b 0xffffffff"),
        "{f}"
    );
    let failed = vec![Err("launch failed: boom".to_string())];
    let report = compare_all(&cases, ("a", &sim), ("b", &failed));
    assert!(report.failures[0].contains("boom"), "{:?}", report.failures);
}
