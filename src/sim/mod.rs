//! A PTX simulator: runs the kernels nvcc emitted on the CPU, one program
//! counter and register set per thread, and fails loudly on out-of-bounds,
//! misaligned, uninitialised and racy memory accesses.
//!
//! Scheduling: warps run in slices of [`SLICE`] steps; a block's warps
//! take turns for up to [`BLOCK_PASSES`] passes before the next block's
//! do, round after round (blocks and warps reshuffled every time when the
//! seed is non-zero). A step runs one
//! instruction for the warp's running lanes at the lowest program counter
//! among them, decoded once for all of them (`exec.rs`), so diverged lanes
//! run apart and rejoin where their paths meet (every lane keeps its own
//! counter). A lane spinning on a value a lane of its own warp at a higher
//! counter would set starves, as on GPUs before Volta, and is reported as
//! an endless loop; the project's kernels spin only across blocks.
//! Registers are stored warp by warp, a register's 32 lanes side by side.
//! All blocks of a grid are resident and interleaved together when the
//! grid has at most [`RESIDENT_THREADS`] threads, so spin-wait grid
//! barriers make progress; bigger grids run in waves of that many threads
//! (a grid barrier across waves would spin until the instruction limit and
//! is reported as such). A round in which no thread can move is a deadlock
//! error.
//!
//! Launches are checked as the driver checks them, with the same reason:
//! block and grid dimensions, threads per block, the kernel's `.maxntid`
//! (`__launch_bounds__`) and `.reqntid`, and shared memory (48 KiB static
//! plus dynamic unless the kernel opted in to more, never above
//! [`MAX_SHARED_PER_BLOCK`]). Registers per block are not checked: PTX does
//! not say how many ptxas allocates.
//!
//! Race model (`shadow.rs`): per byte, the last writer and last reader with the barrier epoch
//! (`bar.sync` count of its block) and fence epoch (gpu-scope fences of its
//! block) at the time. Two accesses by threads of one block conflict when no
//! `bar.sync` separates them; by threads of different blocks, when the earlier
//! accessor's block has executed no gpu-scope fence (`membar.gl`,
//! `fence.*.gpu`) since — a heuristic that accepts fence-published data behind
//! a grid barrier. Accesses that are all atomic never conflict.
//!
//! Thread-block clusters (`.reqnctapercluster`, `__cluster_dims__`; without
//! it every block is a cluster of one, as on a GPU): a cluster is that many
//! consecutive blocks along x, always resident together. A block reaches
//! another's shared memory through `mapa` (`.shared::cluster` addresses are
//! `(rank + 1) << 24 | offset`, the generic ones that plus the shared
//! window) and `ld`/`st.shared::cluster` or generic accesses, with the same
//! bounds, initialisation and race checks as its own, and fails on a rank
//! outside the cluster or a block that has exited. The cluster barrier
//! (`barrier.cluster.arrive` `.release`, `barrier.cluster.wait` `.acquire`)
//! completes a phase when every thread of the cluster that has not exited
//! has arrived; that moves every member block's barrier and fence epochs
//! on, so it orders shared and global accesses within the cluster. A launch
//! with clusters of several blocks keeps the full shadow entry for shared
//! memory (the compact one has no room for another block's thread). The
//! model cannot place a shared access made between a thread's arrive and its
//! wait, so it refuses one.
//!
//! Implemented PTX (anything else is a parse error naming the instruction):
//! - data movement: `mov` (incl. `{a, b}` pack/unpack), `ld`/`st` (global,
//!   shared static and dynamic, local, param, generic; `.v2`/`.v4`; `.nc`),
//!   `cvta`(`.to`) global/shared/local, `cvt` between integer and
//!   f16/bf16/f32/f64 types (`.rni`/`.rzi`/`.rmi`/`.rpi`, `.sat`, `.ftz`);
//! - integer: `add sub mul(.lo/.hi/.wide) mad(.lo/.hi/.wide) div rem and or
//!   xor not shl shr min max abs neg popc clz brev bfe bfi selp setp` on
//!   8-64-bit types, `prmt.b32` (default mode), predicate `and/or/xor/not`;
//! - f32: `add sub mul` (`.rn/.rz/.rm/.rp`, `.ftz`, `.sat`), `fma/mad`, `div`,
//!   `min max copysign abs neg`, `sqrt rsqrt rcp` and the approximate `ex2 lg2
//!   tanh sin cos sqrt rcp` (within their documented error), `setp` (ordered
//!   and unordered, `.ftz`); f64: the same at `.rn`;
//! - f16/bf16 and packed `.f16x2`/`.bf16x2`: `add sub mul fma` (`.rn`,
//!   `.ftz`, `.sat`, `.relu`), `neg abs min max`, scalar `setp` (see `half.rs`);
//! - atomics/reductions `atom`/`red` `add` (integer, f32, f64), `min max exch
//!   cas and or xor inc dec`; `membar`/`fence`;
//! - control: `bra`, `@p`/`@!p` predication, `ret`/`exit`, `call` to a
//!   `.func` (see `call.rs`: scalar `.param` arguments and return values, nested
//!   calls; the call-sequence `{ }` scopes nvcc emits);
//! - collectives as rendezvous: `bar.sync`/`barrier.sync` 0,
//!   `bar.warp.sync`, `shfl.sync` (`up down bfly idx`), `vote.sync` (`all any
//!   uni ballot`);
//! - clusters (above): `%cluster_ctarank`, `%cluster_nctarank`,
//!   `%clusterid`, `%nclusterid`, `%cluster_ctaid`, `%cluster_nctaid`,
//!   `%is_explicit_cluster`; `mapa` (`.shared::cluster` and generic);
//!   `ld`/`st.shared::cluster` (`.shared::cta` = `.shared`);
//!   `barrier.cluster.arrive`/`.wait` (`.aligned`).
//!
//! Not supported: clusters along y or z, clusters sized at launch
//! (`.maxclusterrank`) or above 8 blocks, `barrier.cluster.arrive.relaxed`,
//! recursion and indirect calls, `.shared` inside a `.func`,
//! module-scope `.global`/`.const` variables, named barriers other than 0,
//! `setp` combining forms and packed `setp.*x2`, non-`.rn` f64 arithmetic and
//! float `cvt`, `min/max.NaN`/`.xorsign`, float atomic `min/max`, half
//! atomics, textures/surfaces, `.v8`, carry (`.cc`) arithmetic.

