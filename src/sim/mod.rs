//! A PTX simulator: runs the kernels nvcc emitted on the CPU, one program
//! counter and register file per thread, and fails loudly on out-of-bounds,
//! misaligned, uninitialised and racy memory accesses.
//!
//! Scheduling: threads run in slices of [`SLICE`] instructions, round-robin
//! (order reshuffled every round when the seed is non-zero). All blocks of a
//! grid are resident and interleaved together when the grid has at most
//! [`RESIDENT_THREADS`] threads, so spin-wait grid barriers make progress;
//! bigger grids run in waves of that many threads (a grid barrier across waves
//! would spin until the instruction limit and is reported as such). A round in
//! which no thread can move is a deadlock error.
//!
//! Race model: per byte, the last writer and last reader with the barrier epoch
//! (`bar.sync` count of its block) and fence epoch (gpu-scope fences of its
//! block) at the time. Two accesses by threads of one block conflict when no
//! `bar.sync` separates them; by threads of different blocks, when the earlier
//! accessor's block has executed no gpu-scope fence (`membar.gl`,
//! `fence.*.gpu`) since — a heuristic that accepts fence-published data behind
//! a grid barrier. Accesses that are all atomic never conflict.

mod parse;

use std::collections::{BTreeMap, HashMap};

use crate::error::{Error, Result};
use parse::{
    AtomOp, Bin, Cmp, Inst, Kernel, Op, Rnd, ShflMode, Space, Src, Sreg, Ty, Un, VoteMode,
};

/// Instructions a thread runs before the scheduler moves on.
pub const SLICE: u32 = 32;
/// Threads resident at once (all blocks of a grid up to this size).
pub const RESIDENT_THREADS: u64 = 1 << 16;
const GLOBAL_BASE: u64 = 0x1_0000_0000;
const SHARED_WIN: u64 = 0x7e00_0000_0000;
const LOCAL_WIN: u64 = 0x7f00_0000_0000;
const WIN_SIZE: u64 = 1 << 32;

/// A kernel argument, laid out per the kernel's `.param` declarations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ParamValue {
    U32(u32),
    I32(i32),
    U64(u64),
    F32(f32),
    F64(f64),
    Ptr(u64),
}

/// What one launch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LaunchStats {
    /// Thread-instructions executed (predicated-off ones included).
    pub instructions: u64,
    pub threads: u64,
}

#[derive(Clone, Copy, Default)]
struct Sh {
    launch: u32,
    w: u32,
    w_ep: u32,
    w_fe: u32,
    r: u32,
    r_ep: u32,
    r_fe: u32,
    flags: u8,
}
const W_ATOMIC: u8 = 1;
const R_MANY: u8 = 2;

#[derive(Default)]
struct Region {
    data: Vec<u8>,
    init: Vec<u8>,
    shadow: Vec<Sh>,
}

impl Region {
    fn new(bytes: usize, zeroed: bool) -> Self {
        Region {
            data: vec![0; bytes],
            init: vec![zeroed as u8; bytes],
            shadow: Vec::new(),
        }
    }
}

/// The simulated device: memory plus loaded modules.
pub struct Simulator {
    seed: u64,
    kernels: HashMap<String, Kernel>,
    allocs: BTreeMap<u64, Region>,
    next: u64,
    launch_id: u32,
    /// Upper bound on thread-instructions per launch (catches endless spin loops).
    pub max_instructions: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum TState {
    Run,
    Bar,
    Warp,
    Done,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Acc {
    Read,
    /// The load half of an atomic read-modify-write: race-checked by its store half.
    AtomicLoad,
    Write,
    Atomic,
}

struct BlockSt {
    bar_epoch: u32,
    fence_epoch: u32,
    at_bar: u32,
    done: u32,
}

struct Launch<'k> {
    k: &'k Kernel,
    name: &'k str,
    grid: [u32; 3],
    block: [u32; 3],
    tpb: u32,
    nregs: usize,
    params: Vec<u8>,
    regs: Vec<u64>,
    pc: Vec<u32>,
    st: Vec<TState>,
    /// First global thread index of the resident window.
    first: u32,
    blocks: Vec<BlockSt>,
    shared: Vec<Region>,
    first_block: u32,
    local: Vec<Region>,
    launch_id: u32,
    shared_bytes: u32,
    instructions: u64,
    rng: u64,
}

impl Default for Simulator {
    fn default() -> Self {
        Self::new(0)
    }
}

fn err(kernel: &str, what: String) -> Error {
    Error::Sim {
        kernel: kernel.to_string(),
        what,
    }
}

impl Simulator {
    /// `seed` shuffles the thread interleaving; 0 is plain round-robin.
    pub fn new(seed: u64) -> Self {
        Simulator {
            seed,
            kernels: HashMap::new(),
            allocs: BTreeMap::new(),
            next: GLOBAL_BASE,
            launch_id: 0,
            max_instructions: 20_000_000_000,
        }
    }

    /// Parses a PTX module and makes its kernels launchable.
    pub fn load_module(&mut self, name: &str, ptx: &str) -> Result<()> {
        let m = parse::parse_module(ptx).map_err(|what| err(&format!("(module {name})"), what))?;
        self.kernels.extend(m.kernels);
        Ok(())
    }

    /// Allocates `bytes` of never-written device memory.
    pub fn alloc(&mut self, bytes: usize) -> Result<u64> {
        self.alloc_inner(bytes, false)
    }

    /// Allocates `bytes` of zeroed (initialised) device memory.
    pub fn alloc_zeroed(&mut self, bytes: usize) -> Result<u64> {
        self.alloc_inner(bytes, true)
    }

    fn alloc_inner(&mut self, bytes: usize, zeroed: bool) -> Result<u64> {
        let addr = self.next;
        // A 256-byte gap keeps a one-past-the-end access out of the next allocation.
        self.next += (bytes as u64).div_ceil(256) * 256 + 256;
        self.allocs.insert(addr, Region::new(bytes, zeroed));
        Ok(addr)
    }

