//! [`GpuDevice`] on a real NVIDIA GPU, through `cudarc`'s driver API (DESIGN §4).
//!
//! cudarc is built with `dynamic-loading`, so the crate builds and runs
//! with no CUDA installed; but cudarc panics when a driver call cannot open
//! libcuda (or finds a symbol missing). Hence nothing here calls the driver
//! before `is_culib_present()` said yes, the driver must be new enough for
//! the CUDA 13.0 bindings and PTX, and the first calls run under
//! `catch_unwind` as well. Every failure to get a usable GPU is
//! `Error::BackendUnavailable` naming the cause.
//!
//! Memory is raw driver allocations remembered by base address and size:
//! a [`DevicePtr`] is an opaque address that may point into the middle of
//! one (`DevicePtr::offset`), and every copy is bounds-checked against
//! them before the driver sees it. All work goes on one stream, in order;
//! `download` and `upload` wait for it, so host buffers are never in use
//! after they return.
//!
//! A crate that already runs cudarc can hand in its own stream
//! ([`CudaDevice::on_stream`]: the kernels load into that stream's context
//! and run in its order) and its own buffers ([`CudaDevice::register_external`]:
//! bounds-checked like ours, never freed by us); `crate::gpu::op_cuda` is
//! the typed op over them.
//!
//! Graphs (stream capture, instantiated graphs) are in `graph.rs`.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, Once, OnceLock, PoisonError};

use cudarc::driver::sys::{self, CUdevice_attribute, CUevent_flags, CUfunction_attribute};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaStream, DriverError, PushKernelArg, result,
};
use cudarc::nvrtc::Ptx;

use super::device::{DeviceError, DevicePtr, GpuDevice, GraphId, KernelArg, LaunchConfig};
use super::ptx;
use crate::error::{Error, Result};

mod graph;

/// Dynamic shared memory a kernel may use without opting in.
const DEFAULT_SHARED_BYTES: u32 = 48 * 1024;
/// The PTX comes from CUDA 13.0's nvcc and the bindings are cudarc's CUDA
/// 13.0 ones: an older driver can neither JIT the PTX nor provide every
/// symbol (cudarc would panic on the first missing one).
const MIN_DRIVER_VERSION: i32 = 13000;

/// One kernel, loaded once. `static_shared` is what the kernel declares
/// itself (`CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES`); `shared_opt_in` the
/// dynamic shared memory it may request now: 48 KiB less the static part
/// until a launch raised it. The driver holds static + dynamic to both
/// limits, so both are counted here, never the dynamic part alone.
struct Kernel {
    module: String,
    name: &'static str,
    func: CudaFunction,
    static_shared: u32,
    shared_opt_in: u32,
}

/// Set (to anything), the GPU (and the simulator, `SimDevice`) reports no
/// thread-block clusters, so that every cluster path refuses at once
/// instead of launching. The GPU check
/// sets it when the cluster kernels hang (a barrier that never completes
/// cannot be interrupted from the host), so that one hang costs one part's
/// time limit, not every later part's.
pub const NO_CLUSTERS: &str = "CHARLSTM_NO_CLUSTERS";

/// Whether a device of compute capability `major` runs clusters, given the
/// value of [`NO_CLUSTERS`].
fn clusters_on(major: i32, no_clusters: Option<std::ffi::OsString>) -> bool {
    major >= 9 && no_clusters.is_none()
}

/// A GPU behind the device seam: one context, one stream.
pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    name: String,
    max_shared: u32,
    multiprocessors: u32,
    /// Thread-block clusters: compute capability 9.0 or newer, and not
    /// turned off ([`NO_CLUSTERS`]).
    clusters: bool,
    modules: HashMap<String, Arc<CudaModule>>,
    /// Keyed by symbol: symbols are unique across our modules (`{op}_{direction}_{dtype}`).
    kernels: HashMap<String, Kernel>,
    /// Base address -> size in bytes of every live allocation, ours and
    /// the caller's registered ones.
    allocations: BTreeMap<u64, usize>,
    /// Base address -> registrations of the caller's regions in
    /// `allocations`: never freed here.
    external: HashMap<u64, usize>,
    /// True between `begin_capture` and `end_capture`.
    capturing: bool,
    /// The instantiated graphs, by `GraphId`.
    graphs: HashMap<u64, graph::Graph>,
    next_graph: u64,
    /// The host bytes of `upload_queued` copies the stream may still read:
    /// kept until the next wait for the stream.
    queued: Vec<Vec<u8>>,
}