mod arith;
mod call;
mod cvt;
mod exec;
mod half;
mod launch;
mod memops;
mod memory;
mod num;
mod parse;
mod sched;
mod shadow;
mod warp;
mod warpmem;

use std::collections::{BTreeMap, HashMap};

use crate::error::{Error, Result};
use parse::Kernel;
use shadow::{Entry, Near, Sh};

/// Steps a warp runs before the scheduler moves on (sooner when all its
/// lanes wait at a barrier or warp collective). Long enough that a warp's
/// registers and data stay in the host's cache for a while: at the Keras
/// shape 512 warps take turns, and 1024 ran the persistent forward 1.18x
/// faster than 256 (4096 gains another 1.04x but leaves fewer
/// interleavings between barriers).
pub const SLICE: u32 = 1024;
/// Passes over a block's warps before the scheduler moves to the next block.
pub const BLOCK_PASSES: u32 = 64;
/// Threads resident at once (all blocks of a grid up to this size).
pub const RESIDENT_THREADS: u64 = 1 << 16;
/// Shared memory one block may use, static and dynamic together: sm_90's
/// opt-in limit (227 KiB). The driver refuses a launch above it however
/// the two parts are split, so the simulator does too.
pub const MAX_SHARED_PER_BLOCK: u32 = 227 * 1024;
/// Shared memory, static and dynamic together, a block may use before its
/// kernel opts in to more ([`Simulator::set_max_dynamic_shared`], the
/// driver's `CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES`).
pub const DEFAULT_SHARED_PER_BLOCK: u32 = 48 * 1024;
/// Block dimensions (x, y, z) and threads per block on every GPU since sm_20.
pub const MAX_BLOCK: [u32; 3] = [1024, 1024, 64];
/// Threads per block, all dimensions together.
pub const MAX_THREADS_PER_BLOCK: u32 = 1024;
/// Blocks in a thread-block cluster without the non-portable opt-in.
pub const MAX_CLUSTER: u32 = 8;
/// Grid dimensions (x, y, z).
pub const MAX_GRID: [u32; 3] = [(1 << 31) - 1, 65535, 65535];
const GLOBAL_BASE: u64 = 0x1_0000_0000;
const SHARED_WIN: u64 = 0x7e00_0000_0000;
const LOCAL_WIN: u64 = 0x7f00_0000_0000;
const WIN_SIZE: u64 = 1 << 32;
/// A `.shared::cluster` address is `(rank + 1) << CLUSTER_SHIFT | offset`
/// (what `mapa` returns); one below `1 << CLUSTER_SHIFT` is the block's
/// own (a plain shared address), as the `.shared::cta` window lies inside
/// the `.shared::cluster` one. A block has at most 227 KiB.
const CLUSTER_SHIFT: u32 = 24;

