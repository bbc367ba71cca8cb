//! Launch setup (argument layout into param space, waves of resident blocks)
//! and the per-thread state accessors every other part of a launch uses.

use std::collections::HashMap;

use super::parse::{Kernel, Src, Sreg};
use super::{
    BlockSt, DEFAULT_SHARED_PER_BLOCK, Launch, LaunchStats, MAX_BLOCK, MAX_CLUSTER, MAX_GRID,
    MAX_THREADS_PER_BLOCK, ParamValue, RESIDENT_THREADS, Simulator, Spare, err,
};
use crate::error::{Error, Result};

impl Simulator {
    pub(super) fn launch_in(
        &mut self,
        kernels: &HashMap<String, Kernel>,
        kernel: &str,
        grid: [u32; 3],
        block: [u32; 3],
        shared_bytes: u32,
        params: &[ParamValue],
    ) -> Result<LaunchStats> {
        let k = kernels
            .get(kernel)
            .ok_or_else(|| err(kernel, "no such kernel in the loaded modules".into()))?;
        let tpb = self.check_shape(k, kernel, grid, block, shared_bytes)?;
        if params.len() != k.params.len() {
            return Err(err(
                kernel,
                format!(
                    "{} arguments given, the kernel declares {} parameters",
                    params.len(),
                    k.params.len()
                ),
            ));
        }
        let mut pbuf = vec![0u8; k.param_bytes as usize];
        for (i, (v, d)) in params.iter().zip(&k.params).enumerate() {
            let bytes: Vec<u8> = match *v {
                ParamValue::U32(x) => x.to_le_bytes().to_vec(),
                ParamValue::I32(x) => x.to_le_bytes().to_vec(),
                ParamValue::F32(x) => x.to_le_bytes().to_vec(),
                ParamValue::U64(x) | ParamValue::Ptr(x) => x.to_le_bytes().to_vec(),
                ParamValue::F64(x) => x.to_le_bytes().to_vec(),
            };
            if bytes.len() as u32 != d.size || d.align > bytes.len() as u32 {
                return Err(err(
                    kernel,
                    format!(
                        "argument {i} is {v:?} ({} bytes) but parameter {} is `{}` ({} bytes, align {})",
                        bytes.len(),
                        d.name,
                        d.ty,
                        d.size,
                        d.align
                    ),
                ));
            }
            pbuf[d.offset as usize..][..bytes.len()].copy_from_slice(&bytes);
        }
        self.launch_id += 1;
        let nblocks = grid[0] as u64 * grid[1] as u64 * grid[2] as u64;
        // Clusters lie along x (checked), so a cluster is `csize`
        // consecutive blocks, and a wave holds whole clusters.
        let csize = k.cluster.map_or(1, |c| c[0]);
        let per_wave = (RESIDENT_THREADS / tpb as u64 / u64::from(csize)).max(1) * u64::from(csize);
        let mut l = Launch {
            k,
            name: kernel,
            grid,
            block,
            tpb,
            nregs: k.nregs.max(1),
            params: pbuf,
            regs: std::mem::take(&mut self.spare.regs),
            pc: Vec::new(),
            st: Vec::new(),
            frames: Vec::new(),
            tps: tpb.next_multiple_of(32),
            blocks: (0..nblocks).map(|_| BlockSt::default()).collect(),
            shared: Vec::new(),
            cshared: Vec::new(),
            csize,
            cl_pending: Vec::new(),
            in_limbo: 0,
            first_block: 0,
            local: Vec::new(),
            launch_id: self.launch_id,
            shared_bytes: k.static_shared + shared_bytes,
            instructions: 0,
            rng: self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        };
        let mut b0 = 0;
        let mut ran = Ok(());
        while b0 < nblocks && ran.is_ok() {
            let b1 = (b0 + per_wave).min(nblocks);
            ran = l.run_wave(self, b0 as u32, b1 as u32);
            b0 = b1;
        }
        self.spare.regs = std::mem::take(&mut l.regs);
        l.spare_regions(&mut self.spare);
        ran?;
        Ok(LaunchStats {
            instructions: l.instructions,
            threads: nblocks * tpb as u64,
        })
    }
}

