//! [`LstmDevice`]: [`crate::ops::Lstm`] on a device, forward and backward
//! of a stack of N layers over the caller's device buffers, with the CPU
//! op's semantics, shapes and checks (its header states the math).
//!
//! ```text
//! layer 0:   zx0 = X @ kernel_0 + bias_0     gemm_nn_f32, k = In (here)
//!            the dense recurrence from zx0   } the device stack
//! layer l>0: as in gpu::lstm::stack          } (gpu::lstm::stack)
//! backward:  the stack, top layer first, then layer 0's
//!            d kernel_0 = X^T @ dz            gemm_tn_f32 (here)
//!            dX = dz @ kernel_0^T             gemm_nt_f32 (here)
//! ```
//!
//! The stack's own layer 0 reads a packed one-hot corpus; for a dense
//! input this op hands it a dense layer 0 instead (its `zx` set, V = 0), so
//! every layer runs the stack's dense kernels and the stack is called
//! unchanged. Class indices `[T, B]` (on the host,
//! [`LstmDevice::forward_classes`], uploaded as u32s; or on the device,
//! [`LstmDevice::forward_classes_device`]) go the stack's own way:
//! `op_classes_onehot_u32` packs them into one-hot rows (row `b * T + t`,
//! bit `class % 64` of word `class / 64`, as `corpus::onehot` packs them),
//! read by the one-hot kernels (V = In), whose backward scatters d kernel_0
//! by class; there is no dX then.
//!
//! The op owns its tape (every layer's gates and states, a copy of X, the
//! dropout masks' key) between a forward and its backward, as the CPU's
//! `LstmOutput` does; the outputs and gradients are written to the caller's
//! buffers, which are never freed or kept.

use crate::error::{Error, Result};
use crate::gpu::batch::BatchLauncher;
use crate::gpu::device::{DevicePtr, GpuDevice};
use crate::gpu::dropout::{DropoutLauncher, DropoutMask};
use crate::gpu::gemm::{GemmDims, GemmForm, GemmLauncher};
use crate::gpu::lstm::stack::{
    LayerPtrs, StackBuffers, StackDims, StackIo, StackLauncher, StackWorkspace,
};
use crate::gpu::lstm::{LstmLauncher, LstmPath};
use crate::ops::{Lstm, Mode, check};

const F32: usize = std::mem::size_of::<f32>();

/// A device buffer of `len` f32s: the length is what the shape checks read
/// (a [`DevicePtr`] alone has none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceSlice {
    /// Its first element.
    pub ptr: DevicePtr,
    /// f32s it holds.
    pub len: usize,
}

impl DeviceSlice {
    /// `len` f32s at `ptr`.
    pub fn new(ptr: DevicePtr, len: usize) -> Self {
        DeviceSlice { ptr, len }
    }
}

/// One layer's weights, or their gradients, on the device; layouts as in
/// [`crate::ops::LayerWeights`] (Keras, gate order i, f, c, o).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceLayer {
    /// `[In_l, 4H]`.
    pub kernel: DeviceSlice,
    /// `[H, 4H]`.
    pub recurrent_kernel: DeviceSlice,
    /// `[4H]`.
    pub bias: DeviceSlice,
}

/// Where [`LstmDevice::forward`] writes: the top layer's h at every step
/// `[T, B, H]` and the final states `[N, B, H]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceOutput {
    /// `[T, B, H]`.
    pub y: DeviceSlice,
    /// `[N, B, H]`.
    pub h_n: DeviceSlice,
    /// `[N, B, H]`.
    pub c_n: DeviceSlice,
}

/// Where [`LstmDevice::backward`] writes (every buffer overwritten, never
/// accumulated into, as [`crate::ops::LstmGrads`]).
#[derive(Clone, Copy, Debug)]
pub struct DeviceGrads<'a> {
    /// d input `[T, B, In]`, or `None`: not computed.
    pub dx: Option<DeviceSlice>,
    /// d h_0 `[N, B, H]`.
    pub dh0: DeviceSlice,
    /// d c_0 `[N, B, H]`.
    pub dc0: DeviceSlice,
    /// Every layer's weight gradients, layer 0 first.
    pub layers: &'a [DeviceLayer],
}