/// Queued uploads held before one waits for the stream anyway (a caller
/// that never waits would otherwise grow the list without bound).
const MAX_QUEUED: usize = 256;

impl CudaDevice {
    /// The GPU with this ordinal (0 = the first), or `BackendUnavailable`
    /// saying why not: no driver, a driver too old, no GPU, no such ordinal.
    pub fn new(ordinal: usize) -> Result<CudaDevice> {
        let name = check_driver(ordinal).map_err(unavailable)?;
        guarded(|| Self::open(ordinal, name))
            .map_err(|why| unavailable(format!("could not open GPU {ordinal}: {why}")))
    }

    /// The name of the first GPU, or a sentence saying why there is none
    /// usable; cheap (no context is created), for `--device auto`.
    pub fn probe() -> std::result::Result<String, String> {
        check_driver(0)
    }

    /// A device on the caller's `stream` (and its context): our kernels
    /// load into that context and every launch and copy goes on that
    /// stream, in order with the caller's own work. Nothing is copied; the
    /// caller's buffers join through [`register_external`](Self::register_external).
    pub fn on_stream(stream: Arc<CudaStream>) -> Result<CudaDevice> {
        let ctx = stream.context().clone();
        let ordinal = ctx.ordinal();
        let name = check_driver(ordinal).map_err(unavailable)?;
        guarded(|| Self::with_stream(ctx, stream, name))
            .map_err(|why| unavailable(format!("could not use the stream on GPU {ordinal}: {why}")))
    }

    /// The stream every launch goes on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Makes `bytes` bytes at the caller's device address `ptr` (a
    /// `CudaSlice`'s, in this device's context) usable in launches and
    /// copies, bounds-checked like an allocation of ours; it is never freed
    /// here. Registering the same region again counts; each registration
    /// is undone by one [`unregister_external`](Self::unregister_external).
    pub fn register_external(&mut self, ptr: u64, bytes: usize) -> Result<DevicePtr> {
        let bad = |what: String| -> Result<DevicePtr> {
            Err(DeviceError::BadArguments {
                kernel: "register_external",
                what,
            }
            .into())
        };
        if ptr == 0 {
            return bad("the null pointer is no buffer; pass a CudaSlice's device pointer".into());
        }
        match (self.allocations.get(&ptr), self.external.get_mut(&ptr)) {
            (Some(_), None) => {
                return bad(format!(
                    "{ptr:#x} is an allocation of this device, not the caller's"
                ));
            }
            (Some(size), Some(count)) => {
                *count += 1;
                let size = (*size).max(bytes);
                self.allocations.insert(ptr, size);
            }
            _ => {
                self.allocations.insert(ptr, bytes);
                self.external.insert(ptr, 1);
            }
        }
        Ok(DevicePtr(ptr))
    }

    /// Undoes one [`register_external`](Self::register_external) of `ptr`.
    pub fn unregister_external(&mut self, ptr: DevicePtr) -> Result<()> {
        match self.external.get_mut(&ptr.0) {
            Some(count) if *count > 1 => *count -= 1,
            Some(_) => {
                self.external.remove(&ptr.0);
                self.allocations.remove(&ptr.0);
            }
            None => {
                return Err(DeviceError::BadArguments {
                    kernel: "unregister_external",
                    what: format!("{:#x} is not a registered region of the caller", ptr.0),
                }
                .into());
            }
        }
        Ok(())
    }

