//! One checked scalar memory access: address-space resolution, per-allocation
//! bounds, uninitialised reads and the race shadow (see the module header).

use super::parse::Space;
use super::shadow::{Accessor, Entry, SPLIT};
use super::{Acc, BlockSt, LOCAL_WIN, Launch, Region, SHARED_WIN, Simulator, WIN_SIZE};
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
        let (blocks, tpb) = (&self.blocks, self.tpb);
        // The place is named only when an access fails: formatting it on
        // every access cost more than the access.
        let (done, place) = match space {
            Space::Shared => {
                let r = &mut self.shared[me.block - self.first_block as usize];
                if a + w as u64 > r.data.len() as u64 {
                    let n = r.data.len();
                    return Err(self.fail(t, format!("out-of-bounds shared-memory access of {w} bytes at shared address {a:#x} (the block has {n} bytes of shared memory)")));
                }
                (
                    access(r, a, w, acc, val, Some((blocks, tpb, me))),
                    Place::Shared,
                )
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
                (
                    access(&mut self.local[t], a, w, acc, val, None),
                    Place::Local,
                )
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
                        let off = a - b;
                        (
                            access(r, off, w, acc, val, Some((blocks, tpb, me))),
                            Place::Global(a),
                        )
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
        match done {
            Ok(v) => Ok(v),
            Err(Fault::Uninit(i)) => Err(self.fail(
                t,
                format!("read of never-written memory at {place} (byte offset {i})"),
            )),
            Err(Fault::Race(i, prev, kind)) => Err(self.race_error(t, place, i, prev, kind, acc)),
        }
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

/// Why a checked access failed, where in its region.
enum Fault {
    /// A read of this byte, never written.
    Uninit(usize),
    /// Byte, the conflicting accessor's index + 1, and its access's kind.
    Race(usize, u32, &'static str),
}

/// The `w`-byte access `acc` at offset `off` of `region` (in bounds),
/// race-checked when `shadow` gives the accessor; returns the old value.
fn access<E: Entry>(
    region: &mut Region<E>,
    off: u64,
    w: u32,
    acc: Acc,
    val: u64,
    shadow: Option<(&[BlockSt], u32, Accessor)>,
) -> std::result::Result<u64, Fault> {
    let o = off as usize;
    let wu = w as usize;
    if acc != Acc::Write
        && let Some(first) = region.init[o..o + wu].iter().position(|&x| x == 0)
    {
        return Err(Fault::Uninit(o + first));
    }
    if let Some((blocks, tpb, me)) = shadow
        && acc != Acc::AtomicLoad
    {
        region.ensure_shadow();
        let check = |e: &mut E| e.check(blocks, tpb, me, acc);
        let mut i = o;
        while i < o + wu {
            let word = i / 4;
            let n = (o + wu).min(word * 4 + 4) - i;
            let entry = &mut region.shadow[word];
            if n == 4 && entry.flags() & SPLIT == 0 {
                if let Some((prev, kind)) = check(entry) {
                    return Err(Fault::Race(i, prev, kind));
                }
            } else {
                let bytes = region.split.entry(word).or_insert_with(|| {
                    let mut e = *entry;
                    e.set_flags(e.flags() & !SPLIT);
                    [e; 4]
                });
                entry.set_flags(entry.flags() | SPLIT);
                for j in i..i + n {
                    if let Some((prev, kind)) = check(&mut bytes[j - word * 4]) {
                        return Err(Fault::Race(j, prev, kind));
                    }
                }
            }
            i += n;
        }
    }
    let mut old = [0u8; 8];
    old[..wu].copy_from_slice(&region.data[o..o + wu]);
    if matches!(acc, Acc::Write | Acc::Atomic) {
        region.data[o..o + wu].copy_from_slice(&val.to_le_bytes()[..wu]);
        region.init[o..o + wu].fill(1);
    }
    Ok(u64::from_le_bytes(old))
}
