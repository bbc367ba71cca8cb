//! A warp's word loads and stores in one pass: the common access (4-byte
//! elements, global or shared, aligned, in bounds, every byte written
//! before, the word not split into bytes) is checked and done here; any
//! other lane's access goes whole through [`Launch::ld`] / [`Launch::st`],
//! which names its fault. Lanes run in lane order either way, so the race
//! shadow sees the accesses in the order the lane-by-lane path gives them.

use super::memory::{Accessor, Place, check};
use super::num::sext;
use super::parse::{Op, Space, Src};
use super::{Acc, Launch, SPLIT, Simulator};
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
        if ty.bytes() != 4
            || !matches!(n, 1 | 2 | 4)
            || !matches!(space, Space::Shared | Space::Global)
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
        let put = |me: &mut Self, on: u32, vals: &[u64; 4]| {
            for (&d, &v) in dsts.iter().zip(vals) {
                me.put(w0, on, d, &[loaded(v); 32]);
            }
        };
        // A broadcast (every lane reads one address) reads one value, and
        // the checks of its first, second and last lanes leave the shadow
        // as all of them would and find the first conflict any of them
        // would: the lanes differ only in whether the last writer is the
        // lane itself, and two lanes cannot both be it.
        let l0 = on.trailing_zeros() as usize;
        if !store
            && on.count_ones() > 3
            && (0..32).all(|l| on & (1 << l) == 0 || base[l] == base[l0])
        {
            let a = base[l0].wrapping_add(addr.offset as u64);
            let mut vals = [0u64; 4];
            if a & (4 * n as u64 - 1) == 0
                && self.word_access(sim, w0 + l0, me.lane(l0), space, a, &mut vals[..n], false)?
            {
                let second = (on & (on - 1)).trailing_zeros() as usize;
                let last = 31 - on.leading_zeros() as usize;
                for l in [second, last] {
                    let mut v = [0u64; 4];
                    let done =
                        self.word_access(sim, w0 + l, me.lane(l), space, a, &mut v[..n], false)?;
                    debug_assert!(done, "a broadcast's lanes take the same path");
                }
                put(self, on, &vals);
                return Ok(());
            }
        }
        let addrs: [u64; 32] = std::array::from_fn(|l| base[l].wrapping_add(addr.offset as u64));
        let mut vals = [[0u64; 4]; 32];
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
            if m == 0 {
                break;
            }
            // The lane that stopped the run goes the general way, which
            // names its fault or handles what the run does not.
            let l = m.trailing_zeros() as usize;
            m &= m - 1;
            let t = w0 + l;
            let mut v = vals[l];
            let done = addrs[l] & (4 * n as u64 - 1) == 0
                && self.word_access(sim, t, me.lane(l), space, addrs[l], &mut v[..n], store)?;
            if !done {
                slow(self, sim, t)?;
            } else {
                for (&d, &x) in dsts.iter().zip(&v) {
                    self.wr(t, d, loaded(x));
                }
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
        let acc = if store { Acc::Write } else { Acc::Read };
        let first = addrs[on.trailing_zeros() as usize];
        let (rbase, region) = if space == Space::Shared {
            (0, &mut self.shared[me.block - self.first_block as usize])
        } else {
            match sim.allocs.range_mut(..=first).next_back() {
                Some((&b, r)) => (b, r),
                None => return Ok(0),
            }
        };
        region.ensure_shadow();
        let (blocks, tpb) = (&self.blocks, self.tpb);
        let bytes = 4 * n as u64;
        let len = region.data.len() as u64;
        let mut done = 0u32;
        let mut m = on;
        let mut race = None;
        while m != 0 {
            let l = m.trailing_zeros() as usize;
            let off = addrs[l].wrapping_sub(rbase);
            if addrs[l] & (bytes - 1) != 0 || off >= len || len - off < bytes {
                break;
            }
            let o = off as usize;
            if !store
                && region.init[o..o + 4 * n]
                    .chunks_exact(4)
                    .any(|w| w != [1; 4])
            {
                break;
            }
            let words = &mut region.shadow[o / 4..o / 4 + n];
            if words.iter().any(|e| e.flags & SPLIT != 0) {
                break;
            }
            for (i, e) in words.iter_mut().enumerate() {
                if let Some((prev, kind)) = check(blocks, tpb, me.lane(l), acc, e) {
                    race = Some((l, o + 4 * i, prev, kind));
                    break;
                }
                let at = o + 4 * i;
                let word: &mut [u8; 4] =
                    (&mut region.data[at..at + 4]).try_into().expect("4 bytes");
                if store {
                    *word = (vals[l][i] as u32).to_le_bytes();
                    region.init[at..at + 4].fill(1);
                } else {
                    vals[l][i] = u64::from(u32::from_le_bytes(*word));
                }
            }
            if race.is_some() {
                break;
            }
            done |= 1 << l;
            m &= m - 1;
        }
        if let Some((l, at, prev, kind)) = race {
            let place = if space == Space::Shared {
                Place::Shared
            } else {
                Place::Global(addrs[l])
            };
            return Err(self.race_error(w0 + l, place, at, prev, kind, acc));
        }
        Ok(done)
    }

    /// Slot `t` (accessor `me`) accesses `vals.len()` words at `a`:
    /// stores `vals`, or loads into them. Ok(false), having changed
    /// nothing, when the access needs the general path.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn word_access(
        &mut self,
        sim: &mut Simulator,
        t: usize,
        me: Accessor,
        space: Space,
        a: u64,
        vals: &mut [u64],
        store: bool,
    ) -> Result<bool> {
        let n = vals.len();
        let acc = if store { Acc::Write } else { Acc::Read };
        let (region, off, place) = if space == Space::Shared {
            (
                &mut self.shared[me.block - self.first_block as usize],
                a,
                Place::Shared,
            )
        } else {
            match sim.allocs.range_mut(..=a).next_back() {
                Some((b, r)) => (r, a - b, Place::Global(a)),
                None => return Ok(false),
            }
        };
        let o = off as usize;
        let bytes = 4 * n;
        if off + bytes as u64 > region.data.len() as u64
            || (!store
                && region.init[o..o + bytes]
                    .chunks_exact(4)
                    .any(|w| w != [1; 4]))
        {
            return Ok(false);
        }
        region.ensure_shadow();
        let words = &mut region.shadow[o / 4..o / 4 + n];
        if words.iter().any(|e| e.flags & SPLIT != 0) {
            return Ok(false);
        }
        for (i, e) in words.iter_mut().enumerate() {
            if let Some((prev, kind)) = check(&self.blocks, self.tpb, me, acc, e) {
                return Err(self.race_error(t, place, o + 4 * i, prev, kind, acc));
            }
            let at = o + 4 * i;
            let word: &mut [u8; 4] = (&mut region.data[at..at + 4]).try_into().expect("4 bytes");
            if store {
                *word = (vals[i] as u32).to_le_bytes();
                region.init[at..at + 4].fill(1);
            } else {
                vals[i] = u64::from(u32::from_le_bytes(*word));
            }
        }
        Ok(true)
    }
}