    fn open(ordinal: usize, name: String) -> std::result::Result<CudaDevice, String> {
        let ctx = CudaContext::new(ordinal).map_err(describe)?;
        let stream = ctx.new_stream().map_err(describe)?;
        Self::with_stream(ctx, stream, name)
    }

    fn with_stream(
        ctx: Arc<CudaContext>,
        stream: Arc<CudaStream>,
        name: String,
    ) -> std::result::Result<CudaDevice, String> {
        let optin = CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN;
        let max_shared = ctx.attribute(optin).map_err(describe)?;
        let sms = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(describe)?;
        let major = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
            .map_err(describe)?;
        Ok(CudaDevice {
            ctx,
            stream,
            name,
            max_shared: u32::try_from(max_shared).unwrap_or(DEFAULT_SHARED_BYTES),
            multiprocessors: u32::try_from(sms).unwrap_or(1).max(1),
            clusters: clusters_on(major, std::env::var_os(NO_CLUSTERS)),
            modules: HashMap::new(),
            kernels: HashMap::new(),
            allocations: BTreeMap::new(),
            external: HashMap::new(),
            capturing: false,
            graphs: HashMap::new(),
            next_graph: 1,
            queued: Vec::new(),
        })
    }

    fn backend_error(&self, what: impl std::fmt::Display, e: DriverError) -> Error {
        DeviceError::Backend {
            device: self.name.clone(),
            what: format!("{what}: {}", describe(e)),
        }
        .into()
    }

    /// Makes our context current: cudarc's safe calls do this themselves,
    /// the raw memory calls here do not.
    fn bind(&self) -> Result<()> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| self.backend_error("binding the context", e))
    }

    fn sync_stream(&self) -> Result<()> {
        self.not_capturing("a wait for the device")?;
        self.stream
            .synchronize()
            .map_err(|e| self.backend_error("waiting for the device", e))
    }

    /// [`sync_stream`](Self::sync_stream), after which no queued upload
    /// reads its host bytes any more.
    fn wait(&mut self) -> Result<()> {
        self.sync_stream()?;
        self.queued.clear();
        Ok(())
    }

    /// `[ptr, ptr + len)` lies inside one live allocation.
    fn check_span(&self, ptr: DevicePtr, len: usize, op: &str) -> Result<()> {
        let inside = self
            .allocations
            .range(..=ptr.0)
            .next_back()
            .is_some_and(|(&base, &size)| {
                (ptr.0 - base)
                    .checked_add(len as u64)
                    .is_some_and(|end| end <= size as u64)
            });
        if inside {
            return Ok(());
        }
        Err(DeviceError::BadArguments {
            kernel: "memcpy",
            what: format!(
                "{op} of {len} bytes at {:#x} is outside every allocation",
                ptr.0
            ),
        }
        .into())
    }

    fn alloc_error(&self, bytes: usize, e: DriverError) -> Error {
        if e.0 != sys::cudaError_enum::CUDA_ERROR_OUT_OF_MEMORY {
            return self.backend_error(format!("allocating {bytes} bytes"), e);
        }
        let free = result::mem_get_info().map_or(0, |(free, _)| free);
        DeviceError::OutOfMemory {
            device: self.name.clone(),
            requested: bytes,
            free,
        }
        .into()
    }

    /// Loads `module`'s fatbin (the driver picks the sm_90 SASS on a
    /// Hopper GPU and JIT-compiles the PTX in it elsewhere), or its PTX when
    /// the build made no fatbin or the driver refuses it.
    fn load_module(&self, module: &str) -> Result<Arc<CudaModule>> {
        let m = ptx::resolve(module)?;
        let fatbin_refused = match m.fatbin {
            Some(image) => match self.ctx.load_module(Ptx::from_binary(image.to_vec())) {
                Ok(loaded) => return Ok(loaded),
                Err(e) => Some(describe(e)),
            },
            None => None,
        };
        self.ctx.load_module(Ptx::from_src(m.ptx)).map_err(|e| {
            let also = fatbin_refused
                .map(|f| format!(" (after its fatbin was refused: {f})"))
                .unwrap_or_default();
            self.backend_error(format!("loading module {module} from PTX{also}"), e)
        })
    }

    /// Loads `kernel` of `module` on first use.
    fn load(&mut self, module: &str, kernel: &str) -> Result<()> {
        if let Some(k) = self.kernels.get(kernel) {
            if k.module == module {
                return Ok(());
            }
            return Err(DeviceError::BadArguments {
                kernel: k.name,
                what: format!("asked for in module {module:?}, loaded from {:?}", k.module),
            }
            .into());
        }
        if !self.modules.contains_key(module) {
            let m = self.load_module(module)?;
            self.modules.insert(module.to_string(), m);
        }
        let func = self.modules[module]
            .load_function(kernel)
            .map_err(|e| self.backend_error(format!("kernel {kernel} of module {module}"), e))?;
        let attr = CUfunction_attribute::CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES;
        let static_shared = func
            .get_attribute(attr)
            .map_err(|e| self.backend_error(format!("static shared memory of {kernel}"), e))?;
        let static_shared = u32::try_from(static_shared).unwrap_or(0);
        self.kernels.insert(
            kernel.to_string(),
            Kernel {
                module: module.to_string(),
                name: intern(kernel),
                func,
                static_shared,
                shared_opt_in: DEFAULT_SHARED_BYTES.saturating_sub(static_shared),
            },
        );
        Ok(())
    }
}

