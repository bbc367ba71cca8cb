//! Instruction dispatch: one [`Launch::step`] executes the instruction at a
//! thread's program counter (moves, arithmetic, bit fields, control flow,
//! barriers) and hands memory, warp and numeric work to the other units.

use super::arith::setp;
use super::num::*;
use super::parse::{Bin, Inst, Op, Rnd, Space, Ty};
use super::{LOCAL_WIN, Launch, SHARED_WIN, Simulator, TState, half};
use crate::error::Result;

impl<'k> Launch<'k> {
    /// Executes one instruction of thread `t`; returns true when it released waiting threads.
    pub(super) fn step(&mut self, sim: &mut Simulator, t: usize) -> Result<bool> {
        let k = self.k;
        let pc = self.pc[t] as usize;
        let inst: &Inst = &k.insts[pc];
        if let Some((p, neg)) = inst.pred
            && (self.regs[t * self.nregs + p as usize] != 0) == neg
        {
            self.pc[t] += 1;
            return Ok(false);
        }
        let mut next = pc as u32 + 1;
        match &inst.op {
            Op::Mov { d, a } => {
                let v = self.rd(t, *a);
                self.wr(t, *d, v);
            }
            Op::Pack {
                d,
                parts,
                part_bits,
            } => {
                let mut v = 0u64;
                for (i, p) in parts.iter().enumerate() {
                    v |= (self.rd(t, *p) & ((1u64 << part_bits) - 1)) << (i as u32 * part_bits);
                }
                self.wr(t, *d, v);
            }
            Op::Unpack { ds, a, part_bits } => {
                let v = self.rd(t, *a);
                for (i, d) in ds.iter().enumerate() {
                    self.wr(
                        t,
                        *d,
                        (v >> (i as u32 * part_bits)) & ((1u64 << part_bits) - 1),
                    );
                }
            }
            Op::Bin { op, ty, m, d, a, b } => {
                let (a, b) = (self.rd(t, *a), self.rd(t, *b));
                // Fast path for the common 32/64-bit integer ops.
                let w = ty.bytes();
                let fast = match (w, ty.is_float() || *ty == Ty::Pred, op) {
                    (4 | 8, false, Bin::Add) => Some(a.wrapping_add(b)),
                    (4 | 8, false, Bin::Sub) => Some(a.wrapping_sub(b)),
                    (4 | 8, false, Bin::MulLo) => Some(a.wrapping_mul(b)),
                    (4 | 8, false, Bin::And) => Some(a & b),
                    (4 | 8, false, Bin::Or) => Some(a | b),
                    (4 | 8, false, Bin::Xor) => Some(a ^ b),
                    (4 | 8, false, Bin::Shl) if (b as u32) < w * 8 => Some(a << b as u32),
                    (4 | 8, false, Bin::Shr) if !ty.signed() && (b as u32) < w * 8 => {
                        Some(mask(*ty, a) >> b as u32)
                    }
                    _ => None,
                };
                let v = match fast {
                    Some(v) => mask(*ty, v),
                    None => self.bin(t, *op, *ty, *m, a, b)?,
                };
                self.wr(t, *d, v);
            }
            Op::Un { op, ty, m, d, a } => {
                let a = self.rd(t, *a);
                let v = self.un(t, *op, *ty, *m, a)?;
                self.wr(t, *d, v);
            }
            Op::Mad {
                ty,
                hi,
                wide,
                d,
                a,
                b,
                c,
            } => {
                let (a, b, c) = (self.rd(t, *a), self.rd(t, *b), self.rd(t, *c));
                let v = if *wide {
                    self.bin(t, Bin::MulWide, *ty, FMOD0, a, b)?.wrapping_add(c)
                } else if *hi {
                    mask(
                        *ty,
                        self.bin(t, Bin::MulHi, *ty, FMOD0, a, b)?.wrapping_add(c),
                    )
                } else {
                    mask(*ty, a.wrapping_mul(b).wrapping_add(c))
                };
                self.wr(t, *d, v);
            }
            Op::Fma { ty, m, d, a, b, c } => {
                let (a, b, c) = (self.rd(t, *a), self.rd(t, *b), self.rd(t, *c));
                let v = match ty {
                    Ty::F32 => {
                        let (a, b, c) = (
                            ftz32(fl32(a), m.ftz),
                            ftz32(fl32(b), m.ftz),
                            ftz32(fl32(c), m.ftz),
                        );
                        let r = if m.rnd == Rnd::Rn {
                            a.mul_add(b, c)
                        } else {
                            let (hi, lo) = two_sum(a as f64 * b as f64, c as f64);
                            round_f32(hi, lo, m.rnd)
                        };
                        let r = ftz32(r, m.ftz);
                        b32(if m.sat { sat(r) } else { r })
                    }
                    Ty::F64 => {
                        if m.rnd != Rnd::Rn {
                            return Err(self.fail(
                                t,
                                "f64 fma with a rounding mode other than .rn is not supported"
                                    .into(),
                            ));
                        }
                        fl64(a).mul_add(fl64(b), fl64(c)).to_bits()
                    }
                    _ => half::fma(*ty, *m, a, b, c).ok_or_else(|| {
                        self.fail(t, format!("fma/mad on {ty:?} ({m:?}) is not supported"))
                    })?,
                };
                self.wr(t, *d, v);
            }
            Op::Setp {
                cmp,
                ty,
                ftz,
                d,
                a,
                b,
            } => {
                let (a, b) = (self.rd(t, *a), self.rd(t, *b));
                let v = setp(*cmp, *ty, *ftz, a, b);
                self.wr(t, *d, v as u64);
            }
            Op::Selp { ty, d, a, b, p } => {
                let v = if self.rd(t, *p) != 0 {
                    self.rd(t, *a)
                } else {
                    self.rd(t, *b)
                };
                self.wr(t, *d, mask(*ty, v));
            }
            Op::Cvt {
                dty,
                sty,
                irnd,
                rnd,
                ftz,
                sat: s,
                d,
                a,
            } => {
                let a = self.rd(t, *a);
                let v = self.cvt(t, *dty, *sty, *irnd, *rnd, *ftz, *s, a)?;
                self.wr(t, *d, v);
            }
            Op::Cvta { to, space, d, a } => {
                let a = self.rd(t, *a);
                let win = match space {
                    Space::Shared => SHARED_WIN,
                    Space::Local => LOCAL_WIN,
                    _ => 0,
                };
                let v = if *to {
                    a.wrapping_sub(win)
                } else {
                    a.wrapping_add(win)
                };
                self.wr(t, *d, v);
            }
            Op::Bfe { ty, d, a, b, c } => {
                let bits = ty.bytes() * 8;
                let (a, pos, len) = (
                    self.rd(t, *a),
                    self.rd(t, *b) as u32 & 0xff,
                    self.rd(t, *c) as u32 & 0xff,
                );
                let v = if len == 0 {
                    0
                } else {
                    let x = if pos >= bits { 0 } else { a >> pos };
                    let len = len.min(bits);
                    let m = if len >= 64 {
                        u64::MAX
                    } else {
                        (1u64 << len) - 1
                    };
                    let mut v = x & m;
                    if ty.signed() {
                        let sbit = if pos + len > bits {
                            (a >> (bits - 1)) & 1
                        } else {
                            (a >> (pos + len - 1)) & 1
                        };
                        if sbit == 1 {
                            v |= !m;
                        }
                    }
                    v
                };
                self.wr(t, *d, mask(*ty, v));
            }
            Op::Bfi { ty, d, a, b, c, e } => {
                let bits = ty.bytes() * 8;
                let (a, b, pos, len) = (
                    self.rd(t, *a),
                    self.rd(t, *b),
                    self.rd(t, *c) as u32 & 0xff,
                    self.rd(t, *e) as u32 & 0xff,
                );
                let mut v = b;
                for i in 0..len {
                    if pos + i >= bits {
                        break;
                    }
                    v = (v & !(1 << (pos + i))) | (((a >> i) & 1) << (pos + i));
                }
                self.wr(t, *d, mask(*ty, v));
            }
            op @ Op::Ld { .. } => self.ld(sim, t, op)?,
            op @ Op::St { .. } => self.st(sim, t, op)?,
            op @ Op::Atom { .. } => self.atom(sim, t, op)?,
            Op::Bra { target } => next = *target,
            Op::Call { func, args, .. } => next = self.call(t, pc as u32, *func, args)?,
            Op::Ret => next = self.ret(t)?,
            Op::Bar => {
                let b = self.block_of(t);
                self.st[t] = TState::Bar;
                self.blocks[b].at_bar += 1;
                return Ok(self.try_release_bar(b));
            }
            Op::WarpSync { .. } | Op::Shfl { .. } | Op::Vote { .. } => {
                self.st[t] = TState::Warp;
                return self.try_warp(t);
            }
            Op::Fence { gpu } => {
                if *gpu {
                    let b = self.block_of(t);
                    self.blocks[b].fence_epoch += 1;
                }
            }
            Op::Exit => {
                self.st[t] = TState::Done;
                let b = self.block_of(t);
                self.blocks[b].done += 1;
                let mut rel = self.try_release_bar(b);
                // A lane waiting on a collective that names this one must now fail.
                let w0 = t - (self.local_tid(t) % 32) as usize;
                for l in 0..32 {
                    let u = w0 + l;
                    if u < self.st.len() && self.block_of(u) == b && self.st[u] == TState::Warp {
                        rel |= self.try_warp(u)?;
                    }
                }
                return Ok(rel);
            }
        }
        self.pc[t] = next;
        Ok(false)
    }
}
