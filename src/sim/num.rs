//! Bit-level helpers shared by the execution units: register <-> float
//! views, integer widths, flush-to-zero, saturation and directed rounding.

use super::parse::{Bin, FMod, Rnd, Ty};

pub(super) fn fl32(x: u64) -> f32 {
    f32::from_bits(x as u32)
}
pub(super) fn fl64(x: u64) -> f64 {
    f64::from_bits(x)
}
pub(super) fn b32(x: f32) -> u64 {
    x.to_bits() as u64
}
pub(super) fn ftz32(x: f32, on: bool) -> f32 {
    if on && x.is_subnormal() {
        0.0f32.copysign(x)
    } else {
        x
    }
}
/// PTX `min`/`max` on f32 and f64 (PTX ISA, min/max): a NaN operand yields
/// the other operand (NaN only when both are); `-0.0` counts as less than
/// `+0.0`. Rust's `f32::min` treats the two zeros as equal and may return
/// either, which the H200 does not.
/// `op` on two floats, rounded to nearest; `None` for an op floats lack.
pub(super) fn float_bin<F: num_traits::Float>(op: Bin, x: F, y: F) -> Option<F> {
    Some(match op {
        Bin::Add => x + y,
        Bin::Sub => x - y,
        Bin::MulLo => x * y,
        Bin::Div => x / y,
        Bin::Min | Bin::Max => min_max_float(x, y, op == Bin::Max),
        Bin::Copysign => y.copysign(x),
        _ => return None,
    })
}

pub(super) fn min_max_float<F: num_traits::Float>(x: F, y: F, max: bool) -> F {
    if x.is_nan() {
        return y;
    }
    if y.is_nan() {
        return x;
    }
    if x == y && x.is_zero() {
        // +0 and -0 (or equal zeros): the sign decides.
        let x_neg = x.is_sign_negative();
        return if x_neg != max { x } else { y };
    }
    if (x < y) != max { x } else { y }
}
#[inline(always)]
pub(super) fn mask(ty: Ty, v: u64) -> u64 {
    match ty.bytes() {
        1 => v & 0xff,
        2 => v & 0xffff,
        4 => v & 0xffff_ffff,
        _ => v,
    }
}
pub(super) fn sext(ty: Ty, v: u64) -> i64 {
    match ty.bytes() {
        1 => v as u8 as i8 as i64,
        2 => v as u16 as i16 as i64,
        4 => v as u32 as i32 as i64,
        _ => v as i64,
    }
}
/// Rounds the exact value `hi + lo` (|lo| tiny) to f32 in direction `r`.
pub(super) fn round_f32(hi: f64, lo: f64, r: Rnd) -> f32 {
    let n = hi as f32;
    if r == Rnd::Rn || !n.is_finite() {
        return n;
    }
    let diff = (n as f64 - hi) - lo; // n - exact
    let up = |x: f32| {
        if x == 0.0 {
            f32::from_bits(1)
        } else if x > 0.0 {
            f32::from_bits(x.to_bits() + 1)
        } else {
            f32::from_bits(x.to_bits() - 1)
        }
    };
    let down = |x: f32| -up(-x);
    match r {
        Rnd::Rm if diff > 0.0 => down(n),
        Rnd::Rp if diff < 0.0 => up(n),
        Rnd::Rz if diff > 0.0 && n > 0.0 => down(n),
        Rnd::Rz if diff < 0.0 && n < 0.0 => up(n),
        _ => n,
    }
}
pub(super) fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    (s, (a - (s - bb)) + (b - bb))
}
pub(super) fn round_int(x: f64, r: Rnd) -> f64 {
    match r {
        Rnd::Rn => x.round_ties_even(),
        Rnd::Rz => x.trunc(),
        Rnd::Rm => x.floor(),
        Rnd::Rp => x.ceil(),
    }
}

pub(super) const FMOD0: FMod = FMod {
    rnd: Rnd::Rn,
    ftz: false,
    sat: false,
    relu: false,
};

/// `.sat`: clamps to [+0, 1]; NaN and -0 become +0 (PTX ISA; -0 -> +0 as
/// an H200 does for the half forms, which share the rule).
pub(super) fn sat(x: f32) -> f32 {
    if x > 0.0 { x.min(1.0) } else { 0.0 }
}