impl GpuDevice for CudaDevice {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn alloc(&mut self, bytes: usize) -> Result<DevicePtr> {
        self.bind()?;
        // SAFETY: our context is current (bind). The memory is uninitialised,
        // which `alloc` promises; it is only ever read through copies and
        // kernels, never as a Rust value. cuMemAlloc refuses 0 bytes; one byte
        // keeps every pointer distinct and non-null.
        let ptr =
            unsafe { result::malloc_sync(bytes.max(1)) }.map_err(|e| self.alloc_error(bytes, e))?;
        self.allocations.insert(ptr, bytes);
        Ok(DevicePtr(ptr))
    }

    fn alloc_zeroed(&mut self, bytes: usize) -> Result<DevicePtr> {
        // The memset below would be recorded into the graph, not run.
        self.not_capturing("alloc_zeroed")?;
        let ptr = self.alloc(bytes)?;
        // SAFETY: `ptr` is a live allocation of at least `bytes` bytes made
        // just above in our (current) context; the memset is ordered on our
        // stream before any later work on it.
        unsafe { result::memset_d8_async(ptr.0, 0, bytes, self.stream.cu_stream()) }
            .map_err(|e| self.backend_error(format!("zeroing {bytes} bytes"), e))?;
        Ok(ptr)
    }

    fn free(&mut self, ptr: DevicePtr) -> Result<()> {
        self.not_capturing("free")?;
        if self.external.contains_key(&ptr.0) {
            return Err(DeviceError::BadArguments {
                kernel: "free",
                what: format!(
                    "{:#x} is the caller's memory (register_external): it is never freed here; \
                     call unregister_external",
                    ptr.0
                ),
            }
            .into());
        }
        if self.allocations.remove(&ptr.0).is_none() {
            return Err(DeviceError::BadArguments {
                kernel: "free",
                what: format!("{:#x} is not a live allocation of this device", ptr.0),
            }
            .into());
        }
        // Kernels still queued may use the memory.
        self.wait()?;
        self.bind()?;
        // SAFETY: `ptr` came from `malloc_sync` in this context and was live
        // until just now (removed from the map, so it is freed once), and
        // the stream is idle, so no queued work uses it.
        unsafe { result::free_sync(ptr.0) }
            .map_err(|e| self.backend_error(format!("freeing {:#x}", ptr.0), e))
    }

