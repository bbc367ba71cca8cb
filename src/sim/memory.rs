//! One checked scalar memory access: address-space resolution, per-allocation
//! bounds, uninitialised reads and the race shadow (see the module header).

use super::parse::Space;
use super::{
    Acc, LOCAL_WIN, Launch, R_MANY, Region, SHARED_WIN, SPLIT, Sh, Simulator, W_ATOMIC, WIN_SIZE,
};
use crate::error::Result;

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
        let g = self.first + t as u32;
        let me_block = (g / self.tpb) as usize;
        // The place is named only when an access fails: formatting it on
        // every access cost more than the access.
        let (region, off, place): (&mut Region, u64, Place) = match space {
            Space::Shared => {
                let r = &mut self.shared[me_block - self.first_block as usize];
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
            if region.shadow.is_empty() {
                region.shadow = vec![Sh::default(); region.data.len().div_ceil(4)];
            }
            let lid = self.launch_id;
            let (blocks, tpb) = (&self.blocks, self.tpb);
            let conflict = |prev: u32, ep: u32, fe: u32| -> bool {
                if prev == 0 || prev - 1 == g {
                    return false;
                }
                let pb = ((prev - 1) / tpb) as usize;
                if pb == me_block {
                    blocks[pb].bar_epoch == ep
                } else {
                    blocks[pb].fence_epoch == fe
                }
            };
            let my_ep = blocks[me_block].bar_epoch;
            let my_fe = blocks[me_block].fence_epoch;
            // One byte's (or whole word's) entry: checks this access against
            // the last writer and readers, then records it.
            let check = |e: &mut Sh| -> Option<(u32, &'static str)> {
                if e.launch != lid {
                    *e = Sh {
                        launch: lid,
                        ..Sh::default()
                    };
                }
                match acc {
                    Acc::Read | Acc::AtomicLoad => {
                        let racy = conflict(e.w, e.w_ep, e.w_fe);
                        let many = (e.r != 0 && e.r - 1 != g && conflict(e.r, e.r_ep, e.r_fe))
                            || (e.r == g + 1 && e.flags & R_MANY != 0 && e.r_ep == my_ep);
                        e.flags = (e.flags & !R_MANY) | if many { R_MANY } else { 0 };
                        e.r = g + 1;
                        e.r_ep = my_ep;
                        e.r_fe = my_fe;
                        racy.then_some((e.w, "write"))
                    }
                    Acc::Write | Acc::Atomic => {
                        let atomic = acc == Acc::Atomic;
                        let ww =
                            conflict(e.w, e.w_ep, e.w_fe) && !(atomic && e.flags & W_ATOMIC != 0);
                        let rw = !atomic
                            && (conflict(e.r, e.r_ep, e.r_fe)
                                || (e.r == g + 1 && e.flags & R_MANY != 0 && e.r_ep == my_ep));
                        let out = if ww {
                            Some((e.w, "write"))
                        } else if rw {
                            Some((e.r, "read"))
                        } else {
                            None
                        };
                        e.w = g + 1;
                        e.w_ep = my_ep;
                        e.w_fe = my_fe;
                        e.flags = if atomic { W_ATOMIC } else { 0 };
                        if !atomic {
                            e.r = 0;
                        }
                        out
                    }
                }
            };
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
        let verb = match acc {
            Acc::Read | Acc::AtomicLoad => "read",
            Acc::Write => "write",
            Acc::Atomic => "atomic",
        };
        let other = if prev == g + 1 {
            "other threads".to_string()
        } else {
            self.who(prev - 1)
        };
        Err(self.fail(
            t,
            format!("data race on {place} (byte offset {i}): this {verb} conflicts with a {kind} by {other} with no barrier (bar.sync in a block, gpu-scope fence across blocks) between them"),
        ))
    }
}

/// Where an access went, for its error message.
#[derive(Clone, Copy)]
enum Place {
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
