//! A warp's word loads and stores in one pass: the common access (4-byte
//! elements, global or shared, aligned, in bounds, every byte written
//! before, the word not split into bytes) is checked and done here; any
//! other lane's access goes whole through [`Launch::ld`] / [`Launch::st`],
//! which names its fault. Lanes run in lane order either way, so the race
//! shadow sees the accesses in the order the lane-by-lane path gives them.

use super::memory::Place;
use super::num::sext;
use super::parse::{Op, Space, Src};
use super::shadow::{Accessor, Entry, INIT, SPLIT};
use super::{Acc, BlockSt, Launch, Region, Simulator};
use crate::error::Result;

impl<'k> Launch<'k> {
    /// Runs the load or store `op` for the lanes `on` of the warp at slot `w0`.
    pub(super) fn ld_st_group(
        &mut self,
        sim: &mut Simulator,
        w0: usize,
        on: u32,
        op: &Op,
    ) -> Result<()> {
        let (space, ty, addr, n, srcs, dsts) = match op {
            Op::Ld { space, ty, d, addr } => (*space, *ty, addr, d.len(), &[][..], &d[..]),
            Op::St { space, ty, s, addr } => (*space, *ty, addr, s.len(), &s[..], &[][..]),
            _ => unreachable!("not a load or store: {op:?}"),
        };
        let store = dsts.is_empty();
        let slow = |me: &mut Self, sim: &mut Simulator, t: usize| {
            if store {
                me.st(sim, t, op)
            } else {
                me.ld(sim, t, op)
            }
        };
        // Shared accesses between a cluster barrier's arrive and wait are
        // refused lane by lane (`mem`); `.shared::cluster` ones go there too.
        if ty.bytes() != 4
            || !matches!(n, 1 | 2 | 4)
            || !matches!(space, Space::Shared | Space::Global)
            || space == Space::Shared && self.in_limbo > 0
        {
            let mut m = on;
            while m != 0 {
                let t = w0 + m.trailing_zeros() as usize;
                m &= m - 1;
                slow(self, sim, t)?;
            }
            return Ok(());
        }
        let base = match addr.base {
            Some(r) => self.lanes_of(w0, Src::R(r)),
            None => [0; 32],
        };
        // All lanes of a warp are in one block: one accessor, by lane.
        let me = self.accessor(w0);
        // A loaded word as its register holds it.
        let loaded = |v: u64| if ty.signed() { sext(ty, v) as u64 } else { v };
        let addrs: [u64; 32] = std::array::from_fn(|l| base[l].wrapping_add(addr.offset as u64));
        let mut vals = [[0u64; 4]; 32];
        // A broadcast (every lane reads one address) reads one value, and
        // the checks of its first, second and last lanes leave the shadow
        // as all of them would and find the first conflict any of them
        // would: the lanes differ only in whether the last writer is the
        // lane itself, and two lanes cannot both be it.
        let l0 = on.trailing_zeros() as usize;
        if !store
            && on.count_ones() > 3
            && (0..32).all(|l| on & (1 << l) == 0 || addrs[l] == addrs[l0])
            && self.word_run(sim, w0, me, space, &addrs, 1 << l0, n, &mut vals, false)? != 0
        {
            let second = (on & (on - 1)).trailing_zeros();
            let last = 31 - on.leading_zeros();
            let rest = (1 << second) | (1 << last);
            let mut scratch = [[0u64; 4]; 32];
            let done = self.word_run(sim, w0, me, space, &addrs, rest, n, &mut scratch, false)?;
            debug_assert_eq!(done, rest, "a broadcast's lanes take the same path");
            for (&d, &v) in dsts.iter().zip(&vals[l0]) {
                self.put(w0, on, d, &[loaded(v); 32]);
            }
            return Ok(());
        }
        for (j, &s) in srcs.iter().enumerate() {
            let v = self.lanes_of(w0, s);
            for (lane, &x) in vals.iter_mut().zip(&v) {
                lane[j] = x;
            }
        }
        let mut m = on;
        while m != 0 {
            let done = self.word_run(sim, w0, me, space, &addrs, m, n, &mut vals, store)?;
            if !store {
                for (j, &d) in dsts.iter().enumerate() {
                    let v = std::array::from_fn(|l| loaded(vals[l][j]));
                    self.put(w0, done, d, &v);
                }
            }
            m &= !done;
            if done == 0 {
                // The first lane left is not the common case: the general
                // way names its fault or does what the run does not.
                slow(self, sim, w0 + m.trailing_zeros() as usize)?;
                m &= m - 1;
            }
        }
        Ok(())
    }