    fn upload(&mut self, dst: DevicePtr, bytes: &[u8]) -> Result<()> {
        // Queued from the device's own copy of the bytes, then waited for:
        // the caller gets the transfer done (and the kernels queued before
        // it), as a per-batch download would wait anyway.
        self.upload_queued(dst, bytes)?;
        self.wait()
    }

    fn upload_queued(&mut self, dst: DevicePtr, bytes: &[u8]) -> Result<()> {
        self.not_capturing("upload")?;
        if bytes.is_empty() {
            return Ok(());
        }
        self.check_span(dst, bytes.len(), "upload")?;
        self.bind()?;
        if self.queued.len() >= MAX_QUEUED {
            self.wait()?;
        }
        let owned = bytes.to_vec();
        // SAFETY: `[dst, dst + len)` is inside one live allocation
        // (check_span); `owned`'s heap buffer is kept in `self.queued`
        // (moving the Vec does not move it) until `wait` has seen the
        // stream idle, or `drop` has synchronised it.
        unsafe { result::memcpy_htod_async(dst.0, &owned[..], self.stream.cu_stream()) }
            .map_err(|e| self.backend_error(format!("uploading {} bytes", owned.len()), e))?;
        self.queued.push(owned);
        Ok(())
    }

    fn zero(&mut self, dst: DevicePtr, bytes: usize) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        self.check_span(dst, bytes, "zero")?;
        self.bind()?;
        // SAFETY: `[dst, dst + bytes)` is inside one live allocation
        // (check_span); no host memory is involved, so nothing must outlive a
        // borrow and the memset can stay queued behind the kernels.
        unsafe { result::memset_d8_async(dst.0, 0, bytes, self.stream.cu_stream()) }
            .map_err(|e| self.backend_error(format!("zeroing {bytes} bytes"), e))
    }

    fn download(&mut self, src: DevicePtr, out: &mut [u8]) -> Result<()> {
        self.not_capturing("download")?;
        if out.is_empty() {
            return self.wait();
        }
        self.check_span(src, out.len(), "download")?;
        self.bind()?;
        let len = out.len();
        // SAFETY: `[src, src + len)` is inside one live allocation
        // (check_span); `out` stays borrowed until the stream is idle, which
        // we wait for below before returning; any byte pattern is a valid u8.
        unsafe { result::memcpy_dtoh_async(out, src.0, self.stream.cu_stream()) }
            .map_err(|e| self.backend_error(format!("downloading {len} bytes"), e))?;
        self.wait()
    }

    fn launch(
        &mut self,
        module: &str,
        kernel: &str,
        cfg: LaunchConfig,
        args: &[KernelArg],
    ) -> Result<()> {
        self.load(module, kernel)?;
        self.bind()?;
        let k = self.kernels.get_mut(kernel).expect("loaded just above");
        if cfg.shared_bytes > k.shared_opt_in {
            let total = u64::from(k.static_shared) + u64::from(cfg.shared_bytes);
            let refused = DeviceError::SharedMemory {
                kernel: k.name,
                requested: total as usize,
                limit: self.max_shared,
            };
            if total > u64::from(self.max_shared) {
                return Err(refused.into());
            }
            let attr = CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES;
            if k.func.set_attribute(attr, cfg.shared_bytes as i32).is_err() {
                return Err(refused.into());
            }
            k.shared_opt_in = cfg.shared_bytes;
        }
        let mut builder = self.stream.launch_builder(&k.func);
        // The builder keeps pointers to the values: they borrow from `args`,
        // which outlives the launch call.
        for a in args {
            match a {
                // A device address is passed by value as the 64-bit pointer
                // parameter it stands for: same size, same ABI.
                KernelArg::Ptr(p) => builder.arg(&p.0),
                KernelArg::U32(x) => builder.arg(x),
                KernelArg::I32(x) => builder.arg(x),
                KernelArg::U64(x) => builder.arg(x),
                KernelArg::F32(x) => builder.arg(x),
                KernelArg::F64(x) => builder.arg(x),
            };
        }
        let launch = cudarc::driver::LaunchConfig {
            grid_dim: (cfg.grid[0], cfg.grid[1], cfg.grid[2]),
            block_dim: (cfg.block[0], cfg.block[1], cfg.block[2]),
            shared_mem_bytes: cfg.shared_bytes,
        };
        // SAFETY: the `GpuDevice::launch` contract: `args` match the kernel's
        // parameters in number, order and C type (KernelArg documents the
        // mapping; each launcher states it next to its launch), and the
        // launchers check dims and buffer sizes before launching. The dynamic
        // shared memory was allowed above. Any fault the kernel still makes
        // comes back as a driver error from the next call, not as host UB.
        unsafe { builder.launch(launch) }
            .map_err(|e| self.backend_error(format!("launching {kernel}"), e))?;
        Ok(())
    }

    fn synchronize(&mut self) -> Result<()> {
        self.not_capturing("synchronize")?;
        self.wait()
    }

    fn can_capture(&self) -> bool {
        true
    }

    fn begin_capture(&mut self) -> Result<()> {
        self.capture_begin()
    }

    fn end_capture(&mut self) -> Result<GraphId> {
        self.capture_end()
    }

    fn replay(&mut self, graph: GraphId) -> Result<()> {
        self.graph_replay(graph)
    }

    fn drop_graph(&mut self, graph: GraphId) -> Result<()> {
        self.graph_drop(graph)
    }

    fn max_shared_bytes(&self) -> u32 {
        self.max_shared
    }

    fn multiprocessors(&self) -> u32 {
        self.multiprocessors
    }

    fn clusters(&self) -> bool {
        self.clusters
    }

    fn time<F: FnOnce(&mut Self) -> Result<()>>(&mut self, f: F) -> Result<f64> {
        self.not_capturing("time")?;
        let timed = Some(CUevent_flags::CU_EVENT_DEFAULT);
        let start = self
            .stream
            .record_event(timed)
            .map_err(|e| self.backend_error("recording a start event", e))?;
        f(self)?;
        let end = self
            .stream
            .record_event(timed)
            .map_err(|e| self.backend_error("recording an end event", e))?;
        let ms = start
            .elapsed_ms(&end)
            .map_err(|e| self.backend_error("reading the events", e))?;
        Ok(f64::from(ms) / 1e3)
    }
}

