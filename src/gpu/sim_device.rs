//! [`GpuDevice`] on the PTX simulator (`crate::sim`).
//!
//! The simulator's own errors (`Error::Sim`, naming kernel, block, thread,
//! PTX line and address) pass through unchanged.
//!
//! Modules are loaded lazily, once, from the embedded PTX (`gpu::ptx`).
//! `time` is wall-clock time on the host. Every launch's thread-instructions
//! are counted per kernel ([`GpuDevice::take_kernel_counts`]).
//!
//! Graph capture works like CUDA stream capture: between `begin_capture`
//! and `end_capture` every `launch` and `zero` is recorded (its arguments
//! copied), not run, and host transfers, waits and frees are refused;
//! `replay` runs the recorded list in order through the same paths an
//! uncaptured launch takes.

use super::cuda_device::NO_CLUSTERS;
use super::device::{
    DevicePtr, GpuDevice, GraphId, KernelArg, KernelCount, LaunchConfig, refused_while_capturing,
};
use super::ptx;
use crate::error::{Error, Result};
use crate::sim::{LaunchStats, ParamValue, Simulator};
use std::collections::{BTreeMap, HashMap, HashSet};

/// One recorded operation of a captured graph.
#[derive(Clone, Debug)]
enum Recorded {
    Launch {
        module: String,
        kernel: String,
        cfg: LaunchConfig,
        args: Vec<KernelArg>,
    },
    Zero {
        dst: DevicePtr,
        bytes: usize,
    },
}

/// Shared memory one block may use (static + dynamic), as on sm_90 with the
/// opt-in; the simulator refuses a launch above it, as the driver does.
const MAX_SHARED_BYTES: u32 = crate::sim::MAX_SHARED_PER_BLOCK;

/// Multiprocessors the simulator reports: a small GPU, so that the
/// simulator's batches of a few rows put several rows in a block.
const MULTIPROCESSORS: u32 = 2;

/// The simulator behind the device seam.
pub struct SimDevice {
    sim: Simulator,
    seed: u64,
    loaded: HashSet<String>,
    last: Option<LaunchStats>,
    /// Per kernel, the launches since the last `take_kernel_counts`.
    counts: BTreeMap<String, KernelCount>,
    /// The operations recorded so far while capturing; `None` when not.
    capturing: Option<Vec<Recorded>>,
    graphs: HashMap<u64, Vec<Recorded>>,
    next_graph: u64,
    /// False where [`NO_CLUSTERS`] is set, as on a GPU.
    clusters: bool,
}

impl SimDevice {
    /// A simulator whose thread interleaving is shuffled by `seed`.
    pub fn new(seed: u64) -> Self {
        SimDevice {
            sim: Simulator::new(seed),
            seed,
            loaded: HashSet::new(),
            last: None,
            counts: BTreeMap::new(),
            capturing: None,
            graphs: HashMap::new(),
            next_graph: 1,
            clusters: std::env::var_os(NO_CLUSTERS).is_none(),
        }
    }

    /// The simulator itself (statistics, checks).
    pub fn simulator(&mut self) -> &mut Simulator {
        &mut self.sim
    }

    /// What the most recent launch did (thread-instructions, threads), for
    /// cost estimates; `None` before the first.
    pub fn last_launch(&self) -> Option<LaunchStats> {
        self.last
    }

    /// Refuses `op` while capturing.
    fn not_capturing(&self, op: &str) -> Result<()> {
        match self.capturing {
            Some(_) => Err(refused_while_capturing(self.name(), op)),
            None => Ok(()),
        }
    }

    fn capture_error(&self, what: String) -> Error {
        super::device::DeviceError::Capture {
            device: self.name(),
            what,
        }
        .into()
    }

    fn run(
        &mut self,
        module: &str,
        kernel: &str,
        cfg: LaunchConfig,
        args: &[KernelArg],
    ) -> Result<()> {
        if !self.loaded.contains(module) {
            let text = ptx::resolve(module)?.ptx;
            self.sim.load_module(module, text)?;
            self.loaded.insert(module.to_string());
        }
        let params: Vec<ParamValue> = args
            .iter()
            .map(|a| match *a {
                KernelArg::Ptr(p) => ParamValue::Ptr(p.0),
                KernelArg::U32(x) => ParamValue::U32(x),
                KernelArg::I32(x) => ParamValue::I32(x),
                KernelArg::U64(x) => ParamValue::U64(x),
                KernelArg::F32(x) => ParamValue::F32(x),
                KernelArg::F64(x) => ParamValue::F64(x),
            })
            .collect();
        // Kernel symbols are unique across our modules (`{op}_{direction}_{dtype}`).
        // Above the default shared memory the kernel opts in first, as
        // CudaDevice::launch does, so that a launch the driver would refuse
        // without it is refused here too.
        if cfg.shared_bytes > self.sim.max_dynamic_shared(kernel)? {
            self.sim.set_max_dynamic_shared(kernel, cfg.shared_bytes)?;
        }
        let stats = self
            .sim
            .launch(kernel, cfg.grid, cfg.block, cfg.shared_bytes, &params)?;
        self.last = Some(stats);
        let count = self.counts.entry(kernel.to_string()).or_default();
        count.launches += 1;
        count.instructions += stats.instructions;
        count.threads += stats.threads;
        Ok(())
    }
}

