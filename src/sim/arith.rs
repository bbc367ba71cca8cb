//! Integer, predicate, f32 and f64 arithmetic (`add`..`copysign`, unary ops,
//! `setp`), with rounding, flush-to-zero and saturation modifiers.

use super::num::*;
use super::parse::{Bin, Cmp, FMod, Rnd, Ty, Un};
use super::{Launch, half};
use crate::error::Result;

impl<'k> Launch<'k> {
    pub(super) fn bin(&self, t: usize, op: Bin, ty: Ty, m: FMod, a: u64, b: u64) -> Result<u64> {
        if ty == Ty::Pred {
            return Ok(match op {
                Bin::And => a & b,
                Bin::Or => a | b,
                Bin::Xor => a ^ b,
                _ => return Err(self.fail(t, format!("{op:?} on predicates is not supported"))),
            });
        }
        if ty == Ty::F32 {
            let (x, y) = (ftz32(fl32(a), m.ftz), ftz32(fl32(b), m.ftz));
            let r = match op {
                Bin::Add | Bin::Sub | Bin::MulLo if m.rnd != Rnd::Rn => {
                    let y = if op == Bin::Sub { -y } else { y };
                    if op == Bin::MulLo {
                        round_f32(x as f64 * y as f64, 0.0, m.rnd)
                    } else {
                        let (hi, lo) = two_sum(x as f64, y as f64);
                        round_f32(hi, lo, m.rnd)
                    }
                }
                _ => float_bin(op, x, y)
                    .ok_or_else(|| self.fail(t, format!("{op:?} on f32 is not supported")))?,
            };
            let r = ftz32(r, m.ftz);
            return Ok(b32(if m.sat { sat(r) } else { r }));
        }
        if ty == Ty::F64 {
            let (x, y) = (fl64(a), fl64(b));
            if m.rnd != Rnd::Rn && matches!(op, Bin::Add | Bin::Sub | Bin::MulLo | Bin::Div) {
                return Err(self.fail(
                    t,
                    "f64 arithmetic with a rounding mode other than .rn is not supported".into(),
                ));
            }
            let r = float_bin(op, x, y)
                .ok_or_else(|| self.fail(t, format!("{op:?} on f64 is not supported")))?;
            return Ok(r.to_bits());
        }
        if ty.is_float() {
            return half::bin(op, ty, m, a, b)
                .ok_or_else(|| self.fail(t, format!("{op:?} on {ty:?} is not supported")));
        }
        let bits = ty.bytes() * 8;
        let s = ty.signed();
        let v = match op {
            Bin::Add => a.wrapping_add(b),
            Bin::Sub => a.wrapping_sub(b),
            Bin::MulLo => a.wrapping_mul(b),
            Bin::MulHi | Bin::MulWide => {
                let p: i128 = if s {
                    sext(ty, a) as i128 * sext(ty, b) as i128
                } else {
                    mask(ty, a) as i128 * mask(ty, b) as i128
                };
                if op == Bin::MulWide {
                    return Ok(if bits == 64 {
                        p as u64
                    } else {
                        p as u64 & (u64::MAX >> (64 - 2 * bits).min(63))
                    });
                }
                (p >> bits) as u64
            }
            Bin::Div | Bin::Rem => {
                if mask(ty, b) == 0 {
                    if op == Bin::Div { u64::MAX } else { a }
                } else if s {
                    let (x, y) = (sext(ty, a), sext(ty, b));
                    (if op == Bin::Div {
                        x.wrapping_div(y)
                    } else {
                        x.wrapping_rem(y)
                    }) as u64
                } else {
                    let (x, y) = (mask(ty, a), mask(ty, b));
                    if op == Bin::Div { x / y } else { x % y }
                }
            }
            Bin::And => a & b,
            Bin::Or => a | b,
            Bin::Xor => a ^ b,
            Bin::Shl => {
                let n = b as u32;
                if n >= bits { 0 } else { a << n }
            }
            Bin::Shr => {
                let n = (b as u32).min(bits);
                if s {
                    (sext(ty, a) >> n.min(63)) as u64
                } else if n >= bits {
                    0
                } else {
                    mask(ty, a) >> n
                }
            }
            Bin::Min if s => sext(ty, a).min(sext(ty, b)) as u64,
            Bin::Max if s => sext(ty, a).max(sext(ty, b)) as u64,
            Bin::Min => mask(ty, a).min(mask(ty, b)),
            Bin::Max => mask(ty, a).max(mask(ty, b)),
            Bin::Copysign => return Err(self.fail(t, "copysign on an integer type".into())),
        };
        Ok(mask(ty, v))
    }