impl Drop for CudaDevice {
    fn drop(&mut self) {
        // Nothing to report to at drop time; the context is released next anyway.
        if self.capturing {
            // An error mid-capture: leave capture mode so the stream can drain.
            self.capturing = false;
            let _ = self.stream.end_capture(sys::CUgraphInstantiate_flags(0));
        }
        let _ = self.sync_stream();
        self.graphs.clear();
        if self.bind().is_err() {
            return;
        }
        for &ptr in self.allocations.keys() {
            if self.external.contains_key(&ptr) {
                continue;
            }
            // SAFETY: each entry is a live allocation of ours, freed once
            // here, after the stream went idle.
            let _ = unsafe { result::free_sync(ptr) };
        }
    }
}

/// The name of GPU `ordinal`, once the driver is known to be loadable,
/// initialised, new enough and to have that GPU; else why not.
fn check_driver(ordinal: usize) -> std::result::Result<String, String> {
    // SAFETY: this only tries to open the library under its usual names
    // and closes it again; it never calls into it.
    if !unsafe { sys::is_culib_present() } {
        return Err("no NVIDIA driver found (libcuda.so could not be loaded)".into());
    }
    guarded(|| {
        match result::init() {
            Err(e) if e.0 == sys::cudaError_enum::CUDA_ERROR_NO_DEVICE => {
                return Err("no NVIDIA GPU found (the driver is installed but sees none)".into());
            }
            Err(e) => {
                return Err(format!(
                    "the NVIDIA driver failed to start: {}",
                    describe(e)
                ));
            }
            Ok(()) => {}
        }
        let mut version = 0;
        // SAFETY: the library is present (checked above) and the out
        // pointer is a live, writable i32.
        unsafe { sys::cuDriverGetVersion(&mut version) }
            .result()
            .map_err(describe)?;
        if version < MIN_DRIVER_VERSION {
            return Err(format!(
                "the NVIDIA driver supports CUDA {}.{}; the kernels need CUDA 13.0 (driver 580 or newer)",
                version / 1000,
                version % 1000 / 10
            ));
        }
        let count = result::device::get_count().map_err(describe)?;
        let count = usize::try_from(count).unwrap_or(0);
        if count == 0 {
            return Err("no NVIDIA GPU found (the driver is installed but sees none)".into());
        }
        if ordinal >= count {
            return Err(format!(
                "there is no GPU {ordinal}: the driver sees {count} (numbered from 0)"
            ));
        }
        let dev = result::device::get(ordinal as i32).map_err(describe)?;
        result::device::get_name(dev).map_err(describe)
    })
}

