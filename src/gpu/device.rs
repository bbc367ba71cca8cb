//! The device seam: everything the GPU trainer asks of a device, implemented
//! by the `cudarc` backend (a real GPU) and by the PTX simulator.
//!
//! Memory is addressed by opaque [`DevicePtr`]s; kernels are launched by
//! module name (a `kernels/NAME.cu`, see [`super::ptx`]) and `extern "C"`
//! symbol with raw [`KernelArg`]s. Launching is safe Rust at this level: the
//! per-kernel launcher types (`super::rmsprop`, `super::head`) own the
//! argument contract and state it next to each launch.

use crate::error::Result;

/// Floats of the block reductions' scratch (`block_reduce` in
/// kernels/common.cuh: one per warp, at most 32 warps), which the kernels
/// that reduce keep in their dynamic shared memory, never in a static array.
pub const SCRATCH_FLOATS: usize = 32;

/// A captured graph of a device ([`GpuDevice::end_capture`]), replayed by
/// [`GpuDevice::replay`] until [`GpuDevice::drop_graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GraphId(pub u64);

/// An opaque device address; `DevicePtr::NULL` is the null pointer a kernel
/// may accept for an optional buffer (and the default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DevicePtr(pub u64);

impl DevicePtr {
    /// The null device pointer.
    pub const NULL: DevicePtr = DevicePtr(0);

    /// `self + bytes`, for a sub-buffer (e.g. one tensor of a flat parameter buffer).
    pub fn offset(self, bytes: usize) -> DevicePtr {
        DevicePtr(self.0 + bytes as u64)
    }
}

/// One kernel argument, in the kernel's parameter order. Its variant must
/// match the C type of that parameter: `Ptr` for any pointer, `U32` for
/// `unsigned`, `I32` for `int`, `U64` for `unsigned long long`/`size_t`,
/// `F32` for `float`, `F64` for `double`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KernelArg {
    /// Any pointer parameter (`float*`, `const unsigned*`, ...).
    Ptr(DevicePtr),
    /// An `unsigned` parameter.
    U32(u32),
    /// An `int` parameter.
    I32(i32),
    /// An `unsigned long long` or `size_t` parameter.
    U64(u64),
    /// A `float` parameter.
    F32(f32),
    /// A `double` parameter.
    F64(f64),
}

/// Grid and block dimensions (x, y, z) and dynamic shared memory in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchConfig {
    /// Blocks along x, y, z (`gridDim`).
    pub grid: [u32; 3],
    /// Threads per block along x, y, z (`blockDim`).
    pub block: [u32; 3],
    /// Dynamic shared memory per block, in bytes (`extern __shared__`).
    pub shared_bytes: u32,
}

impl LaunchConfig {
    /// A 1-D launch: `grid` blocks of `block` threads.
    pub fn linear(grid: u32, block: u32, shared_bytes: u32) -> Self {
        LaunchConfig {
            grid: [grid, 1, 1],
            block: [block, 1, 1],
            shared_bytes,
        }
    }
}

pub use crate::error::DeviceError;

/// The launches of one kernel a device counted
/// ([`GpuDevice::take_kernel_counts`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelCount {
    /// The kernel's symbol.
    pub kernel: String,
    /// Its launches (a replayed graph's included).
    pub launches: u64,
    /// Thread-instructions over those launches (the simulator's count,
    /// predicated-off ones included).
    pub instructions: u64,
    /// Threads over those launches (grid size times block size, summed).
    pub threads: u64,
}