/// The `.shared::cluster` address of byte `off` of the block of rank `rank`.
fn cluster_addr(rank: u64, off: u64) -> u64 {
    (rank + 1) << CLUSTER_SHIFT | off
}

/// A `.shared::cluster` address as (the rank it names, or `None` for the
/// block's own plain shared address; the offset in that block).
fn cluster_split(a: u64) -> (Option<u64>, u64) {
    let off = a & ((1 << CLUSTER_SHIFT) - 1);
    match a >> CLUSTER_SHIFT {
        0 => (None, off),
        r => (Some(r - 1), off),
    }
}

/// A kernel argument, laid out per the kernel's `.param` declarations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ParamValue {
    /// 4 bytes, a CUDA `unsigned`.
    U32(u32),
    /// 4 bytes, a CUDA `int`.
    I32(i32),
    /// 8 bytes, a CUDA `unsigned long long` / `size_t`.
    U64(u64),
    /// 4 bytes, a CUDA `float`.
    F32(f32),
    /// 8 bytes, a CUDA `double`.
    F64(f64),
    /// 8 bytes, a global address from [`Simulator::alloc`] (a CUDA pointer).
    Ptr(u64),
}

/// What one launch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LaunchStats {
    /// Thread-instructions executed (predicated-off ones included).
    pub instructions: u64,
    /// Threads launched (grid size times block size).
    pub threads: u64,
}

/// Device memory with its checks' state. The race shadow is kept per
/// 4-byte word: the kernels access memory in whole words, and a byte model
/// would update four identical entries each time. The first access to part
/// of a word splits it into four byte entries, copies of the word's (what
/// the byte model would hold), so the checks are the byte model's exactly.
#[derive(Default)]
struct Region<E = Sh> {
    data: Vec<u8>,
    init: Vec<u8>,
    shadow: Vec<E>,
    split: HashMap<usize, [E; 4]>,
}

impl<E: Entry> Region<E> {
    fn new(bytes: usize, zeroed: bool) -> Self {
        Region {
            data: vec![0; bytes],
            init: vec![zeroed as u8; bytes],
            shadow: Vec::new(),
            split: HashMap::new(),
        }
    }

    /// Makes the race shadow, one entry per word, at the first checked
    /// access (local memory and host copies never need one).
    fn ensure_shadow(&mut self) {
        if self.shadow.is_empty() {
            self.shadow
                .resize(self.data.len().div_ceil(4), E::default());
        }
    }

    /// [`Region::new`] again, in the allocations this one already has
    /// (`new` keeps `vec!`: a fresh allocation's zeroed pages cost nothing
    /// until they are touched, which a device allocation may never be).
    fn renew(&mut self, bytes: usize, zeroed: bool) {
        self.data.clear();
        self.data.resize(bytes, 0);
        self.init.clear();
        self.init.resize(bytes, zeroed as u8);
        self.shadow.clear();
        self.split.clear();
    }
}

/// What a register holds before its thread writes it: a NaN as f64, as
/// f32 (low half) and as f16 (low quarter), so a kernel that reads one
/// it never wrote computes NaNs instead of a quiet zero. Registers are
/// not cleared between blocks or launches (on a GPU their contents are
/// undefined): the block before's values stay, as they would there.
const REG_POISON: u64 = 0x7FF4_DEAD_7FC0_7E01;

/// What a launch leaves for the next: its registers and its blocks' shared
/// and local memory. Fresh pages cost the kernel a page fault each, which
/// took a third of the simulator's time (the selftest: 3.6 s of 10.2 s in
/// the kernel, two thirds of the faults on register writes). Reused,
/// registers cost nothing (not cleared, [`REG_POISON`]) and shared and
/// local memory a memset.
#[derive(Default)]
struct Spare {
    regs: Vec<u64>,
    shared: Vec<Region<Near>>,
    cshared: Vec<Region<Sh>>,
    local: Vec<Region>,
}

/// `n` regions of `bytes` each, as new, taken from `pool` where it has them.
fn regions<E: Entry>(pool: &mut Vec<Region<E>>, n: usize, bytes: usize) -> Vec<Region<E>> {
    (0..n)
        .map(|_| {
            let mut r = pool.pop().unwrap_or_default();
            r.renew(bytes, false);
            r
        })
        .collect()
}