thread_local! {
    /// Set while `guarded` runs driver calls on this thread.
    static GUARDED: Cell<bool> = const { Cell::new(false) };
}

/// Runs driver calls, turning a cudarc panic (a library or symbol that
/// cannot be loaded) into the reason it gives. The panic's message becomes
/// our error, so the default hook's report (and backtrace) would only
/// repeat it as noise on stderr: a hook installed once stays quiet for
/// panics inside `guarded` on this thread and passes every other one on.
fn guarded<T>(
    f: impl FnOnce() -> std::result::Result<T, String>,
) -> std::result::Result<T, String> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !GUARDED.with(Cell::get) {
                previous(info);
            }
        }));
    });
    GUARDED.with(|g| g.set(true));
    let outcome = panic::catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(false));
    outcome.unwrap_or_else(|payload| {
        let why = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("unknown reason");
        Err(format!("the CUDA driver library could not be used ({why})"))
    })
}

fn unavailable(what: String) -> Error {
    Error::BackendUnavailable {
        backend: "cuda",
        what,
    }
}

/// "out of memory (CUDA_ERROR_OUT_OF_MEMORY)".
fn describe(e: DriverError) -> String {
    let text = |r: std::result::Result<&std::ffi::CStr, DriverError>| {
        r.map(|s| s.to_string_lossy().into_owned()).ok()
    };
    match (text(e.error_string()), text(e.error_name())) {
        (Some(s), Some(n)) => format!("{s} ({n})"),
        _ => format!("{:?}", e.0),
    }
}

/// A `'static` copy of a kernel name, made once per name: the typed errors
/// name kernels as `&'static str`, while launches name them by `&str`.
fn intern(name: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(&known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusters_need_hopper_and_can_be_turned_off() {
        assert!(clusters_on(9, None));
        assert!(clusters_on(10, None));
        assert!(!clusters_on(8, None));
        assert!(!clusters_on(9, Some("1".into())));
        assert!(!clusters_on(9, Some("".into())));
    }

    /// On a machine without a driver or a GPU both answer with a reason; on
    /// one with a GPU, a GPU that does not exist still does. Neither panics.
    #[test]
    fn missing_gpu_is_an_error_not_a_panic() {
        match CudaDevice::probe() {
            Ok(name) => println!("GPU present: {name}"),
            Err(why) => {
                println!("no GPU here: {why}");
                let err = CudaDevice::new(0).err().expect("probe failed, so new must");
                assert!(err.to_string().contains(&why), "{err}");
            }
        }
        let err = CudaDevice::new(1 << 20)
            .err()
            .expect("no machine has that many GPUs");
        assert!(
            matches!(
                err,
                Error::BackendUnavailable {
                    backend: "cuda",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.hint().contains("NVIDIA driver"), "{}", err.hint());
    }

    #[test]
    fn interned_names_are_shared() {
        let a = intern("rmsprop_update_f32");
        let b = intern(&String::from("rmsprop_update_f32"));
        assert!(std::ptr::eq(a, b));
    }
}
