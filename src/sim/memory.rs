//! One checked scalar memory access: address-space resolution, per-allocation
//! bounds, uninitialised reads and the race shadow (see the module header).

use super::parse::Space;
use super::{
    Acc, BlockSt, LOCAL_WIN, Launch, R_MANY, Region, SHARED_WIN, SPLIT, Sh, Simulator, W_ATOMIC,
    WIN_SIZE,
};
use crate::error::{Error, Result};

impl<'k> Launch<'k> {
    /// One scalar memory access with all checks; returns the loaded value (reads/atomics).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn mem(
        &mut self,
        sim: &mut Simulator,
        t: usize,
        space: Space,
        addr: u64,
        w: u32,
        acc: Acc,
        val: u64,
    ) -> Result<u64> {
        let (space, a) = match space {
            Space::Generic if (SHARED_WIN..SHARED_WIN + WIN_SIZE).contains(&addr) => {
                (Space::Shared, addr - SHARED_WIN)
            }
            Space::Generic if (LOCAL_WIN..LOCAL_WIN + WIN_SIZE).contains(&addr) => {
                (Space::Local, addr - LOCAL_WIN)
            }
            Space::Generic => (Space::Global, addr),
            s => (s, addr),
        };
        if space == Space::Param {
            if !matches!(acc, Acc::Read) {
                return Err(self.fail(t, "store to kernel parameter space".into()));
            }
            let end = a + w as u64;
            if end > self.params.len() as u64 {
                return Err(self.fail(
                    t,
                    format!(
                        "param read at offset {a} past the {} parameter bytes",
                        self.params.len()
                    ),
                ));
            }
            let mut v = [0u8; 8];
            v[..w as usize].copy_from_slice(&self.params[a as usize..end as usize]);
            return Ok(u64::from_le_bytes(v));
        }
        let me = self.accessor(t);
        // The place is named only when an access fails: formatting it on
        // every access cost more than the access.
        let (region, off, place): (&mut Region, u64, Place) = match space {
            Space::Shared => {
                let r = &mut self.shared[me.block - self.first_block as usize];
                if a + w as u64 > r.data.len() as u64 {
                    let n = r.data.len();
                    return Err(self.fail(t, format!("out-of-bounds shared-memory access of {w} bytes at shared address {a:#x} (the block has {n} bytes of shared memory)")));
                }
                (r, a, Place::Shared)
            }
            Space::Local => {
                if t >= self.local.len() {
                    return Err(self.fail(
                        t,
                        format!(
                            "local-memory access at {a:#x} but the kernel declares no local memory"
                        ),
                    ));
                }
                let n = self.local[t].data.len();
                if a + w as u64 > n as u64 {
                    return Err(self.fail(t, format!("out-of-bounds local-memory access at {a:#x} ({n} bytes of local memory)")));
                }
                (&mut self.local[t], a, Place::Local)
            }
            Space::Const => {
                return Err(self.fail(
                    t,
                    "const-space access: no module `.const` variables are supported".into(),
                ));
            }
            _ => {
                let found = sim.allocs.range_mut(..=a).next_back();
                match found {
                    Some((b, r)) if a + w as u64 <= b + r.data.len() as u64 => {
                        let b = *b;
                        (r, a - b, Place::Global(a))
                    }
                    Some((b, r)) if a < b + r.data.len() as u64 + 256 => {
                        let (b, n) = (*b, r.data.len());
                        return Err(self.fail(t, format!("out-of-bounds global access of {w} bytes at {a:#x}: {} bytes past the end of the {n}-byte allocation at {b:#x}", a + w as u64 - (b + n as u64))));
                    }
                    _ => {
                        return Err(self.fail(
                            t,
                            format!(
                                "global access of {w} bytes at {a:#x}, which is in no allocation"
                            ),
                        ));
                    }
                }
            }
        };
        let o = off as usize;
        let wu = w as usize;
        if acc != Acc::Write
            && let Some(first) = region.init[o..o + wu].iter().position(|&x| x == 0)
        {
            let what = format!("{place} (byte offset {})", o + first);
            return Err(self.fail(t, format!("read of never-written memory at {what}")));
        }
        let mut race = None;
        if space != Space::Local && acc != Acc::AtomicLoad {
            region.ensure_shadow();
            let (blocks, tpb) = (&self.blocks, self.tpb);
            let check = |e: &mut Sh| check(blocks, tpb, me, acc, e);
            let mut i = o;
            'words: while i < o + wu {
                let word = i / 4;
                let n = (o + wu).min(word * 4 + 4) - i;
                let entry = &mut region.shadow[word];
                if n == 4 && entry.flags & SPLIT == 0 {
                    if let Some((prev, kind)) = check(entry) {
                        race = Some((i, prev, kind));
                        break;
                    }
                } else {
                    let bytes = region.split.entry(word).or_insert_with(|| {
                        let mut e = *entry;
                        e.flags &= !SPLIT;
                        [e; 4]
                    });
                    entry.flags |= SPLIT;
                    for j in i..i + n {
                        if let Some((prev, kind)) = check(&mut bytes[j - word * 4]) {
                            race = Some((j, prev, kind));
                            break 'words;
                        }
                    }
                }
                i += n;
            }
        }
        if race.is_none() {
            let mut old = [0u8; 8];
            old[..wu].copy_from_slice(&region.data[o..o + wu]);
            if matches!(acc, Acc::Write | Acc::Atomic) {
                region.data[o..o + wu].copy_from_slice(&val.to_le_bytes()[..wu]);
                region.init[o..o + wu].fill(1);
            }
            return Ok(u64::from_le_bytes(old));
        }
        let (i, prev, kind) = race.expect("checked above");
        Err(self.race_error(t, place, i, prev, kind, acc))
    }

    /// The accessor `t` as the race shadow records it.
    #[inline(always)]
    pub(super) fn accessor(&self, t: usize) -> Accessor {
        let block = self.block_of(t);
        Accessor {
            g: self.gid(t),
            block,
            launch: self.launch_id,
            ep: self.blocks[block].bar_epoch,
            fe: self.blocks[block].fence_epoch,
        }
    }

    /// The error for `t`'s access `acc` at byte `i` of `place`, which
    /// conflicts with a `kind` access by accessor `prev` (its index + 1).
    pub(super) fn race_error(
        &self,
        t: usize,
        place: Place,
        i: usize,
        prev: u32,
        kind: &str,
        acc: Acc,
    ) -> Error {
        let verb = match acc {
            Acc::Read | Acc::AtomicLoad => "read",
            Acc::Write => "write",
            Acc::Atomic => "atomic",
        };
        let other = if prev == self.gid(t) + 1 {
            "other threads".to_string()
        } else {
            self.who(prev - 1)
        };
        self.fail(
            t,
            format!("data race on {place} (byte offset {i}): this {verb} conflicts with a {kind} by {other} with no barrier (bar.sync in a block, gpu-scope fence across blocks) between them"),
        )
    }
}

/// A thread making an access, as the race shadow records it: its grid-wide
/// index, its block, the launch, and its block's barrier and fence epochs.
#[derive(Clone, Copy)]
pub(super) struct Accessor {
    g: u32,
    pub block: usize,
    launch: u32,
    ep: u32,
    fe: u32,
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
pub(super) fn check(
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
            e.flags = if atomic { W_ATOMIC } else { 0 };
            if !atomic {
                e.r = 0;
            }
            out
        }
    }
}

/// Where an access went, for its error message.
#[derive(Clone, Copy)]
pub(super) enum Place {
    Shared,
    Local,
    Global(u64),
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Shared => f.write_str("shared"),
            Place::Local => f.write_str("local"),
            Place::Global(a) => write!(f, "global {a:#x}"),
        }
    }
}
