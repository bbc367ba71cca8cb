//! [`GpuDevice`] on the PTX simulator (`crate::sim`).
//!
//! NOT YET WIRED: written against the simulator API announced in issue 3
//! (`Simulator::new(seed)`, `load_module(name, ptx)`, `alloc / alloc_zeroed /
//! free / write / read`, `launch(kernel, grid, block, shared_bytes,
//! &[ParamValue])`) before that code was merged. The integrator adds
//! `pub mod sim_device;` to `gpu/mod.rs` and adjusts the calls marked ADJUST
//! to the merged signatures (address type, error type, kernel namespacing).
//!
//! Modules are loaded lazily, once, from the embedded PTX (`gpu::ptx`).
//! `time` is wall-clock time on the host.

use super::device::{DeviceError, DevicePtr, GpuDevice, KernelArg, LaunchConfig};
use super::ptx;
use crate::error::Result;
use crate::sim::{ParamValue, Simulator};
use std::collections::HashSet;
use std::fmt::Display;

/// Dynamic shared memory one block may use, as on sm_90 with the opt-in (227 KiB).
const MAX_SHARED_BYTES: u32 = 227 * 1024;

/// The simulator behind the device seam.
pub struct SimDevice {
    sim: Simulator,
    seed: u64,
    loaded: HashSet<String>,
}

impl SimDevice {
    /// A simulator whose thread interleaving is shuffled by `seed`.
    pub fn new(seed: u64) -> Self {
        SimDevice {
            sim: Simulator::new(seed),
            seed,
            loaded: HashSet::new(),
        }
    }

    /// The simulator itself (statistics, checks).
    pub fn simulator(&mut self) -> &mut Simulator {
        &mut self.sim
    }

    fn err(&self, e: impl Display) -> crate::Error {
        DeviceError::Backend {
            device: self.name(),
            what: e.to_string(),
        }
        .into()
    }
}

impl GpuDevice for SimDevice {
    fn name(&self) -> String {
        format!("PTX simulator (seed {})", self.seed)
    }

    fn alloc(&mut self, bytes: usize) -> Result<DevicePtr> {
        // ADJUST: assumes `alloc(usize) -> Result<u64, E: Display>`.
        match self.sim.alloc(bytes) {
            Ok(a) => Ok(DevicePtr(a)),
            Err(e) => Err(self.err(e)),
        }
    }

    fn alloc_zeroed(&mut self, bytes: usize) -> Result<DevicePtr> {
        match self.sim.alloc_zeroed(bytes) {
            Ok(a) => Ok(DevicePtr(a)),
            Err(e) => Err(self.err(e)),
        }
    }

    fn free(&mut self, ptr: DevicePtr) -> Result<()> {
        self.sim.free(ptr.0).map_err(|e| self.err(e))
    }

    fn upload(&mut self, dst: DevicePtr, bytes: &[u8]) -> Result<()> {
        self.sim.write(dst.0, bytes).map_err(|e| self.err(e))
    }

    fn download(&mut self, src: DevicePtr, out: &mut [u8]) -> Result<()> {
        self.sim.read(src.0, out).map_err(|e| self.err(e))
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
            self.sim
                .load_module(module, text)
                .map_err(|e| self.err(e))?;
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
        // ADJUST: assumes kernels are looked up by symbol across loaded modules.
        self.sim
            .launch(kernel, cfg.grid, cfg.block, cfg.shared_bytes, &params)
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    fn synchronize(&mut self) -> Result<()> {
        Ok(()) // launches run to completion before `launch` returns
    }

    fn max_shared_bytes(&self) -> u32 {
        MAX_SHARED_BYTES
    }

    fn time<F: FnOnce(&mut Self) -> Result<()>>(&mut self, f: F) -> Result<f64> {
        let start = std::time::Instant::now();
        f(self)?;
        Ok(start.elapsed().as_secs_f64())
    }
}