/// The simulated device: memory plus loaded modules.
pub struct Simulator {
    seed: u64,
    kernels: HashMap<String, Kernel>,
    allocs: BTreeMap<u64, Region>,
    next: u64,
    launch_id: u32,
    /// Per kernel: the dynamic shared memory it opted in to.
    shared_opt_in: HashMap<String, u32>,
    /// Upper bound on thread-instructions per launch (catches endless spin loops).
    pub max_instructions: u64,
    spare: Spare,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum TState {
    Run,
    Bar,
    Warp,
    /// At `barrier.cluster.wait`, its phase not complete.
    ClusterWait,
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

#[derive(Default)]
struct BlockSt {
    bar_epoch: u32,
    fence_epoch: u32,
    at_bar: u32,
    done: u32,
    /// Threads of the block between `barrier.cluster.arrive` and its wait.
    arrived: u32,
    /// Cluster barrier phases completed (kept on every block of the cluster).
    cl_phase: u32,
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
    /// Per thread: the call stack, (call-site pc, function index) per frame.
    frames: Vec<Vec<(u32, u16)>>,
    /// Thread slots per block: the block size rounded up to whole warps,
    /// so slot `t` is lane `t % 32` of warp `t / 32` and a warp never spans
    /// two blocks (the padding lanes are born exited).
    tps: u32,
    blocks: Vec<BlockSt>,
    /// The wave's blocks' shared memory, race-checked within the block
    /// (clusters of one block)...
    shared: Vec<Region<Near>>,
    /// ... or, in a launch with clusters of several blocks, with the full
    /// entry, whose check also orders accesses across blocks (sched.rs).
    cshared: Vec<Region<Sh>>,
    /// Blocks per cluster (1 without `.reqnctapercluster`).
    csize: u32,
    /// Per thread slot: the cluster barrier phase it arrived at + 1, until
    /// its wait (0: not arrived).
    cl_pending: Vec<u32>,
    /// Threads between `barrier.cluster.arrive` and its wait, in all.
    in_limbo: u32,
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
            shared_opt_in: HashMap::new(),
            max_instructions: 20_000_000_000,
            spare: Spare::default(),
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

    /// Releases the allocation that starts at `addr`; any other address is an error.
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

    /// Copies device bytes at `addr` into `out` (the host side does not check initialisation).
    pub fn read(&self, addr: u64, out: &mut [u8]) -> Result<()> {
        let (off, r) = self.host_region(addr, out.len())?;
        let o = off as usize;
        out.copy_from_slice(&r.data[o..o + out.len()]);
        Ok(())
    }

    /// The dynamic shared memory `kernel` may be launched with now: what
    /// it opted in to, else what is left of the default 48 KiB after its
    /// static shared memory (as the driver computes it).
    pub fn max_dynamic_shared(&self, kernel: &str) -> Result<u32> {
        let k = self
            .kernels
            .get(kernel)
            .ok_or_else(|| err(kernel, "no such kernel in the loaded modules".into()))?;
        Ok(self.dynamic_shared_of(kernel, k))
    }

    fn dynamic_shared_of(&self, name: &str, k: &Kernel) -> u32 {
        self.shared_opt_in
            .get(name)
            .copied()
            .unwrap_or(DEFAULT_SHARED_PER_BLOCK.saturating_sub(k.static_shared))
    }

    /// Lets `kernel` use up to `bytes` of dynamic shared memory, as
    /// `cuFuncSetAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES)`
    /// does; refused, as there, when static plus `bytes` exceeds what a
    /// block may use ([`MAX_SHARED_PER_BLOCK`]).
    pub fn set_max_dynamic_shared(&mut self, kernel: &str, bytes: u32) -> Result<()> {
        let k = self
            .kernels
            .get(kernel)
            .ok_or_else(|| err(kernel, "no such kernel in the loaded modules".into()))?;
        if u64::from(k.static_shared) + u64::from(bytes) > u64::from(MAX_SHARED_PER_BLOCK) {
            return Err(err(
                kernel,
                format!(
                    "opting in to {bytes} bytes of dynamic shared memory: with its {} static \
                     bytes that exceeds the {MAX_SHARED_PER_BLOCK} a block may use (the driver \
                     refuses the attribute)",
                    k.static_shared
                ),
            ));
        }
        self.shared_opt_in.insert(kernel.to_string(), bytes);
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
}
