//! [`LstmCuda`]: the device op ([`super::op::LstmDevice`]) for a crate
//! that already runs cudarc: on the caller's [`CudaStream`] (our kernels
//! load into its context) over the caller's [`CudaSlice`]s (f32 tensors,
//! u32 class indices), with no copy of them through the host (a forward on
//! device class indices reads back two u32s of its check). Each call
//! registers the slices it is given as external
//! regions of a [`CudaDevice`] (bounds-checked as our own allocations,
//! never freed by us) and unregisters them before it returns; the shapes
//! are checked by the op from the slices' lengths.
//!
//! Ordering: every launch goes on the caller's stream, after the work the
//! caller queued there before the call; cudarc's per-slice events make
//! another stream wait as usual (the pointers are taken through
//! `DevicePtr::device_ptr` / `DevicePtrMut::device_ptr_mut`, whose guards
//! are held until the call's launches are queued).

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr as _, DevicePtrMut as _, SyncOnDrop};

use super::cuda_device::CudaDevice;
use super::device::DevicePtr;
use super::lstm::LstmPath;
use super::op::{DeviceGrads, DeviceLayer, DeviceOutput, DeviceSlice, LstmDevice};
use crate::error::Result;
use crate::ops::{Lstm, Mode};

const F32: usize = std::mem::size_of::<f32>();

/// The input of a forward: the caller's dense `[T, B, In]` or class
/// indices `[T, B]` on the device (slices, or once registered, our views of
/// them), or class indices on the host.
enum Input<'a, X, C> {
    Dense(X),
    Classes(&'a [u32]),
    DeviceClasses(C),
}

/// One layer's weights as the caller's slices (layouts of
/// [`crate::ops::LayerWeights`]).
#[derive(Clone, Copy, Debug)]
pub struct CudaLayer<'a> {
    /// `[In_l, 4H]`.
    pub kernel: &'a CudaSlice<f32>,
    /// `[H, 4H]`.
    pub recurrent_kernel: &'a CudaSlice<f32>,
    /// `[4H]`.
    pub bias: &'a CudaSlice<f32>,
}

/// One layer's weight gradients, written by [`LstmCuda::backward`].
#[derive(Debug)]
pub struct CudaLayerGrads<'a> {
    /// `[In_l, 4H]`.
    pub kernel: &'a mut CudaSlice<f32>,
    /// `[H, 4H]`.
    pub recurrent_kernel: &'a mut CudaSlice<f32>,
    /// `[4H]`.
    pub bias: &'a mut CudaSlice<f32>,
}

/// [`crate::ops::Lstm`] on the caller's stream and slices.
pub struct LstmCuda {
    dev: CudaDevice,
    op: LstmDevice,
}

/// The registrations and cudarc guards of one call, undone in `finish`.
struct Call<'s> {
    regions: Vec<DevicePtr>,
    guards: Vec<SyncOnDrop<'s>>,
}

impl<'s> Call<'s> {
    fn new() -> Self {
        Call {
            regions: Vec::new(),
            guards: Vec::new(),
        }
    }

    fn register(&mut self, dev: &mut CudaDevice, (ptr, len): (u64, usize)) -> Result<DeviceSlice> {
        let p = dev.register_external(ptr, len * F32)?;
        self.regions.push(p);
        Ok(DeviceSlice::new(p, len))
    }

    /// A slice of 4-byte elements (f32, or u32 class indices).
    fn read<T>(
        &mut self,
        dev: &mut CudaDevice,
        stream: &'s CudaStream,
        s: &'s CudaSlice<T>,
    ) -> Result<DeviceSlice> {
        const { assert!(std::mem::size_of::<T>() == F32) };
        let (ptr, guard) = s.device_ptr(stream);
        self.guards.push(guard);
        self.register(dev, (ptr, s.len()))
    }

    fn write(
        &mut self,
        dev: &mut CudaDevice,
        stream: &'s CudaStream,
        s: &'s mut CudaSlice<f32>,
    ) -> Result<DeviceSlice> {
        let len = s.len();
        let (ptr, guard) = s.device_ptr_mut(stream);
        self.guards.push(guard);
        self.register(dev, (ptr, len))
    }

    fn read_opt(
        &mut self,
        dev: &mut CudaDevice,
        stream: &'s CudaStream,
        s: Option<&'s CudaSlice<f32>>,
    ) -> Result<Option<DeviceSlice>> {
        s.map(|s| self.read(dev, stream, s)).transpose()
    }

