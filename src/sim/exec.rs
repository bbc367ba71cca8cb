//! Instruction dispatch. A warp's lanes that stand at one instruction run
//! it together ([`Launch::step_group`]): the instruction is decoded once and
//! the hot forms (moves, integer and f32 arithmetic, compares, loads and
//! stores) loop over the lanes; everything else runs lane by lane through
//! [`Launch::alu`] (values) and [`Launch::control`] (control flow,
//! barriers, collectives), which hand memory, warp and numeric work to the
//! other units.

use super::arith::setp;
use super::num::*;
use super::parse::{Bin, Op, Rnd, Space, Src, Ty};
use super::{LOCAL_WIN, Launch, SHARED_WIN, Simulator, TState, cluster_addr, cluster_split, half};
use crate::error::Result;

/// Runs `$body` once per set bit of `$mask` with `$t` the lane's slot.
macro_rules! each {
    ($w0:expr, $mask:expr, |$t:ident| $body:block) => {{
        let mut m: u32 = $mask;
        while m != 0 {
            let $t = $w0 + m.trailing_zeros() as usize;
            m &= m - 1;
            $body
        }
    }};
}

/// A warp's 32 values of one operand, lane by lane.
pub(super) type Lanes = [u64; 32];

/// What a group step did: whether it released waiting threads, and the
/// program counter all its lanes moved on to together, still running
/// (`None` when they parted or stopped).
pub(super) struct Stepped {
    pub released: bool,
    pub together_at: Option<u32>,
}

/// `fma.rn.f32` on 32 lanes. On x86-64 with FMA the host's instruction does
/// it inline (a call to libm's `fmaf` per lane cost 5 % of a full-shape
/// run); both round once, so the bits are the same either way.
fn fma_f32_lanes(x: &Lanes, y: &Lanes, z: &Lanes) -> Lanes {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has FMA, checked just above.
        return unsafe { fma_f32_lanes_x86(x, y, z) };
    }
    fma_f32_lanes_portable(x, y, z)
}