    /// Runs the word accesses of the lanes in `on`, in lane order, for as
    /// long as each is the common case in the allocation (or shared
    /// memory) the first one falls in: found once, not once per lane.
    /// Returns the lanes done, a prefix of `on`; loads leave their words
    /// in `vals`.
    #[allow(clippy::too_many_arguments)]
    fn word_run(
        &mut self,
        sim: &mut Simulator,
        w0: usize,
        me: Accessor,
        space: Space,
        addrs: &[u64; 32],
        on: u32,
        n: usize,
        vals: &mut [[u64; 4]; 32],
        store: bool,
    ) -> Result<u32> {
        let first = addrs[on.trailing_zeros() as usize];
        let (blocks, tpb) = (&self.blocks, self.tpb);
        let acc = if store { Acc::Write } else { Acc::Read };
        let mut run = Run {
            blocks,
            tpb,
            me,
            acc,
            base: 0,
            addrs,
            n,
        };
        let wb = me.block - self.first_block as usize;
        let (done, race) = if space == Space::Shared && self.csize > 1 {
            run.go(&mut self.cshared[wb], on, vals)
        } else if space == Space::Shared {
            run.go(&mut self.shared[wb], on, vals)
        } else {
            match sim.allocs.range_mut(..=first).next_back() {
                Some((&b, r)) => {
                    run.base = b;
                    run.go(r, on, vals)
                }
                None => return Ok(0),
            }
        };
        match race {
            None => Ok(done),
            Some((l, at, prev, kind)) => {
                let place = if space == Space::Shared {
                    Place::Shared
                } else {
                    Place::Global(addrs[l])
                };
                Err(self.race_error(w0 + l, place, at, prev, kind, acc))
            }
        }
    }
}

/// A warp's word accesses into one region that starts at address `base`.
struct Run<'a> {
    blocks: &'a [BlockSt],
    tpb: u32,
    me: Accessor,
    acc: Acc,
    base: u64,
    addrs: &'a [u64; 32],
    n: usize,
}