    pub fn free(&mut self, addr: u64) -> Result<()> {
        self.allocs.remove(&addr).map(|_| ()).ok_or_else(|| {
            err(
                "(host)",
                format!("free of {addr:#x}, which is not the start of an allocation"),
            )
        })
    }

    fn host_region(&self, addr: u64, len: usize) -> Result<(u64, &Region)> {
        match self.allocs.range(..=addr).next_back() {
            Some((b, r)) if addr + len as u64 <= b + r.data.len() as u64 => Ok((addr - b, r)),
            _ => Err(err(
                "(host)",
                format!("host access of {len} bytes at {addr:#x} is outside every allocation"),
            )),
        }
    }

    /// Copies host bytes to the device and marks them initialised.
    pub fn write(&mut self, addr: u64, bytes: &[u8]) -> Result<()> {
        let (off, _) = self.host_region(addr, bytes.len())?;
        let base = addr - off;
        let r = self.allocs.get_mut(&base).expect("found above");
        let o = off as usize;
        r.data[o..o + bytes.len()].copy_from_slice(bytes);
        r.init[o..o + bytes.len()].fill(1);
        Ok(())
    }

    pub fn read(&self, addr: u64, out: &mut [u8]) -> Result<()> {
        let (off, r) = self.host_region(addr, out.len())?;
        let o = off as usize;
        out.copy_from_slice(&r.data[o..o + out.len()]);
        Ok(())
    }

    /// Runs `kernel` over the grid and waits for it.
    pub fn launch(
        &mut self,
        kernel: &str,
        grid: [u32; 3],
        block: [u32; 3],
        shared_bytes: u32,
        params: &[ParamValue],
    ) -> Result<LaunchStats> {
        let kernels = std::mem::take(&mut self.kernels);
        let r = self.launch_in(&kernels, kernel, grid, block, shared_bytes, params);
        self.kernels = kernels;
        r
    }

    fn launch_in(
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
        if grid.contains(&0) || block.contains(&0) {
            return Err(err(
                kernel,
                format!("empty launch: grid {grid:?}, block {block:?}"),
            ));
        }
        let tpb = block[0] * block[1] * block[2];
        if tpb > 1024 {
            return Err(err(
                kernel,
                format!("block {block:?} has {tpb} threads, more than 1024"),
            ));
        }
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
        let per_wave = (RESIDENT_THREADS / tpb as u64).max(1);
        let mut l = Launch {
            k,
            name: kernel,
            grid,
            block,
            tpb,
            nregs: k.nregs.max(1),
            params: pbuf,
            regs: Vec::new(),
            pc: Vec::new(),
            st: Vec::new(),
            first: 0,
            blocks: (0..nblocks)
                .map(|_| BlockSt {
                    bar_epoch: 0,
                    fence_epoch: 0,
                    at_bar: 0,
                    done: 0,
                })
                .collect(),
            shared: Vec::new(),
            first_block: 0,
            local: Vec::new(),
            launch_id: self.launch_id,
            shared_bytes: k.static_shared + shared_bytes,
            instructions: 0,
            rng: self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        };
        let mut b0 = 0;
        while b0 < nblocks {
            let b1 = (b0 + per_wave).min(nblocks);
            l.run_wave(self, b0 as u32, b1 as u32)?;
            b0 = b1;
        }
        Ok(LaunchStats {
            instructions: l.instructions,
            threads: nblocks * tpb as u64,
        })
    }
}

fn fl32(x: u64) -> f32 {
    f32::from_bits(x as u32)
}
fn fl64(x: u64) -> f64 {
    f64::from_bits(x)
}
fn b32(x: f32) -> u64 {
    x.to_bits() as u64
}
fn ftz32(x: f32, on: bool) -> f32 {
    if on && x.is_subnormal() {
        0.0f32.copysign(x)
    } else {
        x
    }
}
fn mask(ty: Ty, v: u64) -> u64 {
    match ty.bytes() {
        1 => v & 0xff,
        2 => v & 0xffff,
        4 => v & 0xffff_ffff,
        _ => v,
    }
}
fn sext(ty: Ty, v: u64) -> i64 {
    match ty.bytes() {
        1 => v as u8 as i8 as i64,
        2 => v as u16 as i16 as i64,
        4 => v as u32 as i32 as i64,
        _ => v as i64,
    }
}
/// Rounds the exact value `hi + lo` (|lo| tiny) to f32 in direction `r`.
fn round_f32(hi: f64, lo: f64, r: Rnd) -> f32 {
    let n = hi as f32;
    if r == Rnd::Rn || !n.is_finite() {
        return n;
    }
    let diff = (n as f64 - hi) - lo; // n - exact
    let up = |x: f32| {
        if x == 0.0 {
            f32::from_bits(1)
        } else if x > 0.0 {
            f32::from_bits(x.to_bits() + 1)
        } else {
            f32::from_bits(x.to_bits() - 1)
        }
    };
    let down = |x: f32| -up(-x);
    match r {
        Rnd::Rm if diff > 0.0 => down(n),
        Rnd::Rp if diff < 0.0 => up(n),
        Rnd::Rz if diff > 0.0 && n > 0.0 => down(n),
        Rnd::Rz if diff < 0.0 && n < 0.0 => up(n),
        _ => n,
    }
}
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    (s, (a - (s - bb)) + (b - bb))
}
fn round_int(x: f64, r: Rnd) -> f64 {
    match r {
        Rnd::Rn => x.round_ties_even(),
        Rnd::Rz => x.trunc(),
        Rnd::Rm => x.floor(),
        Rnd::Rp => x.ceil(),
    }
}