/// What a forward left for its backward.
#[derive(Clone, Copy, Debug)]
struct Tape {
    seq_len: usize,
    batch: usize,
    mode: Mode,
    /// Whether h0, c0 were given (then copied to [`Layer0`]'s).
    h0: bool,
    c0: bool,
    /// Class-index input (one-hot layer 0), not dense.
    classes: bool,
}

/// Layer 0's input as the forward takes it.
#[derive(Clone, Copy, Debug)]
enum Input<'a> {
    Dense(DeviceSlice),
    /// Class indices on the host, checked there.
    Classes(&'a [u32]),
    /// Class indices on the device (`len` u32s), checked there.
    DeviceClasses(DeviceSlice),
}

/// The buffers of layer 0's dense input, sized for `cap` = (T, B).
#[derive(Debug, Default)]
struct Layer0 {
    cap: (usize, usize),
    /// `[T, B, 4H]` its input term.
    zx: DevicePtr,
    /// `[T, B, In]` the forward's X, for d kernel_0.
    x: DevicePtr,
    /// The split GEMMs' scratch, or NULL.
    scratch: DevicePtr,
    /// `[N, B, H]` the forward's h0, c0: the backward reads them again
    /// (h_{-1} in d recurrent_kernel, c_{-1} in the cell's gradient), and
    /// the caller may reuse its buffers in between.
    h0: DevicePtr,
    c0: DevicePtr,
    /// A class input's buffers, allocated at the first class call: the
    /// one-hot rows, row starts and bad-index (count, first) u32s of
    /// `op_classes_onehot_u32`, and `[T * B]` u32 indices from the host.
    onehot: DevicePtr,
    starts: DevicePtr,
    classes: DevicePtr,
    bad: DevicePtr,
}

impl Layer0 {
    fn ptrs(&self) -> [DevicePtr; 9] {
        [
            self.zx,
            self.x,
            self.scratch,
            self.h0,
            self.c0,
            self.onehot,
            self.starts,
            self.classes,
            self.bad,
        ]
    }
}

/// [`Lstm`] on a device `D`: the sizes and dropout of `lstm`, the
/// launchers, and a workspace allocated at the first call and grown when a
/// call needs more (free it with [`free`](Self::free)).
#[derive(Debug)]
pub struct LstmDevice {
    lstm: Lstm,
    launcher: StackLauncher,
    ws: StackWorkspace,
    layer0: Layer0,
    tape: Option<Tape>,
}

impl LstmDevice {
    /// The op of `lstm` (N, In, H, dropout), on the fastest path the shape
    /// allows (persistent kernels where they fit).
    pub fn new(lstm: &Lstm) -> Self {
        LstmDevice {
            lstm: lstm.clone(),
            launcher: StackLauncher {
                p: lstm.dropout(),
                ..StackLauncher::default()
            },
            ws: StackWorkspace::default(),
            layer0: Layer0::default(),
            tape: None,
        }
    }

    /// Runs the recurrence on `path` (the per-step kernels are the
    /// reference the persistent ones are checked against).
    pub fn with_path(mut self, path: LstmPath) -> Self {
        self.set_path(path);
        self
    }

    /// [`with_path`](Self::with_path) in place.
    pub fn set_path(&mut self, path: LstmPath) {
        self.launcher.lstm = LstmLauncher {
            path,
            ..self.launcher.lstm
        };
    }

    /// The sizes and dropout it runs.
    pub fn lstm(&self) -> &Lstm {
        &self.lstm
    }