    pub(super) fn un(&self, t: usize, op: Un, ty: Ty, m: FMod, a: u64) -> Result<u64> {
        if ty == Ty::Pred {
            return match op {
                Un::Not => Ok((a == 0) as u64),
                _ => Err(self.fail(t, format!("{op:?} on predicates is not supported"))),
            };
        }
        if ty == Ty::F32 {
            let x = ftz32(fl32(a), m.ftz);
            let r = match op {
                // A NaN comes back unchanged, sign included: PTX leaves the
                // NaN unspecified, and an H200 returned the input's bits.
                Un::Neg if x.is_nan() => x,
                Un::Neg => -x,
                Un::Abs => x.abs(),
                Un::Sqrt | Un::SqrtApprox => x.sqrt(),
                Un::Rsqrt => 1.0 / x.sqrt(),
                Un::Rcp | Un::RcpApprox => 1.0 / x,
                Un::Ex2 => x.exp2(),
                Un::Lg2 => x.log2(),
                Un::Tanh => x.tanh(),
                Un::Sin => x.sin(),
                Un::Cos => x.cos(),
                _ => return Err(self.fail(t, format!("{op:?} on f32 is not supported"))),
            };
            if matches!(op, Un::Sqrt | Un::Rcp) && m.rnd != Rnd::Rn {
                return Err(self.fail(
                    t,
                    "sqrt/rcp with a rounding mode other than .rn is not supported".into(),
                ));
            }
            let r = ftz32(r, m.ftz);
            return Ok(b32(if m.sat { sat(r) } else { r }));
        }
        if ty == Ty::F64 {
            let x = fl64(a);
            let r = match op {
                Un::Neg if x.is_nan() => x, // as for f32, above
                Un::Neg => -x,
                Un::Abs => x.abs(),
                Un::Sqrt if m.rnd == Rnd::Rn => x.sqrt(),
                Un::Rcp if m.rnd == Rnd::Rn => 1.0 / x,
                Un::RcpApprox => 1.0 / x,
                Un::Rsqrt => 1.0 / x.sqrt(),
                _ => {
                    return Err(self.fail(
                        t,
                        format!("{op:?} (rounding {:?}) on f64 is not supported", m.rnd),
                    ));
                }
            };
            return Ok(r.to_bits());
        }
        if ty.is_float() {
            return half::un(op, ty, m, a)
                .ok_or_else(|| self.fail(t, format!("{op:?} on {ty:?} is not supported")));
        }
        let bits = ty.bytes() * 8;
        let v = match op {
            Un::Not => !a,
            Un::Neg => a.wrapping_neg(),
            Un::Abs => sext(ty, a).wrapping_abs() as u64,
            Un::Popc => mask(ty, a).count_ones() as u64,
            Un::Clz => (mask(ty, a).leading_zeros() - (64 - bits)) as u64,
            Un::Brev => mask(ty, a).reverse_bits() >> (64 - bits),
            _ => return Err(self.fail(t, format!("{op:?} on {ty:?} is not supported"))),
        };
        Ok(mask(ty, v))
    }
}

pub(super) fn setp(cmp: Cmp, ty: Ty, ftz: bool, a: u64, b: u64) -> bool {
    if ty.is_float() {
        let (x, y) = match ty {
            Ty::F32 => (ftz32(fl32(a), ftz) as f64, ftz32(fl32(b), ftz) as f64),
            Ty::F16 | Ty::Bf16 => (
                half::operand(ty, a, ftz).unwrap_or(f64::NAN),
                half::operand(ty, b, ftz).unwrap_or(f64::NAN),
            ),
            _ => (fl64(a), fl64(b)),
        };
        let nan = x.is_nan() || y.is_nan();
        return match cmp {
            Cmp::Eq => !nan && x == y,
            Cmp::Ne => !nan && x != y,
            Cmp::Lt => !nan && x < y,
            Cmp::Le => !nan && x <= y,
            Cmp::Gt => !nan && x > y,
            Cmp::Ge => !nan && x >= y,
            Cmp::Equ => nan || x == y,
            Cmp::Neu => nan || x != y,
            Cmp::Ltu => nan || x < y,
            Cmp::Leu => nan || x <= y,
            Cmp::Gtu => nan || x > y,
            Cmp::Geu => nan || x >= y,
            Cmp::Num => !nan,
            Cmp::Nan => nan,
            _ => false,
        };
    }
    let (ua, ub) = (mask(ty, a), mask(ty, b));
    let (sa, sb) = (sext(ty, a), sext(ty, b));
    let signed = ty.signed();
    match cmp {
        Cmp::Eq => ua == ub,
        Cmp::Ne => ua != ub,
        Cmp::Lt if signed => sa < sb,
        Cmp::Le if signed => sa <= sb,
        Cmp::Gt if signed => sa > sb,
        Cmp::Ge if signed => sa >= sb,
        Cmp::Lt | Cmp::Lo => ua < ub,
        Cmp::Le | Cmp::Ls => ua <= ub,
        Cmp::Gt | Cmp::Hi => ua > ub,
        Cmp::Ge | Cmp::Hs => ua >= ub,
        _ => false,
    }
}