/// A device that can hold buffers and run the embedded kernels; `Send`, as
/// an engine over it must be (see [`crate::Engine`]).
pub trait GpuDevice: Send {
    /// Human-readable name, e.g. "NVIDIA H200" or "simulator (seed 7)".
    fn name(&self) -> String;
    /// `bytes` of device memory, contents undefined.
    fn alloc(&mut self, bytes: usize) -> Result<DevicePtr>;
    /// `bytes` of device memory, all zero.
    fn alloc_zeroed(&mut self, bytes: usize) -> Result<DevicePtr>;
    /// Releases an allocation of `alloc`/`alloc_zeroed`.
    fn free(&mut self, ptr: DevicePtr) -> Result<()>;
    /// Copies host bytes to `dst`.
    fn upload(&mut self, dst: DevicePtr, bytes: &[u8]) -> Result<()>;
    /// [`upload`](Self::upload) queued behind the launches without waiting
    /// for them: the device keeps its own copy of `bytes` until its next
    /// wait (CUDA: `upload` waits for the stream, so that the copy cannot
    /// outlive the borrow). The default uploads.
    fn upload_queued(&mut self, dst: DevicePtr, bytes: &[u8]) -> Result<()> {
        self.upload(dst, bytes)
    }
    /// Copies `out.len()` bytes from `src` to the host (waits for prior work).
    fn download(&mut self, src: DevicePtr, out: &mut [u8]) -> Result<()>;
    /// Sets `bytes` bytes at `dst` to zero, ordered with the launches. A
    /// device overrides it to stay asynchronous (CUDA: a memset on the
    /// stream, where an upload from host memory waits for the stream).
    fn zero(&mut self, dst: DevicePtr, bytes: usize) -> Result<()> {
        self.upload(dst, &vec![0u8; bytes])
    }
    /// Launches `kernel` of `module` (loaded lazily, once). `args` must match
    /// the kernel's parameters in number, order and type (see [`KernelArg`]).
    fn launch(
        &mut self,
        module: &str,
        kernel: &str,
        cfg: LaunchConfig,
        args: &[KernelArg],
    ) -> Result<()>;
    /// Waits until all launched work is done.
    fn synchronize(&mut self) -> Result<()>;
    /// Most shared memory one block may use, static and dynamic together
    /// (the opt-in limit; the device refuses a launch above it). Launchers
    /// check their kernel's whole footprint against it and answer
    /// [`DeviceError::SharedMemory`]; the kernels that take dynamic shared
    /// memory declare no static arrays, so that footprint is their request.
    fn max_shared_bytes(&self) -> u32;
    /// Streaming multiprocessors: the persistent LSTM kernels spread a
    /// batch over them, one block each.
    fn multiprocessors(&self) -> u32;
    /// Whether kernels may use thread-block clusters (compute capability
    /// 9.0, Hopper, and newer; the simulator): the cluster LSTM kernels
    /// need them. The default is `false`.
    fn clusters(&self) -> bool {
        false
    }
    /// Whether [`begin_capture`](Self::begin_capture) works on this device.
    /// The default (a device that cannot capture) is `false`, and the GPU
    /// engine then launches every step.
    fn can_capture(&self) -> bool {
        false
    }
    /// Starts recording instead of running, like CUDA stream capture: from
    /// now until [`end_capture`](Self::end_capture), `launch` and `zero`
    /// are recorded, not run, and `upload`, `download`, `synchronize`,
    /// `free`, `alloc_zeroed` and `time` are refused with
    /// [`DeviceError::Capture`] (CUDA forbids host transfers and waits on a
    /// capturing stream). `alloc` still allocates at once.
    fn begin_capture(&mut self) -> Result<()> {
        Err(no_capture(self.name()))
    }
    /// Ends the recording begun by `begin_capture` and returns it as a graph.
    fn end_capture(&mut self) -> Result<GraphId> {
        Err(no_capture(self.name()))
    }
    /// Runs the recorded work of `graph` again, in order, as if launched now.
    fn replay(&mut self, graph: GraphId) -> Result<()> {
        let _ = graph;
        Err(no_capture(self.name()))
    }
    /// Releases `graph`.
    fn drop_graph(&mut self, graph: GraphId) -> Result<()> {
        let _ = graph;
        Err(no_capture(self.name()))
    }
    /// Seconds between two recorded points on the device's own clock (events
    /// on CUDA; instruction count based or wall clock on the simulator)
    /// around `f`.
    fn time<F: FnOnce(&mut Self) -> Result<()>>(&mut self, f: F) -> Result<f64>
    where
        Self: Sized;
    /// What the device counted of each kernel's launches since the last
    /// call (or since it was made), by kernel name, and starts counting
    /// afresh: the simulator counts thread-instructions; the default, for a
    /// device that counts nothing (a GPU), is empty.
    fn take_kernel_counts(&mut self) -> Vec<KernelCount> {
        Vec::new()
    }

    /// `data.len()` f32s copied to a fresh allocation (freed again if the
    /// copy fails).
    fn upload_new_f32(&mut self, data: &[f32]) -> Result<DevicePtr> {
        self.upload_new(bytemuck::cast_slice(data))
    }
    /// `data.len()` u32s copied to a fresh allocation (freed again if the
    /// copy fails).
    fn upload_new_u32(&mut self, data: &[u32]) -> Result<DevicePtr> {
        self.upload_new(bytemuck::cast_slice(data))
    }
    /// `bytes` copied to a fresh allocation (freed again if the copy fails).
    fn upload_new(&mut self, bytes: &[u8]) -> Result<DevicePtr> {
        let ptr = self.alloc(bytes.len())?;
        if let Err(e) = self.upload(ptr, bytes) {
            let _ = self.free(ptr);
            return Err(e);
        }
        Ok(ptr)
    }
    /// Copies f32s to `dst`.
    fn upload_f32(&mut self, dst: DevicePtr, data: &[f32]) -> Result<()> {
        self.upload(dst, bytemuck::cast_slice(data))
    }
    /// Copies u32s to `dst`.
    fn upload_u32(&mut self, dst: DevicePtr, data: &[u32]) -> Result<()> {
        self.upload(dst, bytemuck::cast_slice(data))
    }
    /// Copies `out.len()` f32s from `src`.
    fn download_f32(&mut self, src: DevicePtr, out: &mut [f32]) -> Result<()> {
        self.download(src, bytemuck::cast_slice_mut(out))
    }
    /// `n` f32s from `src`, as a new vector.
    fn download_vec_f32(&mut self, src: DevicePtr, n: usize) -> Result<Vec<f32>> {
        let mut v = vec![0f32; n];
        self.download_f32(src, &mut v)?;
        Ok(v)
    }
}