    /// Frees the workspace (the caller's buffers are untouched); the next
    /// call allocates again.
    pub fn free<D: GpuDevice>(&mut self, dev: &mut D) -> Result<()> {
        self.tape = None;
        let l0 = std::mem::take(&mut self.layer0);
        self.ws.free(dev)?;
        l0.ptrs()
            .into_iter()
            .filter(|&p| p != DevicePtr::NULL)
            .try_for_each(|p| dev.free(p))
    }

    fn dims(&self, seq_len: usize, batch: usize, classes: bool) -> StackDims {
        StackDims {
            layers: self.lstm.layers(),
            batch,
            seq_len,
            hidden: self.lstm.hidden(),
            // A dense layer 0 (its zx set) has no classes.
            vocab: if classes { self.lstm.input() } else { 0 },
        }
    }

    /// Layer 0's GEMMs: zx0 = X @ kernel_0, d kernel_0 = X^T @ dz, dX = dz @ kernel_0^T.
    fn layer0_gemms(&self, seq_len: usize, batch: usize) -> [GemmDims; 3] {
        let (rows, i, g) = (seq_len * batch, self.lstm.input(), 4 * self.lstm.hidden());
        [
            GemmDims {
                m: rows,
                n: g,
                k: i,
            },
            GemmDims {
                m: i,
                n: g,
                k: rows,
            },
            GemmDims {
                m: rows,
                n: i,
                k: g,
            },
        ]
    }

    fn ensure<D: GpuDevice>(
        &mut self,
        dev: &mut D,
        seq_len: usize,
        batch: usize,
        classes: bool,
    ) -> Result<()> {
        let dims = self.dims(seq_len, batch, classes);
        self.ws.ensure(dev, dims, self.lstm.dropout() > 0.0)?;
        let (t0, b0) = self.layer0.cap;
        let onehot = !classes || self.layer0.onehot != DevicePtr::NULL;
        if t0 >= seq_len && b0 >= batch && onehot {
            return Ok(());
        }
        let l0 = std::mem::take(&mut self.layer0);
        for p in l0.ptrs() {
            if p != DevicePtr::NULL {
                dev.free(p)?;
            }
        }
        let (t, b) = (seq_len.max(t0), batch.max(b0));
        let scratch = self
            .layer0_gemms(t, b)
            .map(GemmLauncher::scratch_len)
            .into_iter()
            .max()
            .unwrap_or(0);
        let rows = t * b;
        self.layer0 = Layer0 {
            cap: (0, 0),
            zx: dev.alloc(rows * 4 * self.lstm.hidden() * F32)?,
            ..Layer0::default()
        };
        self.layer0.x = dev.alloc(rows * self.lstm.input() * F32)?;
        if scratch > 0 {
            self.layer0.scratch = dev.alloc(scratch * F32)?;
        }
        let state = self.lstm.layers() * b * self.lstm.hidden() * F32;
        self.layer0.h0 = dev.alloc(state)?;
        self.layer0.c0 = dev.alloc(state)?;
        if classes {
            self.layer0.onehot = dev.alloc(rows * self.lstm.input().div_ceil(64) * 8)?;
            self.layer0.starts = dev.alloc(b * 4)?;
            self.layer0.classes = dev.alloc(rows * 4)?;
            self.layer0.bad = dev.alloc(2 * 4)?;
        }
        self.layer0.cap = (t, b);
        Ok(())
    }

    /// Forward over the whole sequence `x` `[T, B, In]` (dense), from `h0`,
    /// `c0` `[N, B, H]` (zeros when `None`), into `out`; in [`Mode::Train`]
    /// with dropout > 0 the masks of `crate::ops::dropout` for that key,
    /// the same the CPU op draws. Every shape is checked first, as the CPU
    /// op checks it.
    #[allow(clippy::too_many_arguments)]
    pub fn forward<D: GpuDevice>(
        &mut self,
        dev: &mut D,
        weights: &[DeviceLayer],
        x: DeviceSlice,
        seq_batch: (usize, usize),
        h0: Option<DeviceSlice>,
        c0: Option<DeviceSlice>,
        mode: Mode,
        out: &DeviceOutput,
    ) -> Result<()> {
        let input = Input::Dense(x);
        self.run_forward(dev, weights, input, seq_batch, (h0, c0), mode, out)
    }

