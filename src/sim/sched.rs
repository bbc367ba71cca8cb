//! Scheduling: round-robin slices over the resident warps (shuffled when
//! seeded), lanes of a warp in lockstep, deadlock and endless-loop detection, and `bar.sync` release.

use super::shadow::{self, SWEEP_EVERY};
use super::{
    BLOCK_PASSES, Launch, REG_POISON, RESIDENT_THREADS, SLICE, Simulator, TState, err, regions,
};
use crate::error::Result;

impl<'k> Launch<'k> {
    pub(super) fn run_wave(&mut self, sim: &mut Simulator, b0: u32, b1: u32) -> Result<()> {
        let tps = self.tps as usize;
        let n = (b1 - b0) as usize * tps;
        self.first_block = b0;
        if self.regs.len() < n * self.nregs {
            self.regs.resize(n * self.nregs, REG_POISON);
        }
        self.pc = vec![0; n];
        self.st = (0..n)
            .map(|t| {
                if t % tps < self.tpb as usize {
                    TState::Run
                } else {
                    TState::Done
                }
            })
            .collect();
        self.frames = vec![Vec::new(); n];
        self.cl_pending = vec![0; n];
        let bytes = self.shared_bytes as usize;
        let spare = &mut sim.spare;
        self.spare_regions(spare);
        let nb = (b1 - b0) as usize;
        if self.csize > 1 {
            self.cshared = regions(&mut spare.cshared, nb, bytes);
        } else {
            self.shared = regions(&mut spare.shared, nb, bytes);
        }
        let local = self.k.local_bytes as usize;
        self.local = regions(&mut spare.local, if local > 0 { n } else { 0 }, local);
        let wpb = tps / 32;
        let mut blocks: Vec<usize> = (0..nb).collect();
        let mut warps: Vec<usize> = (0..wpb).collect();
        let mut live = n;
        while live > 0 {
            self.shuffle(sim, &mut blocks);
            let before = self.instructions;
            let mut released = false;
            for &b in &blocks {
                // A block runs for several passes over its warps before
                // the next one: its shared memory, registers and their
                // shadow stay in the host's cache for many steps instead
                // of one (the persistent kernels' blocks never wait on one
                // another; a block that spins on another's flag yields
                // after these passes).
                for _ in 0..BLOCK_PASSES {
                    let (at, mut moved) = (self.instructions, false);
                    self.shuffle(sim, &mut warps);
                    for &w in &warps {
                        moved |= self.run_warp(sim, (b * wpb + w) * 32)?;
                    }
                    released |= moved;
                    if self.instructions == at && !moved
                        || self.blocks[b0 as usize + b].done == self.tpb
                    {
                        break;
                    }
                    if self.instructions > sim.max_instructions {
                        return Err(err(
                            self.name,
                            format!(
                                "ran more than {} thread-instructions (an endless spin loop, or a grid barrier across more blocks than can be resident: {} threads)",
                                sim.max_instructions, RESIDENT_THREADS
                            ),
                        ));
                    }
                }
            }
            live = self.st.iter().filter(|s| **s != TState::Done).count();
            if live > 0 && self.instructions == before && !released {
                let t = (0..n).find(|&t| self.st[t] != TState::Done).unwrap_or(0);
                return Err(self.fail(t, format!("deadlock: no thread can proceed (this one waits at {:?}; a barrier or warp collective that not all threads reach)", self.st[t])));
            }
        }
        Ok(())
    }

    /// Reorders `v` at random when the simulator is seeded.
    fn shuffle(&mut self, sim: &Simulator, v: &mut [usize]) {
        if sim.seed != 0 {
            for i in (1..v.len()).rev() {
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 7;
                self.rng ^= self.rng << 17;
                v.swap(i, (self.rng % (i as u64 + 1)) as usize);
            }
        }
    }

    /// Runs the warp whose lane 0 is slot `w0` for up to [`SLICE`] steps.
    /// A step executes one instruction for every running lane at the
    /// lowest program counter among them, so lanes that took different
    /// branches run apart and run together again where their paths meet
    /// (the reconvergence a GPU's stack gives structured code). Returns true
    /// when it released waiting threads.
    fn run_warp(&mut self, sim: &mut Simulator, w0: usize) -> Result<bool> {
        let mut released = false;
        // The group to run next when the last step left it known: every
        // running lane was in it and they moved on together.
        let mut known: Option<(u32, u32)> = None;
        for _ in 0..SLICE {
            let (pc, lanes, all) = match known {
                Some((pc, lanes)) => (pc, lanes, true),
                None => {
                    let mut pc = u32::MAX;
                    let (mut lanes, mut running) = (0u32, 0u32);
                    for l in 0..32 {
                        let t = w0 + l;
                        if self.st[t] == TState::Run {
                            running |= 1 << l;
                            let p = self.pc[t];
                            if p < pc {
                                pc = p;
                                lanes = 0;
                            }
                            if p == pc {
                                lanes |= 1 << l;
                            }
                        }
                    }
                    if lanes == 0 {
                        break;
                    }
                    (pc, lanes, lanes == running)
                }
            };
            let s = self.step_group(sim, w0, lanes, pc)?;
            released |= s.released;
            // A step that leaves its lanes together changed no lane's
            // state, so a group of all running lanes stays all of them.
            known = s.together_at.filter(|_| all).map(|next| (next, lanes));
        }
        Ok(released)
    }

