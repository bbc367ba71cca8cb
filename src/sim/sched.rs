//! Scheduling: round-robin slices over the resident threads (shuffled when
//! seeded), deadlock and endless-loop detection, and `bar.sync` release.

use super::{Launch, RESIDENT_THREADS, Region, SLICE, Simulator, TState, err};
use crate::error::Result;

impl<'k> Launch<'k> {
    pub(super) fn run_wave(&mut self, sim: &mut Simulator, b0: u32, b1: u32) -> Result<()> {
        let n = ((b1 - b0) * self.tpb) as usize;
        self.first = b0 * self.tpb;
        self.first_block = b0;
        self.regs = vec![0; n * self.nregs];
        self.pc = vec![0; n];
        self.st = vec![TState::Run; n];
        self.frames = vec![Vec::new(); n];
        self.shared = (b0..b1)
            .map(|_| Region::new(self.shared_bytes as usize, false))
            .collect();
        self.local = (0..if self.k.local_bytes > 0 { n } else { 0 })
            .map(|_| Region::new(self.k.local_bytes as usize, false))
            .collect();
        let mut order: Vec<usize> = (0..n).collect();
        let mut live = n;
        while live > 0 {
            if sim.seed != 0 {
                for i in (1..order.len()).rev() {
                    self.rng ^= self.rng << 13;
                    self.rng ^= self.rng >> 7;
                    self.rng ^= self.rng << 17;
                    order.swap(i, (self.rng % (i as u64 + 1)) as usize);
                }
            }
            let before = self.instructions;
            let mut released = false;
            for &t in &order {
                let mut budget = SLICE;
                while budget > 0 && self.st[t] == TState::Run {
                    budget -= 1;
                    self.instructions += 1;
                    released |= self.step(sim, t)?;
                }
            }
            live = self.st.iter().filter(|s| **s != TState::Done).count();
            if self.instructions > sim.max_instructions {
                return Err(err(
                    self.name,
                    format!(
                        "ran more than {} thread-instructions (an endless spin loop, or a grid barrier across more blocks than can be resident: {} threads)",
                        sim.max_instructions, RESIDENT_THREADS
                    ),
                ));
            }
            if live > 0 && self.instructions == before && !released {
                let t = (0..n).find(|&t| self.st[t] != TState::Done).unwrap_or(0);
                return Err(self.fail(t, format!("deadlock: no thread can proceed (this one waits at {:?}; a barrier or warp collective that not all threads reach)", self.st[t])));
            }
        }
        Ok(())
    }

    pub(super) fn block_of(&self, t: usize) -> usize {
        ((self.first + t as u32) / self.tpb) as usize
    }
    pub(super) fn local_tid(&self, t: usize) -> u32 {
        (self.first + t as u32) % self.tpb
    }

    pub(super) fn try_release_bar(&mut self, b: usize) -> bool {
        let bs = &mut self.blocks[b];
        if bs.at_bar == 0 || bs.at_bar + bs.done < self.tpb {
            return false;
        }
        bs.at_bar = 0;
        bs.bar_epoch += 1;
        let t0 = (b as u32 * self.tpb - self.first) as usize;
        for t in t0..t0 + self.tpb as usize {
            if self.st[t] == TState::Bar {
                self.st[t] = TState::Run;
                self.pc[t] += 1;
            }
        }
        true
    }
}