    /// [`forward`](Self::forward) over class indices `[T, B]` on the host
    /// (`x[t * B + b]`, each below In) standing for one-hot rows, as
    /// `LstmInput::classes`: layer 0 gathers row `x` of its kernel. Its
    /// backward has no dX (pass `dx: None`).
    #[allow(clippy::too_many_arguments)]
    pub fn forward_classes<D: GpuDevice>(
        &mut self,
        dev: &mut D,
        weights: &[DeviceLayer],
        x: &[u32],
        seq_batch: (usize, usize),
        h0: Option<DeviceSlice>,
        c0: Option<DeviceSlice>,
        mode: Mode,
        out: &DeviceOutput,
    ) -> Result<()> {
        let input = Input::Classes(x);
        self.run_forward(dev, weights, input, seq_batch, (h0, c0), mode, out)
    }

    /// [`forward_classes`](Self::forward_classes) over class indices
    /// already on the device: `x` holds `[T, B]` u32s (its `len` counts
    /// u32s, as it counts f32s elsewhere: both are 4 bytes). They are
    /// checked on the device: before the recurrence is queued, this waits
    /// for the device once to read back how many indices are not below In
    /// and the first; any is an error naming it, and nothing else runs.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_classes_device<D: GpuDevice>(
        &mut self,
        dev: &mut D,
        weights: &[DeviceLayer],
        x: DeviceSlice,
        seq_batch: (usize, usize),
        h0: Option<DeviceSlice>,
        c0: Option<DeviceSlice>,
        mode: Mode,
        out: &DeviceOutput,
    ) -> Result<()> {
        let input = Input::DeviceClasses(x);
        self.run_forward(dev, weights, input, seq_batch, (h0, c0), mode, out)
    }

    #[allow(clippy::too_many_arguments)]
    fn run_forward<D: GpuDevice>(
        &mut self,
        dev: &mut D,
        weights: &[DeviceLayer],
        input: Input<'_>,
        (seq_len, batch): (usize, usize),
        (h0, c0): (Option<DeviceSlice>, Option<DeviceSlice>),
        mode: Mode,
        out: &DeviceOutput,
    ) -> Result<()> {
        let (t, b, n, h, i) = (
            seq_len,
            batch,
            self.lstm.layers(),
            self.lstm.hidden(),
            self.lstm.input(),
        );
        check::positive("x", t, "steps (T)")?;
        check::positive("x", b, "batch rows (B)")?;
        check::fits(&self.lstm, (t, b))?;
        self.check_weights("weights", weights)?;
        match input {
            Input::Dense(x) => {
                let shape = || format!("[T, B, In] = [{t}, {b}, {i}]");
                check::len("x", x.len, shape, t * b * i)?;
            }
            Input::Classes(x) => check::classes(&self.lstm, x, (t, b))?,
            Input::DeviceClasses(x) => {
                check::len("x", x.len, || format!("[T, B] = [{t}, {b}]"), t * b)?;
            }
        }
        let classes = !matches!(input, Input::Dense(_));
        let state = |name: &str, s: Option<DeviceSlice>| match s {
            None => Ok(()),
            Some(s) => check_state(&self.lstm, name, s, b),
        };
        state("h0", h0)?;
        state("c0", c0)?;
        let yshape = || format!("[T, B, H] = [{t}, {b}, {h}]");
        check::len("out.y", out.y.len, yshape, t * b * h)?;
        check_state(&self.lstm, "out.h_n", out.h_n, b)?;
        check_state(&self.lstm, "out.c_n", out.c_n, b)?;
        crate::ops::dropout::check_call(self.lstm.dropout(), t * b, h)?;
        self.tape = None;
        self.ensure(dev, t, b, classes)?;
        let dims = self.dims(t, b, classes);
        let (l0, state) = (&self.layer0, (1, n * b * h));
        let kept = |s: Option<DeviceSlice>, to: DevicePtr, dev: &mut D| -> Result<DevicePtr> {
            match s {
                Some(s) => copy(dev, s.ptr, to, state).map(|()| to),
                None => Ok(DevicePtr::NULL),
            }
        };
        let mut io = StackIo {
            layers: weights.iter().map(|w| layer_ptrs(w, None)).collect(),
            h0: kept(h0, l0.h0, dev)?,
            c0: kept(c0, l0.c0, dev)?,
            ..StackIo::default()
        };
        match input {
            Input::Dense(x) => {
                let bufs = self.layer0_bufs(dims, &io)?;
                let [zx_dims, ..] = self.layer0_gemms(t, b);
                let l0 = &self.layer0;
                copy(dev, x.ptr, l0.x, (t * b, i))?;
                let w0 = (l0.x, weights[0].kernel.ptr, weights[0].bias.ptr);
                let gemm = self.launcher.gemm;
                gemm.run(dev, GemmForm::NN, zx_dims, w0, l0.zx, l0.scratch)?;
                self.launcher.forward(dev, dims, &bufs, mode)?;
            }
            Input::Classes(_) | Input::DeviceClasses(_) => {
                self.onehot_rows(dev, input, (t, b))?;
                let l0 = &self.layer0;
                (io.corpus_words, io.starts) = (l0.onehot, l0.starts);
                let bufs = self.ws.buffers(dims, &io)?;
                self.launcher.forward(dev, dims, &bufs, mode)?;
            }
        }
        copy(dev, self.ws.h(n - 1), out.y.ptr, (t * b, h))?;
        let last = (t - 1) * b * h * F32;
        for l in 0..n {
            let at = |s: DeviceSlice| s.ptr.offset(l * b * h * F32);
            copy(dev, self.ws.h(l).offset(last), at(out.h_n), (b, h))?;
            copy(dev, self.ws.c(l).offset(last), at(out.c_n), (b, h))?;
        }
        self.tape = Some(Tape {
            seq_len: t,
            batch: b,
            mode,
            h0: h0.is_some(),
            c0: c0.is_some(),
            classes,
        });
        Ok(())
    }

    /// The backward of the last [`forward`](Self::forward) (with the same
    /// `weights`): `dy` `[T, B, H]` at every step of the top layer, `dh_n`,
    /// `dc_n` `[N, B, H]` at the final states (zeros when `None`), into
    /// `grads`. Spends the forward, as the CPU op's backward does: another
    /// backward needs another forward.
    pub fn backward<D: GpuDevice>(
        &mut self,
        dev: &mut D,
        weights: &[DeviceLayer],
        dy: DeviceSlice,
        dh_n: Option<DeviceSlice>,
        dc_n: Option<DeviceSlice>,
        grads: &DeviceGrads<'_>,
    ) -> Result<()> {
        let Some(tape) = self.tape else {
            return Err(Error::InvalidArgument {
                name: "backward",
                what: "no forward to differentiate (none ran, or its backward already ran); run \
                       LstmDevice::forward on this batch first"
                    .into(),
            });
        };
        let (t, b, h, i) = (
            tape.seq_len,
            tape.batch,
            self.lstm.hidden(),
            self.lstm.input(),
        );
        self.check_weights("weights", weights)?;
        self.check_weights("grads.layers", grads.layers)?;
        check::len(
            "dy",
            dy.len,
            || format!("[T, B, H] = [{t}, {b}, {h}]"),
            t * b * h,
        )?;
        for (name, s) in [("dh_n", dh_n), ("dc_n", dc_n)] {
            if let Some(s) = s {
                check_state(&self.lstm, name, s, b)?;
            }
        }
        check_state(&self.lstm, "grads.dh0", grads.dh0, b)?;
        check_state(&self.lstm, "grads.dc0", grads.dc0, b)?;
        match (grads.dx, tape.classes) {
            (Some(_), true) => {
                return Err(Error::InvalidArgument {
                    name: "grads.dx",
                    what: "a buffer for dX after a forward over class indices, which have no \
                           gradient; pass dx: None"
                        .into(),
                });
            }
            (Some(dx), false) => {
                let shape = || format!("[T, B, In] = [{t}, {b}, {i}]");
                check::len("grads.dx", dx.len, shape, t * b * i)?;
            }
            (None, _) => {}
        }
        self.tape = None;
        let (dims, state) = (self.dims(t, b, tape.classes), self.lstm.layers() * b * h);
        // The stack reads dh_T, dc_T from the buffers it writes dh_{-1},
        // dc_{-1} to: the caller's dh0, dc0, filled first.
        for (given, to) in [(dh_n, grads.dh0), (dc_n, grads.dc0)] {
            match given {
                Some(s) => copy(dev, s.ptr, to.ptr, (1, state))?,
                None => dev.zero(to.ptr, state * F32)?,
            }
        }
        let kept = |given: bool, p: DevicePtr| if given { p } else { DevicePtr::NULL };
        let io = StackIo {
            layers: weights
                .iter()
                .zip(grads.layers)
                .map(|(w, g)| layer_ptrs(w, Some(g)))
                .collect(),
            h0: kept(tape.h0, self.layer0.h0),
            c0: kept(tape.c0, self.layer0.c0),
            dy: dy.ptr,
            dh: grads.dh0.ptr,
            dc: grads.dc0.ptr,
            ..StackIo::default()
        };
        if tape.classes {
            // The one-hot backward scatters d kernel_0 itself (the classes
            // the forward decoded, kept in the workspace).
            let bufs = self.ws.buffers(dims, &io)?;
            return self.launcher.backward(dev, dims, &bufs, tape.mode);
        }
        let bufs = self.layer0_bufs(dims, &io)?;
        self.launcher.backward(dev, dims, &bufs, tape.mode)?;
        // The stack leaves layer 0's dz in its dz buffer (layer 0 runs last).
        let (dz, l0) = (bufs.layers[0].dz, &self.layer0);
        let [_, dk_dims, dx_dims] = self.layer0_gemms(t, b);
        let gemm = self.launcher.gemm;
        let operands = (l0.x, dz, DevicePtr::NULL);
        gemm.run(
            dev,
            GemmForm::TN,
            dk_dims,
            operands,
            grads.layers[0].kernel.ptr,
            l0.scratch,
        )?;
        if let Some(dx) = grads.dx {
            let operands = (dz, weights[0].kernel.ptr, DevicePtr::NULL);
            gemm.run(dev, GemmForm::NT, dx_dims, operands, dx.ptr, l0.scratch)?;
        }
        Ok(())
    }

    /// Layer 0's one-hot rows and row starts from class indices: host
    /// indices (checked already) are queued up first; for device ones the
    /// kernel's count of bad indices is read back, the call's one wait.
    fn onehot_rows<D: GpuDevice>(
        &self,
        dev: &mut D,
        input: Input<'_>,
        (t, b): (usize, usize),
    ) -> Result<()> {
        let (l0, i) = (&self.layer0, self.lstm.input());
        let (src, on_device) = match input {
            Input::Classes(x) => {
                dev.upload_queued(l0.classes, bytemuck::cast_slice(x))?;
                (l0.classes, false)
            }
            Input::DeviceClasses(x) => (x.ptr, true),
            Input::Dense(_) => unreachable!("onehot_rows of a dense input"),
        };
        if on_device {
            // Host indices were checked: their kernel leaves the flags alone.
            dev.upload_queued(l0.bad, bytemuck::cast_slice(&[0u32, u32::MAX]))?;
        }
        let bad = (l0.bad, l0.bad.offset(4));
        BatchLauncher::default().op_classes(dev, src, (t, b, i), (l0.onehot, l0.starts), bad)?;
        if !on_device {
            return Ok(());
        }
        let mut found = [0u32; 2];
        dev.download(l0.bad, bytemuck::cast_slice_mut(&mut found))?;
        let [count, first] = found;
        if count == 0 {
            return Ok(());
        }
        let mut class = [0u32];
        dev.download(
            src.offset(first as usize * 4),
            bytemuck::cast_slice_mut(&mut class),
        )?;
        let first = first as usize;
        Err(Error::InvalidArgument {
            name: "x",
            what: format!(
                "{count} class index(es) on the device are not below {}; the first, at t = {}, \
                 b = {}, is {}",
                check::class_limit(i),
                first / b,
                first % b,
                class[0],
            ),
        })
    }

    /// The stack's buffers with layer 0 dense: it reads [`Layer0::zx`].
    fn layer0_bufs(&self, dims: StackDims, io: &StackIo) -> Result<StackBuffers> {
        let mut bufs = self.ws.buffers(dims, io)?;
        bufs.layers[0].zx = self.layer0.zx;
        Ok(bufs)
    }

    /// One [`DeviceLayer`] per layer of the shapes of [`check::weights`].
    fn check_weights(&self, what: &str, layers: &[DeviceLayer]) -> Result<()> {
        let n = self.lstm.layers();
        if layers.len() != n {
            return Err(Error::Shape {
                name: what.into(),
                shape: format!("one DeviceLayer per layer, N = {n}, layer 0 first"),
                got: layers.len(),
                want: n,
            });
        }
        let (h, g) = (self.lstm.hidden(), 4 * self.lstm.hidden());
        for (l, w) in layers.iter().enumerate() {
            let (i, dim) = (self.lstm.layer_input(l), if l == 0 { "In" } else { "H" });
            let name = |t: &str| format!("{what}[{l}].{t}");
            let kernel = || format!("[{dim}, 4H] = [{i}, {g}]");
            check::len(&name("kernel"), w.kernel.len, kernel, i * g)?;
            let recurrent = || format!("[H, 4H] = [{h}, {g}]");
            check::len(
                &name("recurrent_kernel"),
                w.recurrent_kernel.len,
                recurrent,
                h * g,
            )?;
            check::len(&name("bias"), w.bias.len, || format!("[4H] = [{g}]"), g)?;
        }
        Ok(())
    }
}

