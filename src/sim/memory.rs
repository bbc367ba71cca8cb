//! One checked scalar memory access: address-space resolution, per-allocation
//! bounds, uninitialised reads and the race shadow (see the module header).

use super::parse::Space;
use super::shadow::{Accessor, Entry, SPLIT};
use super::{
    Acc, BlockSt, LOCAL_WIN, Launch, Region, SHARED_WIN, Simulator, WIN_SIZE, cluster_split,
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
            // The generic window holds the `.shared::cluster` one.
            Space::Generic if (SHARED_WIN..SHARED_WIN + WIN_SIZE).contains(&addr) => {
                (Space::Cluster, addr - SHARED_WIN)
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
            Space::Shared | Space::Cluster => {
                let (b, off) = self.shared_target(t, space, a, w)?;
                if self.cl_pending[t] != 0 {
                    return Err(self.fail(t, "shared-memory access between barrier.cluster.arrive and barrier.cluster.wait: the simulator's race check does not model accesses there (wait first)".into()));
                }
                let wb = b - self.first_block as usize;
                let shadow = Some((&blocks[..], tpb, me));
                let done = if self.csize > 1 {
                    access(&mut self.cshared[wb], off, w, acc, val, shadow)
                } else {
                    access(&mut self.shared[wb], off, w, acc, val, shadow)
                };
                let place = if b == me.block {
                    Place::Shared
                } else {
                    Place::SharedOf((b % self.csize as usize) as u32)
                };
                (done, place)
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

    /// The block (grid-wide) and offset of a `w`-byte shared access by
    /// slot `t` at address `a` of `space` (`.shared`: the block's own;
    /// `.shared::cluster`: any block's of the cluster, see
    /// [`super::CLUSTER_SHIFT`]), bounds-checked.
    pub(super) fn shared_target(
        &self,
        t: usize,
        space: Space,
        a: u64,
        w: u32,
    ) -> Result<(usize, u64)> {
        let me = self.block_of(t);
        let (b, off) = match (space, cluster_split(a)) {
            (Space::Cluster, (Some(rank), off)) => {
                if rank >= u64::from(self.csize) {
                    return Err(self.fail(t, format!("shared::cluster access at {a:#x}: rank {rank} is outside the cluster of {} blocks", self.csize)));
                }
                (self.cluster_of(me).start + rank as usize, off)
            }
            _ => (me, a),
        };
        if b != me && self.blocks[b].done == self.tpb {
            return Err(self.fail(t, format!("shared::cluster access at {a:#x} to block rank {} of the cluster, which has exited: its shared memory is gone (a block whose shared memory others use must wait for them, e.g. a cluster barrier before it exits)", b % self.csize as usize)));
        }
        let n = self.shared_bytes as u64;
        if off + w as u64 > n {
            let whose = if b == me {
                "the block".to_string()
            } else {
                format!("block rank {} of the cluster", b % self.csize as usize)
            };
            return Err(self.fail(t, format!("out-of-bounds shared-memory access of {w} bytes at shared address {a:#x} ({whose} has {n} bytes of shared memory)")));
        }
        Ok((b, off))
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
            format!("data race on {place} (byte offset {i}): this {verb} conflicts with a {kind} by {other} with no barrier between them (bar.sync in a block, barrier.cluster in a cluster, a gpu-scope fence across blocks)"),
        )
    }
}

/// Where an access went, for its error message.
#[derive(Clone, Copy)]
pub(super) enum Place {
    Shared,
    /// Another block's, by its rank in the cluster.
    SharedOf(u32),
    Local,
    Global(u64),
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Shared => f.write_str("shared"),
            Place::SharedOf(r) => write!(f, "shared (block rank {r} of the cluster)"),
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
