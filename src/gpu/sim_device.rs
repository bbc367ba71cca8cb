//! [`GpuDevice`] on the PTX simulator (`crate::sim`).
//!
//! The simulator's own errors (`Error::Sim`, naming kernel, block, thread,
//! PTX line and address) pass through unchanged.
//!
//! Modules are loaded lazily, once, from the embedded PTX (`gpu::ptx`).
//! `time` is wall-clock time on the host.

use super::device::{DevicePtr, GpuDevice, KernelArg, LaunchConfig};
use super::ptx;
use crate::error::Result;
use crate::sim::{LaunchStats, ParamValue, Simulator};
use std::collections::HashSet;

/// Dynamic shared memory one block may use, as on sm_90 with the opt-in (227 KiB).
const MAX_SHARED_BYTES: u32 = 227 * 1024;

/// Multiprocessors the simulator reports: a small GPU, so that the
/// simulator's batches of a few rows put several rows in a block.
const MULTIPROCESSORS: u32 = 2;

/// The simulator behind the device seam.
pub struct SimDevice {
    sim: Simulator,
    seed: u64,
    loaded: HashSet<String>,
    last: Option<LaunchStats>,
}

impl SimDevice {
    /// A simulator whose thread interleaving is shuffled by `seed`.
    pub fn new(seed: u64) -> Self {
        SimDevice {
            sim: Simulator::new(seed),
            seed,
            loaded: HashSet::new(),
            last: None,
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
}

impl GpuDevice for SimDevice {
    fn name(&self) -> String {
        format!("PTX simulator (seed {})", self.seed)
    }

    fn alloc(&mut self, bytes: usize) -> Result<DevicePtr> {
        self.sim.alloc(bytes).map(DevicePtr)
    }

    fn alloc_zeroed(&mut self, bytes: usize) -> Result<DevicePtr> {
        self.sim.alloc_zeroed(bytes).map(DevicePtr)
    }

    fn free(&mut self, ptr: DevicePtr) -> Result<()> {
        self.sim.free(ptr.0)
    }

    fn upload(&mut self, dst: DevicePtr, bytes: &[u8]) -> Result<()> {
        self.sim.write(dst.0, bytes)
    }

    fn download(&mut self, src: DevicePtr, out: &mut [u8]) -> Result<()> {
        self.sim.read(src.0, out)
    }

    fn launch(
        &mut self,
        module: &str,
        kernel: &str,
        cfg: LaunchConfig,
        args: &[KernelArg],
    ) -> Result<()> {
        if !self.loaded.contains(module) {
            let text = ptx::module(module)?;
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
        let stats = self
            .sim
            .launch(kernel, cfg.grid, cfg.block, cfg.shared_bytes, &params)?;
        self.last = Some(stats);
        Ok(())
    }

    fn synchronize(&mut self) -> Result<()> {
        Ok(()) // launches run to completion before `launch` returns
    }

    fn max_shared_bytes(&self) -> u32 {
        MAX_SHARED_BYTES
    }

    fn multiprocessors(&self) -> u32 {
        MULTIPROCESSORS
    }

    fn time<F: FnOnce(&mut Self) -> Result<()>>(&mut self, f: F) -> Result<f64> {
        let start = std::time::Instant::now();
        f(self)?;
        Ok(start.elapsed().as_secs_f64())
    }
}