impl<'k> Launch<'k> {
    fn where_(&self, t: usize) -> String {
        let g = self.first as usize + t;
        let b = g as u32 / self.tpb;
        let tl = g as u32 % self.tpb;
        let line = self
            .k
            .insts
            .get(self.pc[t] as usize)
            .map(|i| i.line)
            .unwrap_or(0);
        format!(
            "block ({}, {}, {}), thread ({}, {}, {}), PTX line {line}",
            b % self.grid[0],
            b / self.grid[0] % self.grid[1],
            b / (self.grid[0] * self.grid[1]),
            tl % self.block[0],
            tl / self.block[0] % self.block[1],
            tl / (self.block[0] * self.block[1])
        )
    }
    fn who(&self, g: u32) -> String {
        let b = g / self.tpb;
        let tl = g % self.tpb;
        format!(
            "thread ({}, {}, {}) of block ({}, {}, {})",
            tl % self.block[0],
            tl / self.block[0] % self.block[1],
            tl / (self.block[0] * self.block[1]),
            b % self.grid[0],
            b / self.grid[0] % self.grid[1],
            b / (self.grid[0] * self.grid[1])
        )
    }
    fn fail(&self, t: usize, what: String) -> Error {
        err(self.name, format!("{}: {what}", self.where_(t)))
    }

    fn run_wave(&mut self, sim: &mut Simulator, b0: u32, b1: u32) -> Result<()> {
        let n = ((b1 - b0) * self.tpb) as usize;
        self.first = b0 * self.tpb;
        self.first_block = b0;
        self.regs = vec![0; n * self.nregs];
        self.pc = vec![0; n];
        self.st = vec![TState::Run; n];
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

    #[inline]
    fn rd(&self, t: usize, s: Src) -> u64 {
        match s {
            Src::R(r) => self.regs[t * self.nregs + r as usize],
            Src::Imm(v) => v,
            Src::S(sr) => {
                let g = self.first + t as u32;
                let b = g / self.tpb;
                let tl = g % self.tpb;
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
                }
            }
        }
    }
    #[inline]
    fn wr(&mut self, t: usize, d: u16, v: u64) {
        self.regs[t * self.nregs + d as usize] = v;
    }