    fn layers(
        &mut self,
        dev: &mut CudaDevice,
        stream: &'s CudaStream,
        weights: &'s [CudaLayer<'s>],
    ) -> Result<Vec<DeviceLayer>> {
        let mut out = Vec::with_capacity(weights.len());
        for w in weights {
            out.push(DeviceLayer {
                kernel: self.read(dev, stream, w.kernel)?,
                recurrent_kernel: self.read(dev, stream, w.recurrent_kernel)?,
                bias: self.read(dev, stream, w.bias)?,
            });
        }
        Ok(out)
    }

    /// Unregisters every region (after the launches were queued: the
    /// guards record their events when dropped), keeping `result`'s error
    /// first.
    fn finish(self, dev: &mut CudaDevice, result: Result<()>) -> Result<()> {
        let undone = self
            .regions
            .iter()
            .try_for_each(|&p| dev.unregister_external(p));
        drop(self.guards);
        result.and(undone)
    }
}

impl LstmCuda {
    /// The op of `lstm` on the caller's `stream` (kernels load lazily into
    /// its context at the first call).
    pub fn new(lstm: &Lstm, stream: Arc<CudaStream>) -> Result<Self> {
        Ok(LstmCuda {
            dev: CudaDevice::on_stream(stream)?,
            op: LstmDevice::new(lstm),
        })
    }

    /// Runs the recurrence on `path` ([`LstmDevice::with_path`]).
    pub fn with_path(mut self, path: LstmPath) -> Self {
        self.op.set_path(path);
        self
    }

    /// [`LstmDevice::forward`] on the caller's slices: `x` `[T, B, In]`,
    /// `h0`, `c0` `[N, B, H]` or `None` (zeros), into `y` `[T, B, H]`,
    /// `h_n`, `c_n` `[N, B, H]`. Queued on the stream; it does not wait.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &mut self,
        weights: &[CudaLayer<'_>],
        x: &CudaSlice<f32>,
        seq_batch: (usize, usize),
        h0: Option<&CudaSlice<f32>>,
        c0: Option<&CudaSlice<f32>>,
        mode: Mode,
        out: (
            &mut CudaSlice<f32>,
            &mut CudaSlice<f32>,
            &mut CudaSlice<f32>,
        ),
    ) -> Result<()> {
        self.run_forward(weights, Input::Dense(x), seq_batch, h0, c0, mode, out)
    }

