//! `cvt` between integer, f16, bf16, f32 and f64 types.

use super::Launch;
use super::num::*;
use super::parse::{Rnd, Ty};
use crate::error::Result;

impl<'k> Launch<'k> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn cvt(
        &self,
        t: usize,
        dty: Ty,
        sty: Ty,
        irnd: Option<Rnd>,
        rnd: Option<Rnd>,
        ftz: bool,
        s: bool,
        a: u64,
    ) -> Result<u64> {
        use half::{bf16, f16};
        let as_f64 = |ty: Ty, v: u64| -> Option<f64> {
            Some(match ty {
                Ty::F16 => f16::from_bits(v as u16).to_f64(),
                Ty::Bf16 => bf16::from_bits(v as u16).to_f64(),
                Ty::F32 => ftz32(fl32(v), ftz) as f64,
                Ty::F64 => fl64(v),
                _ => return None,
            })
        };
        if let Some(x) = as_f64(sty, a) {
            if dty.is_float() {
                let x = match irnd {
                    Some(r) => round_int(x, r),
                    None => x,
                };
                if rnd.is_some_and(|r| r != Rnd::Rn) {
                    return Err(self.fail(
                        t,
                        "float-to-float cvt with a rounding mode other than .rn is not supported"
                            .into(),
                    ));
                }
                let x = if s {
                    x.clamp(0.0, 1.0) * if x.is_nan() { 0.0 } else { 1.0 }
                } else {
                    x
                };
                return Ok(match dty {
                    Ty::F16 => f16::from_f64(if sty == Ty::F32 { x as f32 as f64 } else { x })
                        .to_bits() as u64,
                    Ty::Bf16 => {
                        // From f32 (exact in f64) this rounds once, to nearest even.
                        bf16::from_f32(x as f32).to_bits() as u64
                    }
                    Ty::F32 => b32(ftz32(x as f32, ftz)),
                    _ => x.to_bits(),
                });
            }
            // float -> int: round (default .rni is not implied: PTX requires a mode), saturate, NaN -> 0.
            let r = round_int(x, irnd.unwrap_or(Rnd::Rz));
            let bits = dty.bytes() * 8;
            let v = if r.is_nan() {
                0
            } else if dty.signed() {
                let lo = -(2f64.powi(bits as i32 - 1));
                let hi = 2f64.powi(bits as i32 - 1) - 1.0;
                r.clamp(lo, hi) as i64 as u64
            } else {
                r.clamp(0.0, 2f64.powi(bits as i32) - 1.0) as u64
            };
            return Ok(mask(dty, v));
        }
        // integer source
        let iv: i128 = if sty.signed() {
            sext(sty, a) as i128
        } else {
            mask(sty, a) as i128
        };
        if dty.is_float() {
            if rnd.is_some_and(|r| r != Rnd::Rn) {
                return Err(self.fail(
                    t,
                    "int-to-float cvt with a rounding mode other than .rn is not supported".into(),
                ));
            }
            return Ok(match dty {
                Ty::F32 => b32(iv as f32),
                Ty::F64 => (iv as f64).to_bits(),
                Ty::F16 => f16::from_f32(iv as f32).to_bits() as u64,
                _ => bf16::from_f32(iv as f32).to_bits() as u64,
            });
        }
        if s {
            let bits = dty.bytes() * 8;
            let (lo, hi) = if dty.signed() {
                (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
            } else {
                (0, (1i128 << bits) - 1)
            };
            return Ok(mask(dty, iv.clamp(lo, hi) as u64));
        }
        Ok(mask(dty, iv as u64))
    }
}
