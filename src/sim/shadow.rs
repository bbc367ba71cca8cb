//! The race shadow: what each checked word (or byte, once split) remembers
//! of its last writer and last reader, the check of an access against it,
//! and the two forms an entry is kept in.
//!
//! Global memory keeps the full entry ([`Sh`], 32 bytes). Shared memory
//! keeps a quarter of that ([`Near`]): only a block's own threads reach its
//! shared memory, so an entry needs no launch (the memory is new with every
//! wave), no fence epoch (only a cross-block conflict reads it) and only
//! the thread's index within the block; and the barrier epoch is kept in 16
//! bits, which [`sweep`] keeps exact. At the Keras shape a block streams
//! 147 KB of shared weights each step: 1.2 MB of full entries, 295 KB of
//! compact ones.

use super::{Acc, BlockSt};

/// A shadow entry in full: what [`check`] reads and writes.
#[derive(Clone, Copy, Default)]
pub(super) struct Sh {
    pub launch: u32,
    /// The last writer's grid-wide index + 1 (0: none).
    pub w: u32,
    pub w_ep: u32,
    pub w_fe: u32,
    /// The last reader's grid-wide index + 1 (0: none since the last write).
    pub r: u32,
    pub r_ep: u32,
    pub r_fe: u32,
    pub flags: u8,
}
pub(super) const W_ATOMIC: u8 = 1;
pub(super) const R_MANY: u8 = 2;
/// On a word's entry: the word is tracked per byte, in `Region::split`.
pub(super) const SPLIT: u8 = 4;
/// On a word's entry: all four bytes are known written, so a word load
/// need not read `Region::init` (which stays the authority: the flag is
/// only ever set from it or with it).
pub(super) const INIT: u8 = 8;

/// A form a shadow entry is stored in.
pub(super) trait Entry: Copy + Default {
    /// Checks access `acc` by `me` against this entry (a word's or a
    /// byte's), then records it; returns the conflicting access as (its
    /// thread's grid-wide index + 1, "write" or "read").
    fn check(
        &mut self,
        blocks: &[BlockSt],
        tpb: u32,
        me: Accessor,
        acc: Acc,
    ) -> Option<(u32, &'static str)>;
    fn flags(&self) -> u8;
    fn set_flags(&mut self, f: u8);
}

impl Entry for Sh {
    #[inline(always)]
    fn check(
        &mut self,
        blocks: &[BlockSt],
        tpb: u32,
        me: Accessor,
        acc: Acc,
    ) -> Option<(u32, &'static str)> {
        check(blocks, tpb, me, acc, self)
    }
    #[inline(always)]
    fn flags(&self) -> u8 {
        self.flags
    }
    #[inline(always)]
    fn set_flags(&mut self, f: u8) {
        self.flags = f;
    }
}

/// A shared-memory entry: the writer's and reader's index within the
/// block + 1 (at most 1024: 11 bits; the flags above them in `w`) and the
/// low 16 bits of their barrier epochs. Its check is [`check`]'s for two
/// threads of one block, where a conflict is two accesses in one barrier
/// epoch; it asks only whether a stored epoch is the current one, and
/// [`sweep`] keeps every stored epoch that is not from ever reading as it.
#[derive(Clone, Copy, Default)]
pub(super) struct Near {
    w: u16,
    r: u16,
    w_ep: u16,
    r_ep: u16,
}
const TID: u16 = 0x7ff;
const FLAG_SHIFT: u16 = 12;

impl Entry for Near {
    #[inline(always)]
    fn check(
        &mut self,
        _: &[BlockSt],
        tpb: u32,
        me: Accessor,
        acc: Acc,
    ) -> Option<(u32, &'static str)> {
        let first = me.block as u32 * tpb;
        let mine = (me.g - first + 1) as u16;
        let now = me.ep as u16;
        let conflict = |who: u16, ep: u16| who != 0 && who != mine && ep == now;
        let (w, r) = (self.w & TID, self.r);
        let flags = self.flags();
        let many_mine = r == mine && flags & R_MANY != 0 && self.r_ep == now;
        match acc {
            Acc::Read | Acc::AtomicLoad => {
                let racy = conflict(w, self.w_ep);
                let many = conflict(r, self.r_ep) || many_mine;
                self.set_flags((flags & !R_MANY) | if many { R_MANY } else { 0 });
                self.r = mine;
                self.r_ep = now;
                racy.then_some((first + u32::from(w), "write"))
            }
            Acc::Write | Acc::Atomic => {
                let atomic = acc == Acc::Atomic;
                let ww = conflict(w, self.w_ep) && !(atomic && flags & W_ATOMIC != 0);
                let rw = !atomic && (conflict(r, self.r_ep) || many_mine);
                let out = if ww {
                    Some((first + u32::from(w), "write"))
                } else if rw {
                    Some((first + u32::from(r), "read"))
                } else {
                    None
                };
                self.w = mine;
                self.w_ep = now;
                self.set_flags((flags & INIT) | if atomic { W_ATOMIC } else { 0 });
                if !atomic {
                    self.r = 0;
                }
                out
            }
        }
    }
    #[inline(always)]
    fn flags(&self) -> u8 {
        (self.w >> FLAG_SHIFT) as u8
    }
    #[inline(always)]
    fn set_flags(&mut self, f: u8) {
        self.w = (self.w & TID) | u16::from(f) << FLAG_SHIFT;
    }
}

/// How often a block's shared-memory shadow is swept: every 2^15 barriers,
/// half the range of a stored epoch.
pub(super) const SWEEP_EVERY: u32 = 1 << 15;

/// Run when a block's barrier epoch reaches a multiple of [`SWEEP_EVERY`]:
/// every stored epoch of its shared memory that is not `now` becomes
/// `now - 1`. Until the next sweep, at `now + 2^15`, stored epochs are
/// that or epochs from `now` to the current one, all within 2^15 + 1 of
/// each other, so a stored epoch's 16 bits equal the current epoch's
/// exactly when the access was in it (`now - 2^15`, the obvious marker,
/// would equal the next sweep's epoch in 16 bits).
pub(super) fn sweep<'a>(entries: impl Iterator<Item = &'a mut Near>, now: u32) {
    let (cur, old) = (now as u16, now.wrapping_sub(1) as u16);
    for e in entries {
        for ep in [&mut e.w_ep, &mut e.r_ep] {
            if *ep != cur {
                *ep = old;
            }
        }
    }
}