impl GpuDevice for SimDevice {
    fn name(&self) -> String {
        format!("PTX simulator (seed {})", self.seed)
    }

    fn alloc(&mut self, bytes: usize) -> Result<DevicePtr> {
        self.sim.alloc(bytes).map(DevicePtr)
    }

    fn alloc_zeroed(&mut self, bytes: usize) -> Result<DevicePtr> {
        // CUDA zeroes with a memset on the stream, which a capture would
        // record instead of running: refused on both devices alike.
        self.not_capturing("alloc_zeroed")?;
        self.sim.alloc_zeroed(bytes).map(DevicePtr)
    }

    fn free(&mut self, ptr: DevicePtr) -> Result<()> {
        self.not_capturing("free")?;
        self.sim.free(ptr.0)
    }

    fn upload(&mut self, dst: DevicePtr, bytes: &[u8]) -> Result<()> {
        self.not_capturing("upload")?;
        self.sim.write(dst.0, bytes)
    }

    fn download(&mut self, src: DevicePtr, out: &mut [u8]) -> Result<()> {
        self.not_capturing("download")?;
        self.sim.read(src.0, out)
    }

    fn zero(&mut self, dst: DevicePtr, bytes: usize) -> Result<()> {
        match &mut self.capturing {
            Some(ops) => {
                ops.push(Recorded::Zero { dst, bytes });
                Ok(())
            }
            None => self.sim.write(dst.0, &vec![0u8; bytes]),
        }
    }

    fn launch(
        &mut self,
        module: &str,
        kernel: &str,
        cfg: LaunchConfig,
        args: &[KernelArg],
    ) -> Result<()> {
        match &mut self.capturing {
            Some(ops) => {
                ops.push(Recorded::Launch {
                    module: module.to_string(),
                    kernel: kernel.to_string(),
                    cfg,
                    args: args.to_vec(),
                });
                Ok(())
            }
            None => self.run(module, kernel, cfg, args),
        }
    }

    fn synchronize(&mut self) -> Result<()> {
        self.not_capturing("synchronize")?;
        Ok(()) // launches run to completion before `launch` returns
    }

    fn can_capture(&self) -> bool {
        true
    }

    fn begin_capture(&mut self) -> Result<()> {
        if self.capturing.is_some() {
            return Err(self.capture_error("begin_capture while already capturing".into()));
        }
        self.capturing = Some(Vec::new());
        Ok(())
    }

    fn end_capture(&mut self) -> Result<GraphId> {
        let Some(ops) = self.capturing.take() else {
            return Err(self.capture_error("end_capture without begin_capture".into()));
        };
        let id = self.next_graph;
        self.next_graph += 1;
        self.graphs.insert(id, ops);
        Ok(GraphId(id))
    }

    fn replay(&mut self, graph: GraphId) -> Result<()> {
        self.not_capturing("replay")?;
        let Some(ops) = self.graphs.get(&graph.0).cloned() else {
            return Err(self.capture_error(format!("replay of unknown graph {}", graph.0)));
        };
        for op in &ops {
            match op {
                Recorded::Launch {
                    module,
                    kernel,
                    cfg,
                    args,
                } => self.run(module, kernel, *cfg, args)?,
                Recorded::Zero { dst, bytes } => self.zero(*dst, *bytes)?,
            }
        }
        Ok(())
    }

    fn drop_graph(&mut self, graph: GraphId) -> Result<()> {
        self.not_capturing("drop_graph")?; // as on CUDA, which must wait for replays
        match self.graphs.remove(&graph.0) {
            Some(_) => Ok(()),
            None => Err(self.capture_error(format!("drop of unknown graph {}", graph.0))),
        }
    }

    fn max_shared_bytes(&self) -> u32 {
        MAX_SHARED_BYTES
    }

    fn multiprocessors(&self) -> u32 {
        MULTIPROCESSORS
    }

    /// The simulator runs clusters (`.reqnctapercluster`, `mapa`, the
    /// cluster barrier) with its race and bounds checks; [`NO_CLUSTERS`]
    /// turns them off as it does on a GPU, so that what it changes can be
    /// checked here.
    fn clusters(&self) -> bool {
        self.clusters
    }

    fn time<F: FnOnce(&mut Self) -> Result<()>>(&mut self, f: F) -> Result<f64> {
        self.not_capturing("time")?;
        let start = std::time::Instant::now();
        f(self)?;
        Ok(start.elapsed().as_secs_f64())
    }

    fn take_kernel_counts(&mut self) -> Vec<KernelCount> {
        std::mem::take(&mut self.counts)
            .into_iter()
            .map(|(kernel, count)| KernelCount { kernel, ..count })
            .collect()
    }
}