#[inline(always)]
fn fma_f32_lanes_portable(x: &Lanes, y: &Lanes, z: &Lanes) -> Lanes {
    std::array::from_fn(|l| b32(fl32(x[l]).mul_add(fl32(y[l]), fl32(z[l]))))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
fn fma_f32_lanes_x86(x: &Lanes, y: &Lanes, z: &Lanes) -> Lanes {
    fma_f32_lanes_portable(x, y, z)
}

impl<'k> Launch<'k> {
    /// The 32 lanes' values of operand `s` in the warp at slot `w0`.
    #[inline(always)]
    pub(super) fn lanes_of(&self, w0: usize, s: Src) -> Lanes {
        match s {
            Src::R(r) => {
                let i = self.reg(w0, r);
                self.regs[i..i + 32].try_into().expect("32 lanes")
            }
            Src::Imm(v) => [v; 32],
            Src::S(_) => std::array::from_fn(|l| self.rd(w0 + l, s)),
        }
    }

    /// Writes lane `l`'s value `v[l]` to register `d` for the lanes in `on`.
    #[inline(always)]
    pub(super) fn put(&mut self, w0: usize, on: u32, d: u16, v: &Lanes) {
        let i = self.reg(w0, d);
        let dst: &mut Lanes = (&mut self.regs[i..i + 32]).try_into().expect("32 lanes");
        if on == u32::MAX {
            *dst = *v;
        } else {
            for (l, (x, &y)) in dst.iter_mut().zip(v).enumerate() {
                if on & (1 << l) != 0 {
                    *x = y;
                }
            }
        }
    }

    /// `d = f(a, b)` lane-wise for the lanes in `on`. `f` runs on every
    /// lane, inactive ones on whatever their registers hold, so it must be
    /// total (no panic, no error) on any input.
    #[inline(always)]
    fn map2(&mut self, w0: usize, on: u32, d: u16, a: Src, b: Src, f: impl Fn(u64, u64) -> u64) {
        let (x, y) = (self.lanes_of(w0, a), self.lanes_of(w0, b));
        self.put(w0, on, d, &std::array::from_fn(|l| f(x[l], y[l])));
    }

    /// `d = f(a, b, c)` lane-wise, as [`Launch::map2`].
    #[inline(always)]
    fn map3(
        &mut self,
        w0: usize,
        on: u32,
        d: u16,
        abc: [Src; 3],
        f: impl Fn(u64, u64, u64) -> u64,
    ) {
        self.map3_lanes(w0, on, d, abc, |x, y, z| {
            std::array::from_fn(|l| f(x[l], y[l], z[l]))
        })
    }

    /// `d = f(a, b, c)` on the three operands' whole lane arrays (for a
    /// host instruction that wants them whole); `f` as in [`Launch::map2`].
    #[inline(always)]
    fn map3_lanes(
        &mut self,
        w0: usize,
        on: u32,
        d: u16,
        [a, b, c]: [Src; 3],
        f: impl Fn(&Lanes, &Lanes, &Lanes) -> Lanes,
    ) {
        let (x, y, z) = (
            self.lanes_of(w0, a),
            self.lanes_of(w0, b),
            self.lanes_of(w0, c),
        );
        self.put(w0, on, d, &f(&x, &y, &z));
    }

    /// Executes the instruction at `pc` for the lanes `lanes` of the warp
    /// whose lane 0 is slot `w0` (all running, all at `pc`).
    pub(super) fn step_group(
        &mut self,
        sim: &mut Simulator,
        w0: usize,
        lanes: u32,
        pc: u32,
    ) -> Result<Stepped> {
        let k = self.k;
        let inst = &k.insts[pc as usize];
        self.instructions += u64::from(lanes.count_ones());
        let on = match inst.pred {
            Some((p, neg)) => {
                let v = self.lanes_of(w0, Src::R(p));
                (0..32).fold(0, |m, l| m | (((v[l] != 0) != neg) as u32) << l) & lanes
            }
            None => lanes,
        };
        let next = pc + 1;
        match inst.op {
            Op::Mov { d, a } => {
                let v = self.lanes_of(w0, a);
                self.put(w0, on, d, &v);
            }
            Op::Bin { op, ty, m, d, a, b } => {
                let int = matches!(ty.bytes(), 4 | 8) && !ty.is_float() && ty != Ty::Pred;
                let plain = m.rnd == Rnd::Rn && !m.ftz && !m.sat;
                let bits = u64::from(ty.bytes() * 8);
                let f32_ = ty == Ty::F32 && plain;
                match op {
                    Bin::Add if int => {
                        self.map2(w0, on, d, a, b, |x, y| mask(ty, x.wrapping_add(y)))
                    }
                    Bin::Sub if int => {
                        self.map2(w0, on, d, a, b, |x, y| mask(ty, x.wrapping_sub(y)))
                    }
                    Bin::MulLo if int => {
                        self.map2(w0, on, d, a, b, |x, y| mask(ty, x.wrapping_mul(y)))
                    }
                    Bin::And if int => self.map2(w0, on, d, a, b, |x, y| x & y),
                    Bin::Or if int => self.map2(w0, on, d, a, b, |x, y| x | y),
                    Bin::Xor if int => self.map2(w0, on, d, a, b, |x, y| x ^ y),
                    Bin::Shl if int => self.map2(w0, on, d, a, b, |x, y| {
                        if y & 0xffff_ffff < bits {
                            mask(ty, x << (y & 63))
                        } else {
                            0
                        }
                    }),
                    Bin::Shr if int && !ty.signed() => self.map2(w0, on, d, a, b, |x, y| {
                        if y & 0xffff_ffff < bits {
                            mask(ty, x) >> (y & 63)
                        } else {
                            0
                        }
                    }),
                    Bin::Add if f32_ => self.map2(w0, on, d, a, b, |x, y| b32(fl32(x) + fl32(y))),
                    Bin::Sub if f32_ => self.map2(w0, on, d, a, b, |x, y| b32(fl32(x) - fl32(y))),
                    Bin::MulLo if f32_ => self.map2(w0, on, d, a, b, |x, y| b32(fl32(x) * fl32(y))),
                    _ => each!(w0, on, |t| {
                        let v = self.bin(t, op, ty, m, self.rd(t, a), self.rd(t, b))?;
                        self.wr(t, d, v);
                    }),
                }
            }
            Op::Fma {
                ty: Ty::F32,
                m,
                d,
                a,
                b,
                c,
            } if m.rnd == Rnd::Rn && !m.ftz && !m.sat => {
                self.map3_lanes(w0, on, d, [a, b, c], fma_f32_lanes)
            }
            Op::Mad {
                ty,
                hi: false,
                wide: false,
                d,
                a,
                b,
                c,
            } => self.map3(w0, on, d, [a, b, c], |x, y, z| {
                mask(ty, x.wrapping_mul(y).wrapping_add(z))
            }),
            Op::Setp {
                cmp,
                ty,
                ftz,
                d,
                a,
                b,
            } => self.map2(w0, on, d, a, b, |x, y| setp(cmp, ty, ftz, x, y) as u64),
            Op::Selp { ty, d, a, b, p } => self.map3(w0, on, d, [a, b, p], |x, y, q| {
                mask(ty, if q != 0 { x } else { y })
            }),
            ref op @ (Op::Ld { .. } | Op::St { .. }) => self.ld_st_group(sim, w0, on, op)?,
            ref op @ Op::Atom { .. } => each!(w0, on, |t| {
                self.atom(sim, t, op)?;
            }),
            Op::Bra { target } => {
                each!(w0, lanes & !on, |t| {
                    self.pc[t] = pc + 1;
                });
                each!(w0, on, |t| {
                    self.pc[t] = target;
                });
                let together_at = if on == lanes {
                    Some(target)
                } else if on == 0 {
                    Some(pc + 1)
                } else {
                    None
                };
                return Ok(Stepped {
                    released: false,
                    together_at,
                });
            }
            Op::Call { .. }
            | Op::Ret
            | Op::Bar
            | Op::WarpSync { .. }
            | Op::Shfl { .. }
            | Op::Vote { .. }
            | Op::Fence { .. }
            | Op::ClusterArrive
            | Op::ClusterWait
            | Op::Exit => {
                each!(w0, lanes & !on, |t| {
                    self.pc[t] = pc + 1;
                });
                let mut released = false;
                each!(w0, on, |t| {
                    // An earlier lane's barrier or collective may have moved this one on.
                    if self.st[t] == TState::Run && self.pc[t] == pc {
                        released |= self.control(t, pc, &inst.op)?;
                    }
                });
                return Ok(Stepped {
                    released,
                    together_at: None,
                });
            }
            ref op => each!(w0, on, |t| {
                self.alu(t, op)?;
            }),
        }
        if lanes == u32::MAX {
            self.pc[w0..w0 + 32].fill(next);
        } else {
            each!(w0, lanes, |t| {
                self.pc[t] = next;
            });
        }
        Ok(Stepped {
            released: false,
            together_at: Some(next),
        })
    }

    /// One lane's value instruction (no memory, no control flow).
    fn alu(&mut self, t: usize, op: &Op) -> Result<()> {
        match op {
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
            Op::Prmt { d, a, b, c } => {
                // Bytes 0-3 are a's, 4-7 b's; result byte i is the byte
                // that nibble i of c names (its low 3 bits), or that byte's
                // sign spread over 8 bits when the nibble's top bit is set.
                let (a, b, sel) = (self.rd(t, *a), self.rd(t, *b), self.rd(t, *c));
                let bytes = (b & 0xffff_ffff) << 32 | (a & 0xffff_ffff);
                let mut v = 0u64;
                for i in 0..4 {
                    let nib = (sel >> (4 * i)) & 0xf;
                    let byte = (bytes >> (8 * (nib & 7))) & 0xff;
                    let out = if nib & 8 != 0 {
                        if byte & 0x80 != 0 { 0xff } else { 0 }
                    } else {
                        byte
                    };
                    v |= out << (8 * i);
                }
                self.wr(t, *d, v);
            }
            Op::Mapa {
                generic,
                d,
                a,
                rank,
            } => {
                let (a, rank) = (self.rd(t, *a), self.rd(t, *rank));
                let win = if *generic { SHARED_WIN } else { 0 };
                let bad = |what: &str| format!("mapa of {a:#x} to rank {rank}: {what}");
                if rank >= u64::from(self.csize) {
                    return Err(
                        self.fail(t, bad(&format!("the cluster has {} blocks", self.csize)))
                    );
                }
                let (from, off) = cluster_split(a.wrapping_sub(win));
                if from.is_some_and(|r| r >= u64::from(self.csize)) {
                    return Err(self.fail(t, bad("not a shared-memory address")));
                }
                self.wr(t, *d, win + cluster_addr(rank, off));
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
            _ => unreachable!("not a value instruction: {op:?}"),
        }
        Ok(())
    }

    /// One lane's control instruction at `pc`; sets its program counter
    /// (or state) and returns true when it released waiting threads.
    fn control(&mut self, t: usize, pc: u32, op: &Op) -> Result<bool> {
        let mut next = pc + 1;
        match op {
            Op::Call { func, args, .. } => next = self.call(t, pc, *func, args)?,
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
            Op::ClusterArrive => {
                let released = self.cluster_arrive(t)?;
                self.pc[t] = next;
                return Ok(released);
            }
            Op::ClusterWait => return self.cluster_wait(t),
            Op::Fence { gpu } => {
                if *gpu {
                    let b = self.block_of(t);
                    self.blocks[b].fence_epoch += 1;
                }
            }
            Op::Exit => {
                self.cluster_exit(t);
                self.st[t] = TState::Done;
                let b = self.block_of(t);
                self.blocks[b].done += 1;
                let mut rel = self.try_release_bar(b) | self.try_release_cluster(b);
                // A lane waiting on a collective that names this one must now fail.
                let w0 = t & !31;
                for u in w0..w0 + 32 {
                    if self.st[u] == TState::Warp {
                        rel |= self.try_warp(u)?;
                    }
                }
                return Ok(rel);
            }
            _ => unreachable!("not a control instruction: {op:?}"),
        }
        self.pc[t] = next;
        Ok(false)
    }
}