    /// [`forward`](Self::forward) over class indices `[T, B]` standing for
    /// one-hot rows ([`LstmDevice::forward_classes`]): layer 0 reads row
    /// `x[t * B + b]` of its kernel. The indices are on the host, checked
    /// there and queued up on the stream as T*B u32s; the backward of such a
    /// forward has no dX (pass `dx: None`).
    #[allow(clippy::too_many_arguments)]
    pub fn forward_classes(
        &mut self,
        weights: &[CudaLayer<'_>],
        x: &[u32],
        seq_batch: (usize, usize),
        h0: Option<&CudaSlice<f32>>,
        c0: Option<&CudaSlice<f32>>,
        mode: Mode,
        out: (
            &mut CudaSlice<f32>,
            &mut CudaSlice<f32>,
            &mut CudaSlice<f32>,
        ),
    ) -> Result<()> {
        self.run_forward(weights, Input::Classes(x), seq_batch, h0, c0, mode, out)
    }

    /// [`forward_classes`](Self::forward_classes) over indices already on
    /// the device, `x` `[T, B]` ([`LstmDevice::forward_classes_device`]):
    /// nothing goes through the host but the check's two u32s, for which
    /// this call waits once, after the indices are packed and before the
    /// recurrence is queued. An index not below In is an error naming the
    /// first, and nothing else runs.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_classes_device(
        &mut self,
        weights: &[CudaLayer<'_>],
        x: &CudaSlice<u32>,
        seq_batch: (usize, usize),
        h0: Option<&CudaSlice<f32>>,
        c0: Option<&CudaSlice<f32>>,
        mode: Mode,
        out: (
            &mut CudaSlice<f32>,
            &mut CudaSlice<f32>,
            &mut CudaSlice<f32>,
        ),
    ) -> Result<()> {
        let x = Input::DeviceClasses(x);
        self.run_forward(weights, x, seq_batch, h0, c0, mode, out)
    }

    #[allow(clippy::too_many_arguments)]
    fn run_forward(
        &mut self,
        weights: &[CudaLayer<'_>],
        x: Input<'_, &CudaSlice<f32>, &CudaSlice<u32>>,
        seq_batch: (usize, usize),
        h0: Option<&CudaSlice<f32>>,
        c0: Option<&CudaSlice<f32>>,
        mode: Mode,
        (y, h_n, c_n): (
            &mut CudaSlice<f32>,
            &mut CudaSlice<f32>,
            &mut CudaSlice<f32>,
        ),
    ) -> Result<()> {
        let stream = self.dev.stream().clone();
        let mut call = Call::new();
        let (dev, op, call_ref, stream_ref) = (&mut self.dev, &mut self.op, &mut call, &stream);
        // FnOnce (`move`): the `&mut` slices move in and are lent to `call` for the whole call.
        let result = (move || {
            let (call, stream) = (call_ref, stream_ref);
            let w = call.layers(dev, stream, weights)?;
            let x = match x {
                Input::Dense(x) => Input::Dense(call.read(dev, stream, x)?),
                Input::Classes(x) => Input::Classes(x),
                Input::DeviceClasses(x) => Input::DeviceClasses(call.read(dev, stream, x)?),
            };
            let h0 = call.read_opt(dev, stream, h0)?;
            let c0 = call.read_opt(dev, stream, c0)?;
            let out = DeviceOutput {
                y: call.write(dev, stream, y)?,
                h_n: call.write(dev, stream, h_n)?,
                c_n: call.write(dev, stream, c_n)?,
            };
            match x {
                Input::Dense(x) => op.forward(dev, &w, x, seq_batch, h0, c0, mode, &out),
                Input::Classes(x) => op.forward_classes(dev, &w, x, seq_batch, h0, c0, mode, &out),
                Input::DeviceClasses(x) => {
                    op.forward_classes_device(dev, &w, x, seq_batch, h0, c0, mode, &out)
                }
            }
        })();
        call.finish(&mut self.dev, result)
    }

    /// [`LstmDevice::backward`] of the last forward: `dy` `[T, B, H]`,
    /// `dh_n`, `dc_n` `[N, B, H]` or `None` (zeros), into `dx` `[T, B, In]`
    /// (or `None`: not computed), `dh0`, `dc0` `[N, B, H]` and every layer's
    /// weight gradients.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &mut self,
        weights: &[CudaLayer<'_>],
        dy: &CudaSlice<f32>,
        dh_n: Option<&CudaSlice<f32>>,
        dc_n: Option<&CudaSlice<f32>>,
        dx: Option<&mut CudaSlice<f32>>,
        (dh0, dc0): (&mut CudaSlice<f32>, &mut CudaSlice<f32>),
        grads: &mut [CudaLayerGrads<'_>],
    ) -> Result<()> {
        let stream = self.dev.stream().clone();
        let mut call = Call::new();
        let (dev, op, call_ref, stream_ref) = (&mut self.dev, &mut self.op, &mut call, &stream);
        // FnOnce (`move`): the `&mut` slices move in and are lent to `call` for the whole call.
        let result = (move || {
            let (call, stream) = (call_ref, stream_ref);
            let w = call.layers(dev, stream, weights)?;
            let dy = call.read(dev, stream, dy)?;
            let dh_n = call.read_opt(dev, stream, dh_n)?;
            let dc_n = call.read_opt(dev, stream, dc_n)?;
            let dx = match dx {
                Some(s) => Some(call.write(dev, stream, s)?),
                None => None,
            };
            let (dh0, dc0) = (call.write(dev, stream, dh0)?, call.write(dev, stream, dc0)?);
            let mut layers = Vec::with_capacity(grads.len());
            for g in grads.iter_mut() {
                layers.push(DeviceLayer {
                    kernel: call.write(dev, stream, g.kernel)?,
                    recurrent_kernel: call.write(dev, stream, g.recurrent_kernel)?,
                    bias: call.write(dev, stream, g.bias)?,
                });
            }
            let grads = DeviceGrads {
                dx,
                dh0,
                dc0,
                layers: &layers,
            };
            op.backward(dev, &w, dy, dh_n, dc_n, &grads)
        })();
        call.finish(&mut self.dev, result)
    }
}

impl Drop for LstmCuda {
    fn drop(&mut self) {
        // The workspace is ours; the device frees whatever this misses.
        let _ = self.op.free(&mut self.dev);
    }
}