/// Trait methods (`ref`: taking `&self`, `mut`: `&mut self`) that call the
/// same method of the device a `&mut D` borrows.
macro_rules! forward {
    (
        $(ref $name:ident() -> $ret:ty;)*
        $(mut $mname:ident($($arg:ident: $ty:ty),*) -> $mret:ty;)*
    ) => {
        $(fn $name(&self) -> $ret {
            (**self).$name()
        })*
        $(fn $mname(&mut self, $($arg: $ty),*) -> $mret {
            (**self).$mname($($arg),*)
        })*
    };
}

/// A borrowed device is a device, so that an owner of a device (the
/// `selftest`, a test) can lend it to a [`super::GpuEngine`], which takes
/// its device by value, and keep using it afterwards.
impl<D: GpuDevice> GpuDevice for &mut D {
    forward! {
        ref name() -> String;
        ref max_shared_bytes() -> u32;
        ref multiprocessors() -> u32;
        ref clusters() -> bool;
        ref can_capture() -> bool;
        mut alloc(bytes: usize) -> Result<DevicePtr>;
        mut alloc_zeroed(bytes: usize) -> Result<DevicePtr>;
        mut free(ptr: DevicePtr) -> Result<()>;
        mut upload(dst: DevicePtr, bytes: &[u8]) -> Result<()>;
        mut download(src: DevicePtr, out: &mut [u8]) -> Result<()>;
        mut zero(dst: DevicePtr, bytes: usize) -> Result<()>;
        mut launch(module: &str, kernel: &str, cfg: LaunchConfig, args: &[KernelArg]) -> Result<()>;
        mut synchronize() -> Result<()>;
        mut begin_capture() -> Result<()>;
        mut end_capture() -> Result<GraphId>;
        mut replay(graph: GraphId) -> Result<()>;
        mut drop_graph(graph: GraphId) -> Result<()>;
        mut take_kernel_counts() -> Vec<KernelCount>;
    }
    /// Host wall clock between two synchronisations: `f` wants `&mut &mut D`
    /// with the outer lifetime, which the inner device's `time` cannot lend
    /// it, so the device's own clock is out of reach here.
    fn time<F: FnOnce(&mut Self) -> Result<()>>(&mut self, f: F) -> Result<f64> {
        self.synchronize()?;
        let start = std::time::Instant::now();
        f(self)?;
        self.synchronize()?;
        Ok(start.elapsed().as_secs_f64())
    }
}

/// What a device that cannot capture answers to the capture calls.
fn no_capture(device: String) -> crate::Error {
    DeviceError::Capture {
        device,
        what: "this device cannot capture graphs (can_capture is false)".into(),
    }
    .into()
}

/// The error of an operation a device refuses while capturing.
pub(crate) fn refused_while_capturing(device: String, op: &str) -> crate::Error {
    DeviceError::Capture {
        device,
        what: format!(
            "{op} while a graph is being captured: a captured step may only launch kernels \
             and zero memory (host transfers and waits cannot be recorded)"
        ),
    }
    .into()
}

/// Refuses a launcher's thread count (`what`: "block", "max_block", ...)
/// that is not a multiple of 32 in 32..=`max`: the kernels' warp
/// collectives need whole warps.
pub(crate) fn check_whole_warps(
    kernel: &'static str,
    what: &str,
    threads: u32,
    max: u32,
) -> std::result::Result<(), DeviceError> {
    if threads == 0 || !threads.is_multiple_of(32) || threads > max {
        return Err(DeviceError::BadArguments {
            kernel,
            what: format!("{what} of {threads} threads is not a multiple of 32 in 32..={max}"),
        });
    }
    Ok(())
}

/// `x` as the `unsigned` a kernel takes, or `BadArguments` naming `name`.
pub(crate) fn kernel_u32(
    kernel: &'static str,
    name: &str,
    x: usize,
) -> std::result::Result<u32, DeviceError> {
    u32::try_from(x).map_err(|_| DeviceError::BadArguments {
        kernel,
        what: format!("{name} = {x} does not fit u32"),
    })
}

/// Threads per block and blocks to cover `n` elements with a grid-stride
/// kernel, capped at `max_blocks` (grid-stride loops cover the rest).
pub(crate) fn blocks_for(n: usize, threads: u32, max_blocks: u32) -> u32 {
    let blocks = n.div_ceil(threads as usize).max(1);
    u32::try_from(blocks).unwrap_or(u32::MAX).min(max_blocks)
}
