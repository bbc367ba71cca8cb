//! f32 activations, written so that the compiler vectorises loops calling them.
//!
//! Why: the LSTM cell evaluates 5H transcendental functions per row and time
//! step (3.9 M sigmoids and 1.9 M tanh per batch of 128 x 60 at H = 128). The
//! libm calls behind `f32::exp` / `f32::tanh` are scalar and cost about as
//! much as all the matrix products together; these branch-free versions
//! (Cephes `expf` / `tanhf` polynomials, ~2 ulp) vectorise on plain SSE2.
//! f64 keeps the libm functions: it is the gradient-check reference.
//!
//! Both are branch-free (selects, no jumps), so a loop over a slice turns
//! into SIMD code, and an element's result does not depend on its neighbours.
//!
//! The polynomials are Horner chains of `mul_add`: one rounding a term, and
//! half the instructions where the CPU has FMA (a quarter of the sigmoid's
//! time in a 16-wide loop). Every caller runs inside `simd_dispatch!`, whose
//! AVX-512 and AVX2 builds have FMA; a build without it calls libm's `fmaf`,
//! which is slower but rounds the same, so every build gives the same bits.

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in a high part exact in few bits and a low correction (Cephes).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Adding then subtracting 1.5 * 2^23 rounds an f32 of magnitude < 2^22 to
/// the nearest integer in the current (nearest-even) mode, without SSE4.1.
const ROUND_MAGIC: f32 = 12_582_912.0;
/// Clamp so that `n` stays in [-126, 127] and 2^n is a normal f32.
const EXP_MIN: f32 = -87.0;
const EXP_MAX: f32 = 88.0;

/// `exp(x)` for x in [EXP_MIN, EXP_MAX] (clamped outside), relative error ~2 ulp.
#[inline(always)]
fn exp_clamped(x: f32) -> f32 {
    let x = x.clamp(EXP_MIN, EXP_MAX);
    let shifted = x.mul_add(LOG2E, ROUND_MAGIC);
    let n = shifted - ROUND_MAGIC;
    // The integer n sits in the low mantissa bits of `shifted`.
    let n_int = shifted.to_bits() as i32 - ROUND_MAGIC.to_bits() as i32;
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    let r2 = r * r;
    let p = 1.987_569_1e-4_f32;
    let p = p.mul_add(r, 1.398_199_9e-3);
    let p = p.mul_add(r, 8.333_452e-3);
    let p = p.mul_add(r, 4.166_579_6e-2);
    let p = p.mul_add(r, 1.666_666_5e-1);
    let p = p.mul_add(r, 5e-1);
    let e = p.mul_add(r2, r) + 1.0;
    let scale = f32::from_bits(((n_int + 127) as u32) << 23);
    e * scale
}

/// `exp(x)`, clamped to [e^-87, e^88] (the softmax's `exp(l - max)`).
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    exp_clamped(x)
}

/// `1 / (1 + exp(-x))`.
#[inline(always)]
pub(crate) fn sigmoid_f32(x: f32) -> f32 {
    1.0 / (1.0 + exp_clamped(-x))
}

/// `tanh(x)`: an odd polynomial below |x| = 0.625, else
/// `1 - 2 / (exp(2|x|) + 1)` (Cephes `tanhf`), both evaluated, one selected.
#[inline(always)]
pub(crate) fn tanh_f32(v: f32) -> f32 {
    let a = v.abs();
    let z = v * v;
    let p = -5.704_988_7e-3_f32;
    let p = p.mul_add(z, 2.063_909e-2);
    let p = p.mul_add(z, -5.373_971_6e-2);
    let p = p.mul_add(z, 1.333_144_2e-1);
    let p = p.mul_add(z, -3.333_328e-1);
    let small = (p * z).mul_add(v, v);
    let big = 1.0 - 2.0 / (exp_clamped(a + a) + 1.0);
    let big = if v < 0.0 { -big } else { big };
    if a < 0.625 { small } else { big }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Error in units of f32 spacing at the exact value.
    fn ulps(got: f32, exact: f64) -> f64 {
        let spacing = f64::from(f32::EPSILON) * exact.abs().max(f64::from(f32::MIN_POSITIVE));
        (f64::from(got) - exact).abs() / spacing
    }

    #[test]
    fn activations_match_libm_to_a_few_ulp() {
        let xs: Vec<f32> = (-20_000..=20_000).map(|i| i as f32 * 1e-3).collect();
        let s: Vec<f32> = xs.iter().map(|&x| sigmoid_f32(x)).collect();
        let t: Vec<f32> = xs.iter().map(|&x| tanh_f32(x)).collect();
        let (mut worst_s, mut worst_t) = (0.0f64, 0.0f64);
        for ((&x, &sv), &tv) in xs.iter().zip(&s).zip(&t) {
            let x = f64::from(x);
            worst_s = worst_s.max(ulps(sv, 1.0 / (1.0 + (-x).exp())));
            worst_t = worst_t.max(ulps(tv, x.tanh()));
        }
        // Down to -86 (the clamp at -87 is the one intended difference).
        let worst_e = (0..=86_000)
            .map(|i| -(i as f32) * 1e-3)
            .map(|x| ulps(exp_f32(x), f64::from(x).exp()))
            .fold(0.0f64, f64::max);
        assert!(worst_e <= 4.0, "exp off by {worst_e} ulp");
        assert!(worst_s <= 4.0, "sigmoid off by {worst_s} ulp");
        assert!(worst_t <= 4.0, "tanh off by {worst_t} ulp");
    }

    #[test]
    fn saturates_without_nan() {
        let xs = [-1e30, -100.0, 100.0, 1e30, f32::INFINITY, f32::NEG_INFINITY];
        let s = xs.map(sigmoid_f32);
        let t = xs.map(tanh_f32);
        assert_eq!(&s[2..5], &[1.0, 1.0, 1.0]);
        assert!(s[0] >= 0.0 && s[0] < 1e-37 && s[5] < 1e-37);
        assert_eq!(t, [-1.0, -1.0, 1.0, 1.0, 1.0, -1.0]);
    }
}