    /// The grid-wide index of slot `t`'s block.
    pub(super) fn block_of(&self, t: usize) -> usize {
        self.first_block as usize + t / self.tps as usize
    }
    /// Slot `t`'s thread index within its block.
    pub(super) fn local_tid(&self, t: usize) -> u32 {
        (t % self.tps as usize) as u32
    }

    pub(super) fn try_release_bar(&mut self, b: usize) -> bool {
        let bs = &mut self.blocks[b];
        if bs.at_bar == 0 || bs.at_bar + bs.done < self.tpb {
            return false;
        }
        bs.at_bar = 0;
        self.next_bar_epoch(b);
        let t0 = (b - self.first_block as usize) * self.tps as usize;
        for t in t0..t0 + self.tpb as usize {
            if self.st[t] == TState::Bar {
                self.st[t] = TState::Run;
                self.pc[t] += 1;
            }
        }
        true
    }

    /// Block `b`'s threads all passed a barrier: accesses before it no
    /// longer conflict with accesses after it.
    fn next_bar_epoch(&mut self, b: usize) {
        let bs = &mut self.blocks[b];
        bs.bar_epoch += 1;
        if bs.bar_epoch.is_multiple_of(SWEEP_EVERY) && self.csize == 1 {
            let now = bs.bar_epoch;
            let r = &mut self.shared[b - self.first_block as usize];
            shadow::sweep(
                r.shadow.iter_mut().chain(r.split.values_mut().flatten()),
                now,
            );
        }
    }

    /// The grid-wide indices of the blocks of `b`'s cluster.
    pub(super) fn cluster_of(&self, b: usize) -> std::ops::Range<usize> {
        let first = b - b % self.csize as usize;
        first..first + self.csize as usize
    }

    /// `barrier.cluster.arrive` by slot `t`; true when it completed the phase.
    pub(super) fn cluster_arrive(&mut self, t: usize) -> Result<bool> {
        if self.cl_pending[t] != 0 {
            return Err(self.fail(
                t,
                "barrier.cluster.arrive again before this thread's barrier.cluster.wait".into(),
            ));
        }
        let b = self.block_of(t);
        self.cl_pending[t] = self.blocks[b].cl_phase + 1;
        self.blocks[b].arrived += 1;
        self.in_limbo += 1;
        Ok(self.try_release_cluster(b))
    }

    /// `barrier.cluster.wait` by slot `t`: on when the phase it arrived in
    /// is complete, else it waits (state [`TState::ClusterWait`]).
    pub(super) fn cluster_wait(&mut self, t: usize) -> Result<bool> {
        let pending = self.cl_pending[t];
        if pending == 0 {
            return Err(self.fail(
                t,
                "barrier.cluster.wait without a barrier.cluster.arrive before it".into(),
            ));
        }
        if self.blocks[self.block_of(t)].cl_phase >= pending {
            self.cl_pending[t] = 0;
            self.in_limbo -= 1;
            self.pc[t] += 1;
        } else {
            self.st[t] = TState::ClusterWait;
        }
        Ok(false)
    }

    /// Slot `t` exits: an arrival it has not waited for stops counting
    /// (the barrier waits for the threads that have not exited).
    pub(super) fn cluster_exit(&mut self, t: usize) {
        let pending = std::mem::take(&mut self.cl_pending[t]);
        if pending != 0 {
            self.in_limbo -= 1;
            let b = self.block_of(t);
            if pending == self.blocks[b].cl_phase + 1 {
                self.blocks[b].arrived -= 1;
            }
        }
    }

    /// Completes the cluster barrier's phase of block `b`'s cluster when
    /// every thread of it that has not exited has arrived: every block's
    /// barrier and fence epochs move on (the barrier orders the cluster's
    /// shared and global accesses, `.release` / `.acquire`), and its
    /// waiting threads run on.
    pub(super) fn try_release_cluster(&mut self, b: usize) -> bool {
        let members = self.cluster_of(b);
        let (arrived, done) = members.clone().fold((0, 0), |(a, d), m| {
            (a + self.blocks[m].arrived, d + self.blocks[m].done)
        });
        if arrived == 0 || arrived + done < self.csize * self.tpb {
            return false;
        }
        for m in members {
            self.blocks[m].arrived = 0;
            self.blocks[m].cl_phase += 1;
            self.blocks[m].fence_epoch += 1;
            self.next_bar_epoch(m);
            let t0 = (m - self.first_block as usize) * self.tps as usize;
            for t in t0..t0 + self.tpb as usize {
                if self.st[t] == TState::ClusterWait {
                    self.st[t] = TState::Run;
                    self.cl_pending[t] = 0;
                    self.in_limbo -= 1;
                    self.pc[t] += 1;
                }
            }
        }
        true
    }
}