/// A thread making an access, as the race shadow records it: its grid-wide
/// index, its block, the launch, and its block's barrier and fence epochs.
#[derive(Clone, Copy)]
pub(super) struct Accessor {
    pub g: u32,
    pub block: usize,
    pub launch: u32,
    pub ep: u32,
    pub fe: u32,
}

impl Accessor {
    /// Lane `l` of the warp whose lane 0 this is (one block, one epoch).
    pub(super) fn lane(self, l: usize) -> Accessor {
        Accessor {
            g: self.g + l as u32,
            ..self
        }
    }
}

/// Checks one shadow entry (a word's or a byte's) against access `acc` by
/// `me`, then records the access in it; returns the conflicting access as
/// (its thread's index + 1, "write" or "read").
#[inline(always)]
fn check(
    blocks: &[BlockSt],
    tpb: u32,
    me: Accessor,
    acc: Acc,
    e: &mut Sh,
) -> Option<(u32, &'static str)> {
    let g = me.g;
    let conflict = |prev: u32, ep: u32, fe: u32| -> bool {
        if prev == 0 || prev - 1 == g {
            return false;
        }
        // Same block without a division: most conflicts checked are.
        if (prev - 1).wrapping_sub(me.block as u32 * tpb) < tpb {
            blocks[me.block].bar_epoch == ep
        } else {
            blocks[((prev - 1) / tpb) as usize].fence_epoch == fe
        }
    };
    if e.launch != me.launch {
        *e = Sh {
            launch: me.launch,
            flags: e.flags & INIT,
            ..Sh::default()
        };
    }
    match acc {
        Acc::Read | Acc::AtomicLoad => {
            let racy = conflict(e.w, e.w_ep, e.w_fe);
            let many = (e.r != 0 && e.r - 1 != g && conflict(e.r, e.r_ep, e.r_fe))
                || (e.r == g + 1 && e.flags & R_MANY != 0 && e.r_ep == me.ep);
            e.flags = (e.flags & !R_MANY) | if many { R_MANY } else { 0 };
            e.r = g + 1;
            e.r_ep = me.ep;
            e.r_fe = me.fe;
            racy.then_some((e.w, "write"))
        }
        Acc::Write | Acc::Atomic => {
            let atomic = acc == Acc::Atomic;
            let ww = conflict(e.w, e.w_ep, e.w_fe) && !(atomic && e.flags & W_ATOMIC != 0);
            let rw = !atomic
                && (conflict(e.r, e.r_ep, e.r_fe)
                    || (e.r == g + 1 && e.flags & R_MANY != 0 && e.r_ep == me.ep));
            let out = if ww {
                Some((e.w, "write"))
            } else if rw {
                Some((e.r, "read"))
            } else {
                None
            };
            e.w = g + 1;
            e.w_ep = me.ep;
            e.w_fe = me.fe;
            e.flags = (e.flags & INIT) | if atomic { W_ATOMIC } else { 0 };
            if !atomic {
                e.r = 0;
            }
            out
        }
    }
}