/// A state or state gradient `[N, B, H]`.
fn check_state(lstm: &Lstm, name: &str, s: DeviceSlice, batch: usize) -> Result<()> {
    let (n, h) = (lstm.layers(), lstm.hidden());
    let shape = || format!("[N, B, H] = [{n}, {batch}, {h}]");
    check::len(name, s.len, shape, n * batch * h)
}

fn layer_ptrs(w: &DeviceLayer, g: Option<&DeviceLayer>) -> LayerPtrs {
    let g = g.copied().unwrap_or_default();
    LayerPtrs {
        kernel: w.kernel.ptr,
        recurrent_kernel: w.recurrent_kernel.ptr,
        bias: w.bias.ptr,
        d_kernel: g.kernel.ptr,
        d_recurrent_kernel: g.recurrent_kernel.ptr,
        d_bias: g.bias.ptr,
    }
}

/// `dst = src` over `rows` x `width` f32s on the device, in stream order:
/// the dropout kernel at p = 0 keeps every unit and scales by exactly 1,
/// so it is a copy, without a copy method on [`GpuDevice`].
fn copy<D: GpuDevice>(
    dev: &mut D,
    src: DevicePtr,
    dst: DevicePtr,
    shape: (usize, usize),
) -> Result<()> {
    let keep_all = DropoutMask {
        p: 0.0,
        seed: 0,
        step: 0,
        step_at: DevicePtr::NULL,
        layer: 0,
    };
    DropoutLauncher::default().forward(dev, keep_all, shape, src, dst)
}
