//! Warp collectives (`shfl.sync`, `vote.sync`, `bar.warp.sync`) as
//! rendezvous: a collective completes once every lane its mask names waits at
//! the same operation with the same mask.

use super::parse::{Op, ShflMode, Src, VoteMode};
use super::{Launch, TState};
use crate::error::Result;

impl<'k> Launch<'k> {
    /// Completes a warp collective once every lane named in the mask waits at one.
    pub(super) fn try_warp(&mut self, t: usize) -> Result<bool> {
        let lane = (t & 31) as u32;
        let w0 = t & !31;
        let block_end = t - self.local_tid(t) as usize + self.tpb as usize;
        let op = &self.k.insts[self.pc[t] as usize].op;
        let m = self.rd(t, mask_src_of(op)) as u32;
        if m & (1 << lane) == 0 {
            return Err(self.fail(
                t,
                format!(
                    "wrong shuffle mask {m:#010x}: it does not include the calling lane {lane}"
                ),
            ));
        }
        for l in 0..32 {
            if m & (1 << l) == 0 {
                continue;
            }
            let u = w0 + l;
            if u >= block_end {
                return Err(self.fail(t, format!("wrong shuffle mask {m:#010x}: lane {l} does not exist (block of {} threads)", self.tpb)));
            }
            match self.st[u] {
                TState::Done => {
                    return Err(self.fail(
                        t,
                        format!("wrong shuffle mask {m:#010x}: lane {l} has exited"),
                    ));
                }
                TState::Warp => {}
                _ => return Ok(false),
            }
            let other = &self.k.insts[self.pc[u] as usize].op;
            if std::mem::discriminant(other) != std::mem::discriminant(op)
                || self.rd(u, mask_src_of(other)) as u32 != m
            {
                return Err(self.fail(
                    t,
                    format!("warp collective mismatch: lane {l} waits at PTX line {} with a different operation or mask", self.k.insts[self.pc[u] as usize].line),
                ));
            }
        }
        // Everyone is here: gather, compute, release.
        let lanes: Vec<u32> = (0..32).filter(|l| m & (1 << l) != 0).collect();
        match op.clone() {
            Op::Shfl {
                mode,
                d,
                p,
                a,
                b,
                c,
                ..
            } => {
                let vals: Vec<u64> = (0..32)
                    .map(|l| {
                        if m & (1 << l) != 0 {
                            self.rd(w0 + l, a)
                        } else {
                            0
                        }
                    })
                    .collect();
                for &l in &lanes {
                    let u = w0 + l as usize;
                    let (bv, cv) = (self.rd(u, b) as u32, self.rd(u, c) as u32);
                    let segmask = (cv >> 8) & 0x1f;
                    let cl = cv & 0x1f;
                    let max_lane = (l & segmask) | (cl & !segmask);
                    let min_lane = l & segmask;
                    let j = match mode {
                        ShflMode::Up => l as i64 - bv as i64,
                        ShflMode::Down => l as i64 + bv as i64,
                        ShflMode::Bfly => (l ^ bv) as i64,
                        ShflMode::Idx => (min_lane | (bv & !segmask)) as i64,
                    };
                    // The source lane is valid down to max_lane for up, up to it otherwise.
                    let ok = if mode == ShflMode::Up {
                        j >= max_lane as i64
                    } else {
                        j <= max_lane as i64
                    };
                    let j = if ok { j as u32 } else { l };
                    if m & (1 << j) == 0 {
                        return Err(self.fail(u, format!("wrong shuffle mask {m:#010x}: lane {l} reads lane {j}, which is not in the mask")));
                    }
                    self.wr(u, d, vals[j as usize]);
                    if let Some(p) = p {
                        self.wr(u, p, ok as u64);
                    }
                }
            }
            Op::Vote {
                mode, d, a, negate, ..
            } => {
                let mut ballot = 0u32;
                for &l in &lanes {
                    if (self.rd(w0 + l as usize, a) != 0) != negate {
                        ballot |= 1 << l;
                    }
                }
                let v = match mode {
                    VoteMode::All => (ballot == m) as u64,
                    VoteMode::Any => (ballot != 0) as u64,
                    VoteMode::Uni => (ballot == m || ballot == 0) as u64,
                    VoteMode::Ballot => ballot as u64,
                };
                for &l in &lanes {
                    self.wr(w0 + l as usize, d, v);
                }
            }
            _ => {}
        }
        for &l in &lanes {
            let u = w0 + l as usize;
            self.st[u] = TState::Run;
            self.pc[u] += 1;
        }
        Ok(true)
    }
}

/// The member mask of a warp collective.
fn mask_src_of(op: &Op) -> Src {
    match op {
        Op::WarpSync { mask } | Op::Shfl { mask, .. } | Op::Vote { mask, .. } => *mask,
        _ => Src::Imm(0),
    }
}