    /// Executes one instruction of thread `t`; returns true when it released waiting threads.
    fn step(&mut self, sim: &mut Simulator, t: usize) -> Result<bool> {
        let k = self.k;
        let pc = self.pc[t] as usize;
        let inst: &Inst = &k.insts[pc];
        if let Some((p, neg)) = inst.pred
            && (self.regs[t * self.nregs + p as usize] != 0) == neg
        {
            self.pc[t] += 1;
            return Ok(false);
        }
        let mut next = pc as u32 + 1;
        match &inst.op {
            Op::Mov { d, a } => {
                let v = self.rd(t, *a);
                self.wr(t, *d, v);
            }
            Op::Pack {
                d,
                parts,
                part_bits,
            } => {
                let mut v = 0u64;
                for (i, p) in parts.iter().enumerate() {
                    v |= (self.rd(t, *p) & ((1u64 << part_bits) - 1)) << (i as u32 * part_bits);
                }
                self.wr(t, *d, v);
            }
            Op::Unpack { ds, a, part_bits } => {
                let v = self.rd(t, *a);
                for (i, d) in ds.iter().enumerate() {
                    self.wr(
                        t,
                        *d,
                        (v >> (i as u32 * part_bits)) & ((1u64 << part_bits) - 1),
                    );
                }
            }
            Op::Bin { op, ty, m, d, a, b } => {
                let (a, b) = (self.rd(t, *a), self.rd(t, *b));
                // Fast path for the common 32/64-bit integer ops.
                let fast = match (ty.bytes(), ty.is_float() || *ty == Ty::Pred, op) {
                    (4 | 8, false, Bin::Add) => Some(a.wrapping_add(b)),
                    (4 | 8, false, Bin::Sub) => Some(a.wrapping_sub(b)),
                    (4 | 8, false, Bin::MulLo) => Some(a.wrapping_mul(b)),
                    (4 | 8, false, Bin::And) => Some(a & b),
                    (4 | 8, false, Bin::Or) => Some(a | b),
                    (4 | 8, false, Bin::Xor) => Some(a ^ b),
                    _ => None,
                };
                let v = match fast {
                    Some(v) => mask(*ty, v),
                    None => self.bin(t, *op, *ty, *m, a, b)?,
                };
                self.wr(t, *d, v);
            }
            Op::Un { op, ty, m, d, a } => {
                let a = self.rd(t, *a);
                let v = self.un(t, *op, *ty, *m, a)?;
                self.wr(t, *d, v);
            }
            Op::Mad {
                ty,
                hi,
                wide,
                d,
                a,
                b,
                c,
            } => {
                let (a, b, c) = (self.rd(t, *a), self.rd(t, *b), self.rd(t, *c));
                let v = if *wide {
                    self.bin(t, Bin::MulWide, *ty, FMOD0, a, b)?.wrapping_add(c)
                } else if *hi {
                    mask(
                        *ty,
                        self.bin(t, Bin::MulHi, *ty, FMOD0, a, b)?.wrapping_add(c),
                    )
                } else {
                    mask(*ty, a.wrapping_mul(b).wrapping_add(c))
                };
                self.wr(t, *d, v);
            }
            Op::Fma { ty, m, d, a, b, c } => {
                let (a, b, c) = (self.rd(t, *a), self.rd(t, *b), self.rd(t, *c));
                let v = match ty {
                    Ty::F32 => {
                        let (a, b, c) = (
                            ftz32(fl32(a), m.ftz),
                            ftz32(fl32(b), m.ftz),
                            ftz32(fl32(c), m.ftz),
                        );
                        let r = if m.rnd == Rnd::Rn {
                            a.mul_add(b, c)
                        } else {
                            let (hi, lo) = two_sum(a as f64 * b as f64, c as f64);
                            round_f32(hi, lo, m.rnd)
                        };
                        let r = ftz32(r, m.ftz);
                        b32(if m.sat { sat(r) } else { r })
                    }
                    Ty::F64 => {
                        if m.rnd != Rnd::Rn {
                            return Err(self.fail(
                                t,
                                "f64 fma with a rounding mode other than .rn is not supported"
                                    .into(),
                            ));
                        }
                        fl64(a).mul_add(fl64(b), fl64(c)).to_bits()
                    }
                    _ => return Err(self.fail(t, format!("fma/mad on {ty:?} is not supported"))),
                };
                self.wr(t, *d, v);
            }
            Op::Setp {
                cmp,
                ty,
                ftz,
                d,
                a,
                b,
            } => {
                let (a, b) = (self.rd(t, *a), self.rd(t, *b));
                let v = setp(*cmp, *ty, *ftz, a, b);
                self.wr(t, *d, v as u64);
            }
            Op::Selp { ty, d, a, b, p } => {
                let v = if self.rd(t, *p) != 0 {
                    self.rd(t, *a)
                } else {
                    self.rd(t, *b)
                };
                self.wr(t, *d, mask(*ty, v));
            }
            Op::Cvt {
                dty,
                sty,
                irnd,
                rnd,
                ftz,
                sat: s,
                d,
                a,
            } => {
                let a = self.rd(t, *a);
                let v = self.cvt(t, *dty, *sty, *irnd, *rnd, *ftz, *s, a)?;
                self.wr(t, *d, v);
            }
            Op::Cvta { to, space, d, a } => {
                let a = self.rd(t, *a);
                let win = match space {
                    Space::Shared => SHARED_WIN,
                    Space::Local => LOCAL_WIN,
                    _ => 0,
                };
                let v = if *to {
                    a.wrapping_sub(win)
                } else {
                    a.wrapping_add(win)
                };
                self.wr(t, *d, v);
            }
            Op::Bfe { ty, d, a, b, c } => {
                let bits = ty.bytes() * 8;
                let (a, pos, len) = (
                    self.rd(t, *a),
                    self.rd(t, *b) as u32 & 0xff,
                    self.rd(t, *c) as u32 & 0xff,
                );
                let v = if len == 0 {
                    0
                } else {
                    let x = if pos >= bits { 0 } else { a >> pos };
                    let len = len.min(bits);
                    let m = if len >= 64 {
                        u64::MAX
                    } else {
                        (1u64 << len) - 1
                    };
                    let mut v = x & m;
                    if ty.signed() {
                        let sbit = if pos + len > bits {
                            (a >> (bits - 1)) & 1
                        } else {
                            (a >> (pos + len - 1)) & 1
                        };
                        if sbit == 1 {
                            v |= !m;
                        }
                    }
                    v
                };
                self.wr(t, *d, mask(*ty, v));
            }
            Op::Bfi { ty, d, a, b, c, e } => {
                let bits = ty.bytes() * 8;
                let (a, b, pos, len) = (
                    self.rd(t, *a),
                    self.rd(t, *b),
                    self.rd(t, *c) as u32 & 0xff,
                    self.rd(t, *e) as u32 & 0xff,
                );
                let mut v = b;
                for i in 0..len {
                    if pos + i >= bits {
                        break;
                    }
                    v = (v & !(1 << (pos + i))) | (((a >> i) & 1) << (pos + i));
                }
                self.wr(t, *d, mask(*ty, v));
            }
            Op::Ld { space, ty, d, addr } => {
                let base = addr
                    .base
                    .map(|r| self.rd(t, Src::R(r)))
                    .unwrap_or(0)
                    .wrapping_add(addr.offset as u64);
                let w = ty.bytes();
                let total = w * d.len() as u32;
                if base % total as u64 != 0 {
                    return Err(self.fail(
                        t,
                        format!("misaligned {total}-byte load at address {base:#x} ({space:?})"),
                    ));
                }
                for (i, r) in d.iter().enumerate() {
                    let v = self.mem(
                        sim,
                        t,
                        *space,
                        base + (i as u32 * w) as u64,
                        w,
                        Acc::Read,
                        0,
                    )?;
                    let v = if ty.signed() { sext(*ty, v) as u64 } else { v };
                    self.wr(t, *r, v);
                }
            }
            Op::St { space, ty, s, addr } => {
                let base = addr
                    .base
                    .map(|r| self.rd(t, Src::R(r)))
                    .unwrap_or(0)
                    .wrapping_add(addr.offset as u64);
                let w = ty.bytes();
                let total = w * s.len() as u32;
                if base % total as u64 != 0 {
                    return Err(self.fail(
                        t,
                        format!("misaligned {total}-byte store at address {base:#x} ({space:?})"),
                    ));
                }
                for (i, v) in s.iter().enumerate() {
                    let v = mask(*ty, self.rd(t, *v));
                    self.mem(
                        sim,
                        t,
                        *space,
                        base + (i as u32 * w) as u64,
                        w,
                        Acc::Write,
                        v,
                    )?;
                }
            }
            Op::Atom {
                space,
                op,
                ty,
                d,
                addr,
                b,
                c,
            } => {
                let base = addr
                    .base
                    .map(|r| self.rd(t, Src::R(r)))
                    .unwrap_or(0)
                    .wrapping_add(addr.offset as u64);
                let w = ty.bytes();
                if base % w as u64 != 0 {
                    return Err(self.fail(
                        t,
                        format!("misaligned {w}-byte atomic at address {base:#x}"),
                    ));
                }
                let old = self.mem(sim, t, *space, base, w, Acc::AtomicLoad, 0)?;
                let (b, c) = (self.rd(t, *b), self.rd(t, *c));
                let new = match (op, ty) {
                    (AtomOp::Add, Ty::F32) => b32(fl32(old) + fl32(b)),
                    (AtomOp::Add, Ty::F64) => (fl64(old) + fl64(b)).to_bits(),
                    (AtomOp::Add, _) => old.wrapping_add(b),
                    (AtomOp::Min | AtomOp::Max, Ty::F32 | Ty::F64 | Ty::F16 | Ty::Bf16) => {
                        return Err(self.fail(t, "atomic float min/max is not supported".into()));
                    }
                    (AtomOp::Min, _) if ty.signed() => sext(*ty, old).min(sext(*ty, b)) as u64,
                    (AtomOp::Max, _) if ty.signed() => sext(*ty, old).max(sext(*ty, b)) as u64,
                    (AtomOp::Min, _) => old.min(mask(*ty, b)),
                    (AtomOp::Max, _) => old.max(mask(*ty, b)),
                    (AtomOp::Exch, _) => b,
                    (AtomOp::Cas, _) => {
                        if old == mask(*ty, b) {
                            c
                        } else {
                            old
                        }
                    }
                    (AtomOp::And, _) => old & b,
                    (AtomOp::Or, _) => old | b,
                    (AtomOp::Xor, _) => old ^ b,
                    (AtomOp::Inc, _) => {
                        if old >= mask(*ty, b) {
                            0
                        } else {
                            old + 1
                        }
                    }
                    (AtomOp::Dec, _) => {
                        if old == 0 || old > mask(*ty, b) {
                            mask(*ty, b)
                        } else {
                            old - 1
                        }
                    }
                };
                self.mem(sim, t, *space, base, w, Acc::Atomic, mask(*ty, new))?;
                if let Some(d) = d {
                    self.wr(t, *d, old);
                }
            }
            Op::Bra { target } => next = *target,
            Op::Bar => {
                let b = self.block_of(t);
                self.st[t] = TState::Bar;
                self.blocks[b].at_bar += 1;
                return Ok(self.try_release_bar(b));
            }
            Op::WarpSync { .. } | Op::Shfl { .. } | Op::Vote { .. } => {
                self.st[t] = TState::Warp;
                return self.try_warp(t);
            }
            Op::Fence { gpu } => {
                if *gpu {
                    let b = self.block_of(t);
                    self.blocks[b].fence_epoch += 1;
                }
            }
            Op::Exit => {
                self.st[t] = TState::Done;
                let b = self.block_of(t);
                self.blocks[b].done += 1;
                let mut rel = self.try_release_bar(b);
                // A lane waiting on a collective that names this one must now fail.
                let w0 = t - (self.local_tid(t) % 32) as usize;
                for l in 0..32 {
                    let u = w0 + l;
                    if u < self.st.len() && self.block_of(u) == b && self.st[u] == TState::Warp {
                        rel |= self.try_warp(u)?;
                    }
                }
                return Ok(rel);
            }
        }
        self.pc[t] = next;
        Ok(false)
    }

