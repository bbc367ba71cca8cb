//! One LSTM layer's buffers on a device from a selftest `Case`, for the
//! recurrence kernels' bit-identity tests (tests/lstm_persistent.rs,
//! lstm_cluster.rs): inputs uploaded, every output poisoned (NaN,
//! u32::MAX) so that an element a kernel never writes cannot pass, and the
//! outputs read back as bits.

use charlstm_cuda::gpu::device::{DevicePtr, GpuDevice};
use charlstm_cuda::gpu::lstm::{LstmBuffers, LstmDims, LstmLauncher, LstmPath};
use charlstm_cuda::gpu::selftest::Case;
use charlstm_cuda::model::Tensor;

use super::Rng;

/// Which input and initial state a case's forward runs from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Form {
    /// One-hot classes, h_{-1} = c_{-1} = 0 (the notebook's).
    Window,
    /// One-hot classes from random h0, c0.
    Sequence,
    /// A dense layer: random zx, from random h0 and no c0.
    Dense,
}

pub fn launcher(path: LstmPath, rows: Option<usize>) -> LstmLauncher {
    LstmLauncher {
        path,
        rows_per_block: rows,
        ..LstmLauncher::default()
    }
}

/// The case's inputs on the device for `form` (h0, c0, zx random from
/// `rng_seed`), the forward's outputs and dz poisoned, dh = dh_{T-1} from
/// the CPU reference and dc = 0, a window-form backward's starting point.
pub fn upload<D: GpuDevice>(dev: &mut D, case: &Case, form: Form, rng_seed: u64) -> LstmBuffers {
    let (_, h, b, t) = case.shape.vhbt();
    let mut rng = Rng(rng_seed);
    let f32s = |dev: &mut D, data: &[f32]| dev.upload_new_f32(data).unwrap();
    let nan = |n: usize| vec![f32::NAN; n];
    let words: &[u8] = bytemuck::cast_slice(case.corpus.words());
    let h0 = rng.vec(b * h, 1.0);
    let c0 = rng.vec(b * h, 2.0);
    let zx = rng.vec(t * b * 4 * h, 3.0);
    let dh_last: Vec<f32> = case.want.dh_last.iter().map(|&x| x as f32).collect();
    let when = |dev: &mut D, on: bool, data: &[f32]| match on {
        true => f32s(dev, data),
        false => DevicePtr::NULL,
    };
    LstmBuffers {
        corpus_words: dev.upload_new(words).unwrap(),
        starts: dev.upload_new_u32(&case.starts).unwrap(),
        kernel: f32s(dev, &case.params[Tensor::Kernel]),
        recurrent_kernel: f32s(dev, &case.params[Tensor::RecurrentKernel]),
        bias: f32s(dev, &case.params[Tensor::Bias]),
        gates: f32s(dev, &nan(t * b * 4 * h)),
        c: f32s(dev, &nan(t * b * h)),
        h: f32s(dev, &nan(t * b * h)),
        cls: dev.upload_new_u32(&vec![u32::MAX; t * b]).unwrap(),
        dz: f32s(dev, &nan(t * b * 4 * h)),
        dh: f32s(dev, &dh_last),
        dc: f32s(dev, &vec![0.0; b * h]),
        d_kernel: DevicePtr::NULL,
        d_recurrent_kernel: DevicePtr::NULL,
        d_bias: DevicePtr::NULL,
        wgrad_scratch: DevicePtr::NULL,
        h0: when(dev, form != Form::Window, &h0),
        c0: when(dev, form == Form::Sequence, &c0),
        dy: DevicePtr::NULL,
        zx: when(dev, form == Form::Dense, &zx),
    }
}

/// Frees every buffer of `bufs` that is set.
pub fn free<D: GpuDevice>(dev: &mut D, bufs: &LstmBuffers) {
    for p in [
        bufs.corpus_words,
        bufs.starts,
        bufs.kernel,
        bufs.recurrent_kernel,
        bufs.bias,
        bufs.gates,
        bufs.c,
        bufs.h,
        bufs.cls,
        bufs.dz,
        bufs.dh,
        bufs.dc,
        bufs.h0,
        bufs.c0,
        bufs.dy,
        bufs.zx,
    ] {
        if p != DevicePtr::NULL {
            dev.free(p).unwrap();
        }
    }
}

/// The sizes of `case` in `form` (a dense layer has no classes).
pub fn dims_of(case: &Case, form: Form) -> LstmDims {
    let (_, h, b, t) = case.shape.vhbt();
    match form {
        Form::Dense => LstmDims::dense(b, t, h),
        _ => case.lstm_dims(),
    }
}

/// Each of `outs` (buffer, floats) downloaded as bits.
pub fn bits<D: GpuDevice>(dev: &mut D, outs: &[(DevicePtr, usize)]) -> Vec<Vec<u32>> {
    outs.iter()
        .map(|&(p, n)| {
            let v = dev.download_vec_f32(p, n).unwrap();
            v.iter().map(|x| x.to_bits()).collect()
        })
        .collect()
}

/// gates, c, h (as bits) and cls after `l`'s forward over `case` in `form`.
pub fn forward_bits<D: GpuDevice>(
    dev: &mut D,
    case: &Case,
    form: Form,
    rng_seed: u64,
    l: LstmLauncher,
) -> Vec<Vec<u32>> {
    let (_, h, b, t) = case.shape.vhbt();
    let bufs = upload(dev, case, form, rng_seed);
    l.forward(dev, dims_of(case, form), &bufs).unwrap();
    let mut out = bits(
        dev,
        &[
            (bufs.gates, t * b * 4 * h),
            (bufs.c, t * b * h),
            (bufs.h, t * b * h),
        ],
    );
    let mut cls = vec![0u32; t * b];
    dev.download(bufs.cls, bytemuck::cast_slice_mut(&mut cls))
        .unwrap();
    out.push(cls);
    free(dev, &bufs);
    out
}