impl Simulator {
    /// The launch checks the driver makes before a kernel runs: grid and
    /// block dimensions, the kernel's `.maxntid` / `.reqntid`, and shared
    /// memory against the kernel's opt-in. Returns the threads per block.
    fn check_shape(
        &self,
        k: &Kernel,
        kernel: &str,
        grid: [u32; 3],
        block: [u32; 3],
        shared_bytes: u32,
    ) -> Result<u32> {
        let refuse = |what: String| {
            Err(err(
                kernel,
                format!("{what} (the driver refuses this launch)"),
            ))
        };
        if grid.contains(&0) || block.contains(&0) {
            return refuse(format!("empty launch: grid {grid:?}, block {block:?}"));
        }
        for (axis, ((&g, &b), (&gmax, &bmax))) in ["x", "y", "z"]
            .iter()
            .zip(grid.iter().zip(&block).zip(MAX_GRID.iter().zip(&MAX_BLOCK)))
        {
            if b > bmax {
                return refuse(format!("block {block:?}: {axis} is {b}, more than {bmax}"));
            }
            if g > gmax {
                return refuse(format!("grid {grid:?}: {axis} is {g}, more than {gmax}"));
            }
        }
        // At most 1024 x 1024 x 64 by the check above: no overflow.
        let tpb = block[0] * block[1] * block[2];
        if tpb > MAX_THREADS_PER_BLOCK {
            return refuse(format!(
                "block {block:?} has {tpb} threads, more than {MAX_THREADS_PER_BLOCK}"
            ));
        }
        if let Some(max) = k.maxntid
            && tpb > max
        {
            return refuse(format!(
                "block {block:?} has {tpb} threads, more than the kernel's .maxntid {max} \
                 (its __launch_bounds__)"
            ));
        }
        if let Some(req) = k.reqntid
            && req != block
        {
            return refuse(format!(
                "block {block:?} is not the kernel's .reqntid {req:?}"
            ));
        }
        if let Some(c) = k.cluster {
            let n = c[0] * c[1] * c[2];
            if n == 0 {
                return refuse(format!("cluster dims {c:?} are empty"));
            }
            if n > MAX_CLUSTER {
                return refuse(format!(
                    "clusters of {n} blocks ({c:?}), more than the portable {MAX_CLUSTER} \
                     (larger ones need the non-portable cluster attribute, which the \
                     simulator does not model)"
                ));
            }
            if let Some(axis) = (0..3).find(|&i| !grid[i].is_multiple_of(c[i])) {
                return refuse(format!(
                    "grid {grid:?} is not a whole number of clusters {c:?} along {}",
                    ["x", "y", "z"][axis]
                ));
            }
            if c[1] != 1 || c[2] != 1 {
                return Err(err(
                    kernel,
                    format!(
                        "clusters {c:?}: the simulator runs clusters along x only \
                         (.reqnctapercluster N, 1, 1)"
                    ),
                ));
            }
        }
        let allowed = self.dynamic_shared_of(kernel, k);
        if shared_bytes > allowed {
            return refuse(format!(
                "{shared_bytes} bytes of dynamic shared memory, more than the {allowed} this \
                 kernel may use ({} static; above {DEFAULT_SHARED_PER_BLOCK} bytes in all a \
                 kernel must opt in first, see Simulator::set_max_dynamic_shared)",
                k.static_shared
            ));
        }
        Ok(tpb)
    }
}

impl<'k> Launch<'k> {
    /// Its blocks' shared and local memory into `spare`, for the next wave
    /// or launch.
    pub(super) fn spare_regions(&mut self, spare: &mut Spare) {
        spare.shared.append(&mut self.shared);
        spare.cshared.append(&mut self.cshared);
        spare.local.append(&mut self.local);
    }