    fn block_of(&self, t: usize) -> usize {
        ((self.first + t as u32) / self.tpb) as usize
    }
    fn local_tid(&self, t: usize) -> u32 {
        (self.first + t as u32) % self.tpb
    }

    fn try_release_bar(&mut self, b: usize) -> bool {
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

    /// Completes a warp collective once every lane named in the mask waits at one.
    fn try_warp(&mut self, t: usize) -> Result<bool> {
        let lane = self.local_tid(t) % 32;
        let w0 = t - lane as usize;
        let block_t0 = (self.block_of(t) as u32 * self.tpb - self.first) as usize;
        let block_end = block_t0 + self.tpb as usize;
        let op = &self.k.insts[self.pc[t] as usize].op;
        let mask_src = match op {
            Op::WarpSync { mask } | Op::Shfl { mask, .. } | Op::Vote { mask, .. } => *mask,
            _ => unreachable!("try_warp on a non-collective"),
        };
        let m = self.rd(t, mask_src) as u32;
        if m & (1 << lane) == 0 {
            return Err(self.fail(
                t,
                format!(
                    "wrong shuffle mask {m:#010x}: it does not include the calling lane {lane}"
                ),
            ));
        }
        for l in 0..32 {
            if m & (1 << l) == 0 {
                continue;
            }
            let u = w0 + l;
            if u >= block_end {
                return Err(self.fail(t, format!("wrong shuffle mask {m:#010x}: lane {l} does not exist (block of {} threads)", self.tpb)));
            }
            match self.st[u] {
                TState::Done => {
                    return Err(self.fail(
                        t,
                        format!("wrong shuffle mask {m:#010x}: lane {l} has exited"),
                    ));
                }
                TState::Warp => {}
                _ => return Ok(false),
            }
            let other = &self.k.insts[self.pc[u] as usize].op;
            if std::mem::discriminant(other) != std::mem::discriminant(op)
                || self.rd(u, mask_src_of(other)) as u32 != m
            {
                return Err(self.fail(
                    t,
                    format!("warp collective mismatch: lane {l} waits at PTX line {} with a different operation or mask", self.k.insts[self.pc[u] as usize].line),
                ));
            }
        }
        // Everyone is here: gather, compute, release.
        let lanes: Vec<u32> = (0..32).filter(|l| m & (1 << l) != 0).collect();
        match op.clone() {
            Op::Shfl {
                mode,
                d,
                p,
                a,
                b,
                c,
                ..
            } => {
                let vals: Vec<u64> = (0..32)
                    .map(|l| {
                        if m & (1 << l) != 0 {
                            self.rd(w0 + l, a)
                        } else {
                            0
                        }
                    })
                    .collect();
                for &l in &lanes {
                    let u = w0 + l as usize;
                    let (bv, cv) = (self.rd(u, b) as u32, self.rd(u, c) as u32);
                    let segmask = (cv >> 8) & 0x1f;
                    let cl = cv & 0x1f;
                    let max_lane = (l & segmask) | (cl & !segmask);
                    let min_lane = l & segmask;
                    let (j, ok) = match mode {
                        ShflMode::Up => {
                            let j = l as i64 - bv as i64;
                            (j, j >= max_lane as i64)
                        }
                        ShflMode::Down => {
                            let j = l as i64 + bv as i64;
                            (j, j <= max_lane as i64)
                        }
                        ShflMode::Bfly => {
                            let j = (l ^ bv) as i64;
                            (j, j <= max_lane as i64)
                        }
                        ShflMode::Idx => {
                            let j = (min_lane | (bv & !segmask)) as i64;
                            (j, j <= max_lane as i64)
                        }
                    };
                    let j = if ok { j as u32 } else { l };
                    if m & (1 << j) == 0 {
                        return Err(self.fail(u, format!("wrong shuffle mask {m:#010x}: lane {l} reads lane {j}, which is not in the mask")));
                    }
                    self.wr(u, d, vals[j as usize]);
                    if let Some(p) = p {
                        self.wr(u, p, ok as u64);
                    }
                }
            }
            Op::Vote {
                mode, d, a, negate, ..
            } => {
                let mut ballot = 0u32;
                for &l in &lanes {
                    if (self.rd(w0 + l as usize, a) != 0) != negate {
                        ballot |= 1 << l;
                    }
                }
                let v = match mode {
                    VoteMode::All => (ballot == m) as u64,
                    VoteMode::Any => (ballot != 0) as u64,
                    VoteMode::Uni => (ballot == m || ballot == 0) as u64,
                    VoteMode::Ballot => ballot as u64,
                };
                for &l in &lanes {
                    self.wr(w0 + l as usize, d, v);
                }
            }
            _ => {}
        }
        for &l in &lanes {
            let u = w0 + l as usize;
            self.st[u] = TState::Run;
            self.pc[u] += 1;
        }
        Ok(true)
    }

    /// One scalar memory access with all checks; returns the loaded value (reads/atomics).
    #[allow(clippy::too_many_arguments)]
    fn mem(
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
        let (region, off, what): (&mut Region, u64, String) = match space {
            Space::Shared => {
                let r = &mut self.shared[me_block - self.first_block as usize];
                if a + w as u64 > r.data.len() as u64 {
                    let n = r.data.len();
                    return Err(self.fail(t, format!("out-of-bounds shared-memory access of {w} bytes at shared address {a:#x} (the block has {n} bytes of shared memory)")));
                }
                (r, a, "shared".into())
            }
            Space::Local => {
                let Some(r) = self.local.get_mut(t) else {
                    return Err(self.fail(
                        t,
                        format!(
                            "local-memory access at {a:#x} but the kernel declares no local memory"
                        ),
                    ));
                };
                if a + w as u64 > r.data.len() as u64 {
                    let n = r.data.len();
                    return Err(self.fail(t, format!("out-of-bounds local-memory access at {a:#x} ({n} bytes of local memory)")));
                }
                (r, a, "local".into())
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
                        (r, a - b, format!("global {a:#x}"))
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
        if acc != Acc::Write && region.init[o..o + wu].contains(&0) {
            let first = o + region.init[o..o + wu]
                .iter()
                .position(|&x| x == 0)
                .unwrap_or(0);
            let addr_s = format!("{what} (byte offset {first})");
            return Err(self.fail(t, format!("read of never-written memory at {addr_s}")));
        }
        if space != Space::Local && acc != Acc::AtomicLoad {
            if region.shadow.is_empty() {
                region.shadow = vec![Sh::default(); region.data.len()];
            }
            let lid = self.launch_id;
            for i in o..o + wu {
                let e = &mut region.shadow[i];
                if e.launch != lid {
                    *e = Sh {
                        launch: lid,
                        ..Sh::default()
                    };
                }
                let conflict = |blocks: &[BlockSt], prev: u32, ep: u32, fe: u32| -> bool {
                    if prev == 0 || prev - 1 == g {
                        return false;
                    }
                    let pb = ((prev - 1) / self.tpb) as usize;
                    if pb == me_block {
                        blocks[pb].bar_epoch == ep
                    } else {
                        blocks[pb].fence_epoch == fe
                    }
                };
                let my_ep = self.blocks[me_block].bar_epoch;
                let my_fe = self.blocks[me_block].fence_epoch;
                let bad = match acc {
                    Acc::Read | Acc::AtomicLoad => {
                        let racy = conflict(&self.blocks, e.w, e.w_ep, e.w_fe);
                        let many = (e.r != 0
                            && e.r - 1 != g
                            && conflict(&self.blocks, e.r, e.r_ep, e.r_fe))
                            || (e.r == g + 1 && e.flags & R_MANY != 0 && e.r_ep == my_ep);
                        e.flags = (e.flags & !R_MANY) | if many { R_MANY } else { 0 };
                        e.r = g + 1;
                        e.r_ep = my_ep;
                        e.r_fe = my_fe;
                        racy.then_some((e.w, "write"))
                    }
                    Acc::Write | Acc::Atomic => {
                        let atomic = acc == Acc::Atomic;
                        let ww = conflict(&self.blocks, e.w, e.w_ep, e.w_fe)
                            && !(atomic && e.flags & W_ATOMIC != 0);
                        let rw = !atomic
                            && (conflict(&self.blocks, e.r, e.r_ep, e.r_fe)
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
                };
                if let Some((prev, kind)) = bad {
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
                    return Err(self.fail(
                        t,
                        format!("data race on {what} (byte offset {i}): this {verb} conflicts with a {kind} by {other} with no barrier (bar.sync in a block, gpu-scope fence across blocks) between them"),
                    ));
                }
            }
        }
        let region = match space {
            Space::Shared => &mut self.shared[me_block - self.first_block as usize],
            Space::Local => &mut self.local[t],
            _ => sim
                .allocs
                .range_mut(..=a)
                .next_back()
                .map(|(_, r)| r)
                .expect("found above"),
        };
        let mut old = [0u8; 8];
        old[..wu].copy_from_slice(&region.data[o..o + wu]);
        if matches!(acc, Acc::Write | Acc::Atomic) {
            region.data[o..o + wu].copy_from_slice(&val.to_le_bytes()[..wu]);
            region.init[o..o + wu].fill(1);
        }
        Ok(u64::from_le_bytes(old))
    }

    fn bin(&self, t: usize, op: Bin, ty: Ty, m: parse::FMod, a: u64, b: u64) -> Result<u64> {
        if ty == Ty::Pred {
            return Ok(match op {
                Bin::And => a & b,
                Bin::Or => a | b,
                Bin::Xor => a ^ b,
                _ => return Err(self.fail(t, format!("{op:?} on predicates is not supported"))),
            });
        }
        if ty == Ty::F32 {
            let (x, y) = (ftz32(fl32(a), m.ftz), ftz32(fl32(b), m.ftz));
            let r = match op {
                Bin::Add | Bin::Sub | Bin::MulLo if m.rnd != Rnd::Rn => {
                    let y = if op == Bin::Sub { -y } else { y };
                    if op == Bin::MulLo {
                        round_f32(x as f64 * y as f64, 0.0, m.rnd)
                    } else {
                        let (hi, lo) = two_sum(x as f64, y as f64);
                        round_f32(hi, lo, m.rnd)
                    }
                }
                Bin::Add => x + y,
                Bin::Sub => x - y,
                Bin::MulLo => x * y,
                Bin::Div => x / y,
                Bin::Min => x.min(y),
                Bin::Max => x.max(y),
                Bin::Copysign => y.copysign(x),
                _ => return Err(self.fail(t, format!("{op:?} on f32 is not supported"))),
            };
            let r = ftz32(r, m.ftz);
            return Ok(b32(if m.sat { sat(r) } else { r }));
        }
        if ty == Ty::F64 {
            let (x, y) = (fl64(a), fl64(b));
            if m.rnd != Rnd::Rn && matches!(op, Bin::Add | Bin::Sub | Bin::MulLo | Bin::Div) {
                return Err(self.fail(
                    t,
                    "f64 arithmetic with a rounding mode other than .rn is not supported".into(),
                ));
            }
            let r = match op {
                Bin::Add => x + y,
                Bin::Sub => x - y,
                Bin::MulLo => x * y,
                Bin::Div => x / y,
                Bin::Min => x.min(y),
                Bin::Max => x.max(y),
                Bin::Copysign => y.copysign(x),
                _ => return Err(self.fail(t, format!("{op:?} on f64 is not supported"))),
            };
            return Ok(r.to_bits());
        }
        if ty.is_float() {
            return Err(self.fail(t, format!("{op:?} on {ty:?} is not supported")));
        }
        let bits = ty.bytes() * 8;
        let s = ty.signed();
        let v = match op {
            Bin::Add => a.wrapping_add(b),
            Bin::Sub => a.wrapping_sub(b),
            Bin::MulLo => a.wrapping_mul(b),
            Bin::MulHi | Bin::MulWide => {
                let p: i128 = if s {
                    sext(ty, a) as i128 * sext(ty, b) as i128
                } else {
                    mask(ty, a) as i128 * mask(ty, b) as i128
                };
                if op == Bin::MulWide {
                    return Ok(if bits == 64 {
                        p as u64
                    } else {
                        p as u64 & (u64::MAX >> (64 - 2 * bits).min(63))
                    });
                }
                (p >> bits) as u64
            }
            Bin::Div | Bin::Rem => {
                if mask(ty, b) == 0 {
                    if op == Bin::Div { u64::MAX } else { a }
                } else if s {
                    let (x, y) = (sext(ty, a), sext(ty, b));
                    (if op == Bin::Div {
                        x.wrapping_div(y)
                    } else {
                        x.wrapping_rem(y)
                    }) as u64
                } else {
                    let (x, y) = (mask(ty, a), mask(ty, b));
                    if op == Bin::Div { x / y } else { x % y }
                }
            }
            Bin::And => a & b,
            Bin::Or => a | b,
            Bin::Xor => a ^ b,
            Bin::Shl => {
                let n = b as u32;
                if n >= bits { 0 } else { a << n }
            }
            Bin::Shr => {
                let n = (b as u32).min(bits);
                if s {
                    (sext(ty, a) >> n.min(63)) as u64
                } else if n >= bits {
                    0
                } else {
                    mask(ty, a) >> n
                }
            }
            Bin::Min if s => sext(ty, a).min(sext(ty, b)) as u64,
            Bin::Max if s => sext(ty, a).max(sext(ty, b)) as u64,
            Bin::Min => mask(ty, a).min(mask(ty, b)),
            Bin::Max => mask(ty, a).max(mask(ty, b)),
            Bin::Copysign => return Err(self.fail(t, "copysign on an integer type".into())),
        };
        Ok(mask(ty, v))
    }

    fn un(&self, t: usize, op: Un, ty: Ty, m: parse::FMod, a: u64) -> Result<u64> {
        if ty == Ty::Pred {
            return match op {
                Un::Not => Ok((a == 0) as u64),
                _ => Err(self.fail(t, format!("{op:?} on predicates is not supported"))),
            };
        }
        if ty == Ty::F32 {
            let x = ftz32(fl32(a), m.ftz);
            let r = match op {
                Un::Neg => -x,
                Un::Abs => x.abs(),
                Un::Sqrt | Un::SqrtApprox => x.sqrt(),
                Un::Rsqrt => 1.0 / x.sqrt(),
                Un::Rcp | Un::RcpApprox => 1.0 / x,
                Un::Ex2 => x.exp2(),
                Un::Lg2 => x.log2(),
                Un::Tanh => x.tanh(),
                Un::Sin => x.sin(),
                Un::Cos => x.cos(),
                _ => return Err(self.fail(t, format!("{op:?} on f32 is not supported"))),
            };
            if matches!(op, Un::Sqrt | Un::Rcp) && m.rnd != Rnd::Rn {
                return Err(self.fail(
                    t,
                    "sqrt/rcp with a rounding mode other than .rn is not supported".into(),
                ));
            }
            let r = ftz32(r, m.ftz);
            return Ok(b32(if m.sat { sat(r) } else { r }));
        }
        if ty == Ty::F64 {
            let x = fl64(a);
            let r = match op {
                Un::Neg => -x,
                Un::Abs => x.abs(),
                Un::Sqrt if m.rnd == Rnd::Rn => x.sqrt(),
                Un::Rcp if m.rnd == Rnd::Rn => 1.0 / x,
                Un::RcpApprox => 1.0 / x,
                Un::Rsqrt => 1.0 / x.sqrt(),
                _ => {
                    return Err(self.fail(
                        t,
                        format!("{op:?} (rounding {:?}) on f64 is not supported", m.rnd),
                    ));
                }
            };
            return Ok(r.to_bits());
        }
        if ty.is_float() {
            return Err(self.fail(t, format!("{op:?} on {ty:?} is not supported")));
        }
        let bits = ty.bytes() * 8;
        let v = match op {
            Un::Not => !a,
            Un::Neg => a.wrapping_neg(),
            Un::Abs => sext(ty, a).wrapping_abs() as u64,
            Un::Popc => mask(ty, a).count_ones() as u64,
            Un::Clz => (mask(ty, a).leading_zeros() - (64 - bits)) as u64,
            Un::Brev => mask(ty, a).reverse_bits() >> (64 - bits),
            _ => return Err(self.fail(t, format!("{op:?} on {ty:?} is not supported"))),
        };
        Ok(mask(ty, v))
    }

    #[allow(clippy::too_many_arguments)]
    fn cvt(
        &self,
        t: usize,
        dty: Ty,
        sty: Ty,
        irnd: Option<Rnd>,
        rnd: Option<Rnd>,
        ftz: bool,
        s: bool,
        a: u64,
    ) -> Result<u64> {
        use half::{bf16, f16};
        let as_f64 = |ty: Ty, v: u64| -> Option<f64> {
            Some(match ty {
                Ty::F16 => f16::from_bits(v as u16).to_f64(),
                Ty::Bf16 => bf16::from_bits(v as u16).to_f64(),
                Ty::F32 => ftz32(fl32(v), ftz) as f64,
                Ty::F64 => fl64(v),
                _ => return None,
            })
        };
        if let Some(x) = as_f64(sty, a) {
            if dty.is_float() {
                let x = match irnd {
                    Some(r) => round_int(x, r),
                    None => x,
                };
                if rnd.is_some_and(|r| r != Rnd::Rn) {
                    return Err(self.fail(
                        t,
                        "float-to-float cvt with a rounding mode other than .rn is not supported"
                            .into(),
                    ));
                }
                let x = if s {
                    x.clamp(0.0, 1.0) * if x.is_nan() { 0.0 } else { 1.0 }
                } else {
                    x
                };
                return Ok(match dty {
                    Ty::F16 => f16::from_f64(if sty == Ty::F32 { x as f32 as f64 } else { x })
                        .to_bits() as u64,
                    Ty::Bf16 => {
                        // From f32 (exact in f64) this rounds once, to nearest even.
                        bf16::from_f32(x as f32).to_bits() as u64
                    }
                    Ty::F32 => b32(ftz32(x as f32, ftz)),
                    _ => x.to_bits(),
                });
            }
            // float -> int: round (default .rni is not implied: PTX requires a mode), saturate, NaN -> 0.
            let r = round_int(x, irnd.unwrap_or(Rnd::Rz));
            let bits = dty.bytes() * 8;
            let v = if r.is_nan() {
                0
            } else if dty.signed() {
                let lo = -(2f64.powi(bits as i32 - 1));
                let hi = 2f64.powi(bits as i32 - 1) - 1.0;
                r.clamp(lo, hi) as i64 as u64
            } else {
                r.clamp(0.0, 2f64.powi(bits as i32) - 1.0) as u64
            };
            return Ok(mask(dty, v));
        }
        // integer source
        let iv: i128 = if sty.signed() {
            sext(sty, a) as i128
        } else {
            mask(sty, a) as i128
        };
        if dty.is_float() {
            if rnd.is_some_and(|r| r != Rnd::Rn) {
                return Err(self.fail(
                    t,
                    "int-to-float cvt with a rounding mode other than .rn is not supported".into(),
                ));
            }
            return Ok(match dty {
                Ty::F32 => b32(iv as f32),
                Ty::F64 => (iv as f64).to_bits(),
                Ty::F16 => f16::from_f32(iv as f32).to_bits() as u64,
                _ => bf16::from_f32(iv as f32).to_bits() as u64,
            });
        }
        if s {
            let bits = dty.bytes() * 8;
            let (lo, hi) = if dty.signed() {
                (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
            } else {
                (0, (1i128 << bits) - 1)
            };
            return Ok(mask(dty, iv.clamp(lo, hi) as u64));
        }
        Ok(mask(dty, iv as u64))
    }
}

const FMOD0: parse::FMod = parse::FMod {
    rnd: Rnd::Rn,
    ftz: false,
    sat: false,
};

fn sat(x: f32) -> f32 {
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}

fn mask_src_of(op: &Op) -> Src {
    match op {
        Op::WarpSync { mask } | Op::Shfl { mask, .. } | Op::Vote { mask, .. } => *mask,
        _ => Src::Imm(0),
    }
}

fn setp(cmp: Cmp, ty: Ty, ftz: bool, a: u64, b: u64) -> bool {
    if ty.is_float() {
        let (x, y) = match ty {
            Ty::F32 => (ftz32(fl32(a), ftz) as f64, ftz32(fl32(b), ftz) as f64),
            _ => (fl64(a), fl64(b)),
        };
        let nan = x.is_nan() || y.is_nan();
        return match cmp {
            Cmp::Eq => !nan && x == y,
            Cmp::Ne => !nan && x != y,
            Cmp::Lt => !nan && x < y,
            Cmp::Le => !nan && x <= y,
            Cmp::Gt => !nan && x > y,
            Cmp::Ge => !nan && x >= y,
            Cmp::Equ => nan || x == y,
            Cmp::Neu => nan || x != y,
            Cmp::Ltu => nan || x < y,
            Cmp::Leu => nan || x <= y,
            Cmp::Gtu => nan || x > y,
            Cmp::Geu => nan || x >= y,
            Cmp::Num => !nan,
            Cmp::Nan => nan,
            _ => false,
        };
    }
    let (ua, ub) = (mask(ty, a), mask(ty, b));
    let (sa, sb) = (sext(ty, a), sext(ty, b));
    let signed = ty.signed();
    match cmp {
        Cmp::Eq => ua == ub,
        Cmp::Ne => ua != ub,
        Cmp::Lt if signed => sa < sb,
        Cmp::Le if signed => sa <= sb,
        Cmp::Gt if signed => sa > sb,
        Cmp::Ge if signed => sa >= sb,
        Cmp::Lt | Cmp::Lo => ua < ub,
        Cmp::Le | Cmp::Ls => ua <= ub,
        Cmp::Gt | Cmp::Hi => ua > ub,
        Cmp::Ge | Cmp::Hs => ua >= ub,
        _ => false,
    }
}
