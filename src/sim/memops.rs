//! Loads, stores (scalar and vector) and atomics/reductions: alignment
//! checks, then one checked [`Launch::mem`] access per element.

use super::num::*;
use super::parse::{Addr, AtomOp, Op, Space, Src, Ty};
use super::{Acc, Launch, Simulator};
use crate::error::Result;

impl<'k> Launch<'k> {
    /// Thread `t`'s address `addr`, refused unless `align`-byte aligned (the
    /// error names the access `kind`, then `detail()`).
    fn address(
        &self,
        t: usize,
        addr: &Addr,
        align: u32,
        kind: &str,
        detail: impl Fn() -> String,
    ) -> Result<u64> {
        let base = addr
            .base
            .map(|r| self.rd(t, Src::R(r)))
            .unwrap_or(0)
            .wrapping_add(addr.offset as u64);
        if !base.is_multiple_of(u64::from(align)) {
            let what = format!(
                "misaligned {align}-byte {kind} at address {base:#x}{}",
                detail()
            );
            return Err(self.fail(t, what));
        }
        Ok(base)
    }

    /// The addresses of the `n` consecutive `ty` elements of a (vector)
    /// access at `addr`, aligned as one access of them all.
    fn elements(
        &self,
        t: usize,
        addr: &Addr,
        ty: Ty,
        n: usize,
        kind: &str,
        space: Space,
    ) -> Result<impl Iterator<Item = u64> + use<>> {
        let w = ty.bytes();
        let base = self.address(t, addr, w * n as u32, kind, || format!(" ({space:?})"))?;
        Ok((0..n as u32).map(move |i| base + u64::from(i * w)))
    }

    pub(super) fn ld(&mut self, sim: &mut Simulator, t: usize, op: &Op) -> Result<()> {
        let Op::Ld { space, ty, d, addr } = op else {
            unreachable!("ld on {op:?}")
        };
        let at = self.elements(t, addr, *ty, d.len(), "load", *space)?;
        for (r, a) in d.iter().zip(at) {
            let v = self.mem(sim, t, *space, a, ty.bytes(), Acc::Read, 0)?;
            let v = if ty.signed() { sext(*ty, v) as u64 } else { v };
            self.wr(t, *r, v);
        }
        Ok(())
    }

    pub(super) fn st(&mut self, sim: &mut Simulator, t: usize, op: &Op) -> Result<()> {
        let Op::St { space, ty, s, addr } = op else {
            unreachable!("st on {op:?}")
        };
        let at = self.elements(t, addr, *ty, s.len(), "store", *space)?;
        for (v, a) in s.iter().zip(at) {
            let v = mask(*ty, self.rd(t, *v));
            self.mem(sim, t, *space, a, ty.bytes(), Acc::Write, v)?;
        }
        Ok(())
    }

    pub(super) fn atom(&mut self, sim: &mut Simulator, t: usize, op: &Op) -> Result<()> {
        let Op::Atom {
            space,
            op,
            ty,
            d,
            addr,
            b,
            c,
        } = op
        else {
            unreachable!("atom on {op:?}")
        };
        let w = ty.bytes();
        let base = self.address(t, addr, w, "atomic", String::new)?;
        let old = self.mem(sim, t, *space, base, w, Acc::AtomicLoad, 0)?;
        let (b, c) = (self.rd(t, *b), self.rd(t, *c));
        let new = match (op, ty) {
            (AtomOp::Add, Ty::F32) => b32(fl32(old) + fl32(b)),
            (AtomOp::Add, Ty::F64) => (fl64(old) + fl64(b)).to_bits(),
            (AtomOp::Add, _) => old.wrapping_add(b),
            (AtomOp::Min | AtomOp::Max, Ty::F32 | Ty::F64) => {
                return Err(self.fail(t, "atomic float min/max is not supported".into()));
            }
            (AtomOp::Min, _) if ty.signed() => sext(*ty, old).min(sext(*ty, b)) as u64,
            (AtomOp::Max, _) if ty.signed() => sext(*ty, old).max(sext(*ty, b)) as u64,
            (AtomOp::Min, _) => old.min(mask(*ty, b)),
            (AtomOp::Max, _) => old.max(mask(*ty, b)),
            (AtomOp::Exch, _) => b,
            (AtomOp::Cas, _) => {
                if old == mask(*ty, b) {
                    c
                } else {
                    old
                }
            }
            (AtomOp::And, _) => old & b,
            (AtomOp::Or, _) => old | b,
            (AtomOp::Xor, _) => old ^ b,
            (AtomOp::Inc, _) => {
                if old >= mask(*ty, b) {
                    0
                } else {
                    old + 1
                }
            }
            (AtomOp::Dec, _) => {
                if old == 0 || old > mask(*ty, b) {
                    mask(*ty, b)
                } else {
                    old - 1
                }
            }
        };
        self.mem(sim, t, *space, base, w, Acc::Atomic, mask(*ty, new))?;
        if let Some(d) = d {
            self.wr(t, *d, old);
        }
        Ok(())
    }
}