/// A race found: the lane, the byte offset, the other accessor's index + 1
/// and its access's kind.
type Race = (usize, usize, u32, &'static str);

impl Run<'_> {
    /// The lanes of `on` done, in lane order, until one is not the common
    /// case or races (returned with it).
    #[inline(always)]
    fn go<E: Entry>(
        &self,
        region: &mut Region<E>,
        on: u32,
        vals: &mut [[u64; 4]; 32],
    ) -> (u32, Option<Race>) {
        region.ensure_shadow();
        if let Some(r) = self.consecutive(region, on, vals) {
            return r;
        }
        let store = self.acc == Acc::Write;
        let bytes = 4 * self.n as u64;
        let len = region.data.len() as u64;
        let mut done = 0u32;
        let mut m = on;
        while m != 0 {
            let l = m.trailing_zeros() as usize;
            let off = self.addrs[l].wrapping_sub(self.base);
            if self.addrs[l] & (bytes - 1) != 0 || off >= len || len - off < bytes {
                break;
            }
            let o = off as usize;
            let words = &mut region.shadow[o / 4..o / 4 + self.n];
            if !ready(words, &region.init[o..o + 4 * self.n], store) {
                break;
            }
            for (i, e) in words.iter_mut().enumerate() {
                let at = o + 4 * i;
                if let Some((prev, kind)) =
                    e.check(self.blocks, self.tpb, self.me.lane(l), self.acc)
                {
                    return (done, Some((l, at, prev, kind)));
                }
                e.set_flags(e.flags() | INIT);
                let (word, init) = (&mut region.data[at..at + 4], &mut region.init[at..at + 4]);
                transfer(word, init, &mut vals[l][i], store);
            }
            done |= 1 << l;
            m &= m - 1;
        }
        (done, None)
    }

    /// [`Run::go`] for the most common access of all: all 32 lanes, one
    /// word each, lane `l` at word `l` of one aligned run of 32 (a
    /// coalesced row). One bounds check and one slice of entries for the
    /// warp instead of a lane's worth of address work per lane; the lanes
    /// are checked in lane order as in `go`. `None` when the access is not
    /// that (or not the common case), having changed nothing.
    #[inline(always)]
    fn consecutive<E: Entry>(
        &self,
        region: &mut Region<E>,
        on: u32,
        vals: &mut [[u64; 4]; 32],
    ) -> Option<(u32, Option<Race>)> {
        let a0 = self.addrs[0];
        if on != u32::MAX
            || self.n != 1
            || a0 & 3 != 0
            || (0..32).any(|l| self.addrs[l] != a0.wrapping_add(4 * l as u64))
        {
            return None;
        }
        let off = a0.wrapping_sub(self.base);
        let len = region.data.len() as u64;
        if off >= len || len - off < 128 {
            return None;
        }
        let o = off as usize;
        let store = self.acc == Acc::Write;
        let words: &mut [E; 32] = (&mut region.shadow[o / 4..o / 4 + 32]).try_into().ok()?;
        let data: &mut [u8; 128] = (&mut region.data[o..o + 128]).try_into().ok()?;
        let init: &mut [u8; 128] = (&mut region.init[o..o + 128]).try_into().ok()?;
        if !ready(words, init, store) {
            return None;
        }
        for (l, e) in words.iter_mut().enumerate() {
            if let Some((prev, kind)) = e.check(self.blocks, self.tpb, self.me.lane(l), self.acc) {
                // The lanes before this one are done; this one is not.
                let done = (1u32 << l) - 1;
                self.finish(data, init, vals, done, store);
                return Some((done, Some((l, o + 4 * l, prev, kind))));
            }
            e.set_flags(e.flags() | INIT);
        }
        self.finish(data, init, vals, u32::MAX, store);
        Some((u32::MAX, None))
    }

    /// The data half of [`Run::consecutive`] for the lanes `done`.
    #[inline(always)]
    fn finish(
        &self,
        data: &mut [u8; 128],
        init: &mut [u8; 128],
        vals: &mut [[u64; 4]; 32],
        done: u32,
        store: bool,
    ) {
        let words = data.chunks_exact_mut(4).zip(init.chunks_exact_mut(4));
        for (l, ((word, init), v)) in words.zip(vals.iter_mut()).enumerate() {
            if done & (1 << l) == 0 {
                break;
            }
            transfer(word, init, &mut v[0], store);
        }
    }
}

/// Whether the words whose entries are `words` and init bytes `init` are
/// the common case: none split into bytes, and for a load every byte
/// written (known from the entry's flag, else read from `init`).
#[inline(always)]
fn ready<E: Entry>(words: &[E], init: &[u8], store: bool) -> bool {
    !words.iter().any(|e| e.flags() & SPLIT != 0)
        && (store
            || words
                .iter()
                .zip(init.chunks_exact(4))
                .all(|(e, w)| e.flags() & INIT != 0 || w == [1; 4]))
}

/// One checked word's data: a store writes `v` and marks the bytes
/// written, a load reads the word into `v`.
#[inline(always)]
fn transfer(word: &mut [u8], init: &mut [u8], v: &mut u64, store: bool) {
    if store {
        word.copy_from_slice(&(*v as u32).to_le_bytes());
        init.fill(1);
    } else {
        *v = u64::from(u32::from_le_bytes(word.try_into().expect("4 bytes")));
    }
}
