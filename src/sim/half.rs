//! f16 and bf16 arithmetic, scalar and packed (`.f16x2`/`.bf16x2`, element 0
//! in the low 16 bits): `add`, `sub`, `mul`, `fma`, `neg`, `abs`, `min`,
//! `max` and the `setp` operand view, with `.rn` (the only rounding PTX has
//! for them), `.ftz` (subnormal inputs and results flushed to signed zero),
//! `.sat` and `.relu`. Every result is the exact value rounded once to nearest
//! even (the `half` crate's conversions from f64, fed a round-to-odd f64 when
//! the exact value needs more than 53 bits); NaN results are the canonical
//! NaN 0x7fff. `min`/`max` return the non-NaN operand when only one is NaN
//! and order -0 below +0.

use half::{bf16, f16};

use super::num::two_sum;
use super::parse::{Bin, FMod, Rnd, Ty, Un};

#[derive(Clone, Copy, PartialEq, Eq)]
enum H {
    F16,
    Bf16,
}

const CANONICAL_NAN: u16 = 0x7fff;

/// The element kind and lane count of a half type; None for other types.
fn kind(ty: Ty) -> Option<(H, u32)> {
    Some(match ty {
        Ty::F16 => (H::F16, 1),
        Ty::Bf16 => (H::Bf16, 1),
        Ty::F16x2 => (H::F16, 2),
        Ty::Bf16x2 => (H::Bf16, 2),
        _ => return None,
    })
}

fn to_f64(h: H, x: u16) -> f64 {
    match h {
        H::F16 => f16::from_bits(x).to_f64(),
        H::Bf16 => bf16::from_bits(x).to_f64(),
    }
}

fn from_f64(h: H, x: f64) -> u16 {
    if x.is_nan() {
        return CANONICAL_NAN;
    }
    // The `half` crate converts from the upper 32 bits of the f64 alone, so
    // a tie there with bits set below counts as a tie and rounds to even,
    // one ulp off (an H200 showed it on fma.rn.bf16). Folding the lower 32
    // bits into the lowest upper bit (round to odd at 20 fraction bits)
    // keeps the one rounding to f16 (10 bits) or bf16 (7) exact.
    let x = if x.is_finite() {
        let b = x.to_bits();
        f64::from_bits(if b & 0xffff_ffff != 0 {
            (b & !0xffff_ffff) | (1 << 32)
        } else {
            b
        })
    } else {
        x
    };
    match h {
        H::F16 => f16::from_f64(x).to_bits(),
        H::Bf16 => bf16::from_f64(x).to_bits(),
    }
}

fn ftz(h: H, x: u16, on: bool) -> u16 {
    let (exp, man) = match h {
        H::F16 => (0x7c00, 0x03ff),
        H::Bf16 => (0x7f80, 0x007f),
    };
    if on && x & exp == 0 && x & man != 0 {
        x & 0x8000
    } else {
        x
    }
}

/// Rounds the exact value `hi + lo` (`lo` the rounding error of `hi`) once:
/// to odd in f64, then to nearest even in the half format.
fn round_sum(h: H, hi: f64, lo: f64) -> u16 {
    let odd = if lo != 0.0 && hi.is_finite() && hi.to_bits() & 1 == 0 {
        let away = (lo > 0.0) == (hi > 0.0);
        f64::from_bits(if away {
            hi.to_bits() + 1
        } else {
            hi.to_bits() - 1
        })
    } else {
        hi
    };
    from_f64(h, odd)
}

/// `.ftz`, `.sat`, `.relu` on a result.
fn finish(h: H, r: u16, m: FMod) -> u16 {
    let r = ftz(h, r, m.ftz);
    let v = to_f64(h, r);
    if m.sat {
        if v.is_nan() {
            return 0;
        }
        // -0 too: an H200 returns +0 for mul.rn.sat.f16 of a negative zero.
        if v <= 0.0 {
            return 0;
        }
        if v > 1.0 {
            return from_f64(h, 1.0);
        }
    }
    // -0 too: an H200 returns +0 for fma.rn.relu.{f16,bf16} of a negative zero.
    if m.relu && v <= 0.0 {
        return 0;
    }
    r
}

/// Applies `f` to each lane of packed operands.
fn lanes(ty: Ty, args: [u64; 3], f: impl Fn(H, [u16; 3]) -> Option<u16>) -> Option<u64> {
    let (h, n) = kind(ty)?;
    let mut out = 0u64;
    for l in 0..n {
        let s = 16 * l;
        let e = args.map(|a| (a >> s) as u16);
        out |= (f(h, e)? as u64) << s;
    }
    Some(out)
}

fn min_max(h: H, max: bool, x: u16, y: u16) -> u16 {
    let (fx, fy) = (to_f64(h, x), to_f64(h, y));
    match (fx.is_nan(), fy.is_nan()) {
        (true, true) => CANONICAL_NAN,
        (true, false) => y,
        (false, true) => x,
        _ if fx == fy => {
            // Equal values differ at most in the sign of zero: -0 < +0.
            if (x & 0x8000 != 0) == max { y } else { x }
        }
        _ if (fx < fy) != max => x,
        _ => y,
    }
}

/// A binary op on a half type; None when `op`/`ty`/modifiers are not a half form this implements.
pub(super) fn bin(op: Bin, ty: Ty, m: FMod, a: u64, b: u64) -> Option<u64> {
    if m.rnd != Rnd::Rn {
        return None;
    }
    lanes(ty, [a, b, 0], |h, [x, y, _]| {
        let (x, y) = (ftz(h, x, m.ftz), ftz(h, y, m.ftz));
        let (fx, fy) = (to_f64(h, x), to_f64(h, y));
        let r = match op {
            Bin::Add | Bin::Sub => {
                let fy = if op == Bin::Sub { -fy } else { fy };
                let (hi, lo) = two_sum(fx, fy);
                round_sum(h, hi, lo)
            }
            // Products of two halves are exact in f64.
            Bin::MulLo => from_f64(h, fx * fy),
            Bin::Min | Bin::Max => min_max(h, op == Bin::Max, x, y),
            _ => return None,
        };
        Some(finish(h, r, m))
    })
}

/// `fma.rn` on a half type.
pub(super) fn fma(ty: Ty, m: FMod, a: u64, b: u64, c: u64) -> Option<u64> {
    if m.rnd != Rnd::Rn {
        return None;
    }
    lanes(ty, [a, b, c], |h, e| {
        let [x, y, z] = e.map(|v| to_f64(h, ftz(h, v, m.ftz)));
        let (hi, lo) = two_sum(x * y, z);
        Some(finish(h, round_sum(h, hi, lo), m))
    })
}

/// `neg`/`abs` on a half type (sign-bit operations, after `.ftz`).
pub(super) fn un(op: Un, ty: Ty, m: FMod, a: u64) -> Option<u64> {
    lanes(ty, [a, 0, 0], |h, [x, _, _]| {
        let x = ftz(h, x, m.ftz);
        match op {
            Un::Neg => Some(x ^ 0x8000),
            Un::Abs => Some(x & 0x7fff),
            _ => None,
        }
    })
}

/// A scalar half operand as f64 for `setp` (after `.ftz`).
pub(super) fn operand(ty: Ty, x: u64, ftz_on: bool) -> Option<f64> {
    match kind(ty)? {
        (h, 1) => Some(to_f64(h, ftz(h, x as u16, ftz_on))),
        _ => None,
    }
}