    pub(super) fn where_(&self, t: usize) -> String {
        let (b, tl) = self.coords(self.gid(t));
        let line = self
            .k
            .insts
            .get(self.pc[t] as usize)
            .map(|i| i.line)
            .unwrap_or(0);
        format!("block {b}, thread {tl}, PTX line {line}")
    }
    pub(super) fn who(&self, g: u32) -> String {
        let (b, tl) = self.coords(g);
        format!("thread {tl} of block {b}")
    }
    /// `(block, thread)` of global thread `g`, each as `(x, y, z)`.
    fn coords(&self, g: u32) -> (String, String) {
        let xyz =
            |i: u32, [x, y, _]: [u32; 3]| format!("({}, {}, {})", i % x, i / x % y, i / (x * y));
        (xyz(g / self.tpb, self.grid), xyz(g % self.tpb, self.block))
    }
    pub(super) fn fail(&self, t: usize, what: String) -> Error {
        err(self.name, format!("{}: {what}", self.where_(t)))
    }

    /// The grid-wide thread index of slot `t`.
    pub(super) fn gid(&self, t: usize) -> u32 {
        self.block_of(t) as u32 * self.tpb + self.local_tid(t)
    }
    /// Where register `r` of slot `t` lives: registers are stored warp by
    /// warp, one register's 32 lanes side by side, so the lanes of a warp
    /// that run one instruction together touch adjacent words.
    #[inline(always)]
    pub(super) fn reg(&self, t: usize, r: u16) -> usize {
        ((t >> 5) * self.nregs + r as usize) * 32 + (t & 31)
    }

    #[inline(always)]
    pub(super) fn rd(&self, t: usize, s: Src) -> u64 {
        match s {
            Src::R(r) => self.regs[self.reg(t, r)],
            Src::Imm(v) => v,
            Src::S(sr) => {
                let b = self.block_of(t) as u32;
                let tl = self.local_tid(t);
                let dim3 = |v: u32, d: [u32; 3], i: u8| match i {
                    0 => v % d[0],
                    1 => v / d[0] % d[1],
                    _ => v / (d[0] * d[1]),
                } as u64;
                match sr {
                    Sreg::Tid(i) => dim3(tl, self.block, i),
                    Sreg::Ntid(i) => self.block[i as usize] as u64,
                    Sreg::Ctaid(i) => dim3(b, self.grid, i),
                    Sreg::Nctaid(i) => self.grid[i as usize] as u64,
                    Sreg::LaneId => (tl % 32) as u64,
                    Sreg::WarpId => (tl / 32) as u64,
                    // Clusters lie along x (checked at launch).
                    Sreg::ClusterCtarank => (b % self.csize) as u64,
                    Sreg::ClusterNctarank => self.csize as u64,
                    Sreg::ClusterCtaid(0) => (dim3(b, self.grid, 0) as u32 % self.csize) as u64,
                    Sreg::ClusterCtaid(_) => 0,
                    Sreg::ClusterNctaid(0) => self.csize as u64,
                    Sreg::ClusterNctaid(_) => 1,
                    Sreg::ClusterId(0) => (dim3(b, self.grid, 0) as u32 / self.csize) as u64,
                    Sreg::ClusterId(i) => dim3(b, self.grid, i),
                    Sreg::NclusterId(0) => (self.grid[0] / self.csize) as u64,
                    Sreg::NclusterId(i) => self.grid[i as usize] as u64,
                    Sreg::IsExplicitCluster => self.k.cluster.is_some() as u64,
                }
            }
        }
    }
    #[inline(always)]
    pub(super) fn wr(&mut self, t: usize, d: u16, v: u64) {
        let i = self.reg(t, d);
        self.regs[i] = v;
    }
}
