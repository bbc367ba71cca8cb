//! `ops::LstmDevice` (the public LSTM op on a device, issue 17) against the
//! CPU `ops::Lstm::<f64>` on the same inputs: every output (y, h_n, c_n)
//! and every gradient (dX, dh0, dc0, each layer's three weight gradients)
//! within a tolerance, all of them NaN-poisoned before the call, at small
//! shapes (T 4..6, B 2..4, H 8..32, N 1..3, In != H), with and without
//! h0/c0 and dh_n/dc_n, dropout 0 and 0.3 in training (the same Philox
//! masks) and in evaluation. On the simulator here; the `cuda` test runs
//! the same cases on a GPU and skips without one. Bad shapes are errors.
//! Fresh random inputs every run (seed printed; CHARLSTM_TEST_SEED replays).

mod common;
use common::{Rng, seed};

use charlstm_cuda::Error;
use charlstm_cuda::gpu::lstm::LstmPath;
use charlstm_cuda::gpu::{CudaDevice, DevicePtr, GpuDevice, SimDevice, ptx};
use charlstm_cuda::ops::{
    DeviceGrads, DeviceLayer, DeviceOutput, DeviceSlice, LayerParams, Lstm, LstmDevice, LstmInput,
    Mode,
};

#[derive(Clone, Copy, Debug)]
struct Case {
    t: usize,
    b: usize,
    input: usize,
    h: usize,
    n: usize,
    p: f64,
    /// h0, c0, dh_n, dc_n given (else None: zeros).
    states: bool,
    train: bool,
    path: LstmPath,
}

fn widen(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| f64::from(v)).collect()
}

/// Fresh `data` on the device.
fn up<D: GpuDevice>(dev: &mut D, data: &[f32]) -> DeviceSlice {
    DeviceSlice::new(dev.upload_new_f32(data).unwrap(), data.len())
}

/// `n` NaNs on the device: an output the op must overwrite.
fn poisoned<D: GpuDevice>(dev: &mut D, n: usize) -> DeviceSlice {
    up(dev, &vec![f32::NAN; n])
}

fn down<D: GpuDevice>(dev: &mut D, s: DeviceSlice) -> Vec<f32> {
    dev.download_vec_f32(s.ptr, s.len).unwrap()
}

/// Fails unless every element of `got` is within `tol * max(1, max|want|)`.
fn close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let (k, err) = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (f64::from(g) - w).abs())
        .enumerate()
        .fold((0, 0.0f64), |(k, m), (i, e)| {
            if e > m || e.is_nan() { (i, e) } else { (k, m) }
        });
    assert!(
        err <= tol * scale,
        "{what}: max error {err:e} at {k} (got {}, want {}), bound {:e}",
        got[k],
        want[k],
        tol * scale
    );
}

fn run_case<D: GpuDevice>(dev: &mut D, c: Case, rng: &mut Rng) {
    println!("{c:?}");
    let (t, b, h, n, g) = (c.t, c.b, c.h, c.n, 4 * c.h);
    let lstm = Lstm::new(n, c.input, h).unwrap().with_dropout(c.p).unwrap();
    let a = 0.6 * (32.0 / h as f32).sqrt().min(1.0);
    let params: Vec<LayerParams<f32>> = (0..n)
        .map(|l| LayerParams {
            kernel: rng.vec(lstm.layer_input(l) * g, a),
            recurrent_kernel: rng.vec(h * g, a),
            bias: rng.vec(g, 0.6),
        })
        .collect();
    let x = rng.vec(t * b * c.input, 1.0);
    let state = n * b * h;
    let opt = |rng: &mut Rng, s: f32| c.states.then(|| rng.vec(state, s));
    let (h0, c0, dh_n, dc_n) = (opt(rng, 0.9), opt(rng, 1.5), opt(rng, 0.1), opt(rng, 0.1));
    let dy = rng.vec(t * b * h, 0.1);
    let mode = match c.train {
        true => Mode::Train {
            seed: rng.next_u64(),
            step: rng.next_u64() as u32,
        },
        false => Mode::Eval,
    };

    // The CPU op in f64 on the same f32 values.
    let p64: Vec<LayerParams<f64>> = params
        .iter()
        .map(|p| LayerParams {
            kernel: widen(&p.kernel),
            recurrent_kernel: widen(&p.recurrent_kernel),
            bias: widen(&p.bias),
        })
        .collect();
    let views: Vec<_> = p64.iter().map(LayerParams::weights).collect();
    let w64 = |s: &Option<Vec<f32>>| s.as_deref().map(widen);
    let (h0_64, c0_64, dh_64, dc_64) = (w64(&h0), w64(&c0), w64(&dh_n), w64(&dc_n));
    let x64 = widen(&x);
    let out = lstm
        .forward(
            &views,
            LstmInput::dense(&x64, t, b),
            h0_64.as_deref(),
            c0_64.as_deref(),
            mode,
        )
        .unwrap();
    let (y_ref, hn_ref, cn_ref) = (out.y().to_vec(), out.h_n().to_vec(), out.c_n().to_vec());
    let grads_ref = lstm
        .backward(&views, out, &widen(&dy), dh_64.as_deref(), dc_64.as_deref())
        .unwrap();

    let mut op = LstmDevice::new(&lstm).with_path(c.path);
    let weights: Vec<DeviceLayer> = params
        .iter()
        .map(|p| DeviceLayer {
            kernel: up(dev, &p.kernel),
            recurrent_kernel: up(dev, &p.recurrent_kernel),
            bias: up(dev, &p.bias),
        })
        .collect();
    let gl: Vec<DeviceLayer> = (0..n)
        .map(|l| DeviceLayer {
            kernel: poisoned(dev, lstm.layer_input(l) * g),
            recurrent_kernel: poisoned(dev, h * g),
            bias: poisoned(dev, g),
        })
        .collect();
    let xd = up(dev, &x);
    let opt_up = |dev: &mut D, s: &Option<Vec<f32>>| s.as_deref().map(|s| up(dev, s));
    let (h0d, c0d) = (opt_up(dev, &h0), opt_up(dev, &c0));
    let (dhd, dcd) = (opt_up(dev, &dh_n), opt_up(dev, &dc_n));
    let out = DeviceOutput {
        y: poisoned(dev, t * b * h),
        h_n: poisoned(dev, state),
        c_n: poisoned(dev, state),
    };
    op.forward(dev, &weights, xd, (t, b), h0d, c0d, mode, &out)
        .unwrap();
    let tol = 2e-4;
    close("y", &down(dev, out.y), &y_ref, tol);
    close("h_n", &down(dev, out.h_n), &hn_ref, tol);
    close("c_n", &down(dev, out.c_n), &cn_ref, tol);
    let dyd = up(dev, &dy);
    let grads = DeviceGrads {
        dx: Some(poisoned(dev, t * b * c.input)),
        dh0: poisoned(dev, state),
        dc0: poisoned(dev, state),
        layers: &gl,
    };
    op.backward(dev, &weights, dyd, dhd, dcd, &grads).unwrap();
    let dx_ref = grads_ref.dx.as_ref().unwrap();
    close("dx", &down(dev, grads.dx.unwrap()), dx_ref, tol);
    close("dh0", &down(dev, grads.dh0), &grads_ref.dh0, tol);
    close("dc0", &down(dev, grads.dc0), &grads_ref.dc0, tol);
    for (l, (d, r)) in gl.iter().zip(&grads_ref.layers).enumerate() {
        close(
            &format!("d kernel {l}"),
            &down(dev, d.kernel),
            &r.kernel,
            tol,
        );
        let rk = &r.recurrent_kernel;
        close(
            &format!("d recurrent {l}"),
            &down(dev, d.recurrent_kernel),
            rk,
            tol,
        );
        close(&format!("d bias {l}"), &down(dev, d.bias), &r.bias, tol);
    }
    // A second backward has no forward left to differentiate.
    let again = op.backward(dev, &weights, dyd, dhd, dcd, &grads);
    assert!(matches!(
        again,
        Err(Error::InvalidArgument {
            name: "backward",
            ..
        })
    ));
    op.free(dev).unwrap();
}

fn case(t: usize, b: usize, input: usize, h: usize, n: usize, p: f64, states: bool) -> Case {
    Case {
        t,
        b,
        input,
        h,
        n,
        p,
        states,
        train: true,
        path: LstmPath::Auto,
    }
}

/// The cases of one test, each on the per-step and the persistent kernels
/// (where H is a multiple of 8).
fn cases_on<D: GpuDevice>(dev: &mut D, cases: &[Case]) {
    let mut rng = Rng(seed());
    for &c in cases {
        for path in [LstmPath::PerStep, LstmPath::Persistent] {
            if path == LstmPath::Persistent && c.h % 8 != 0 {
                continue;
            }
            run_case(dev, Case { path, ..c }, &mut rng);
        }
    }
}

fn sim() -> Option<SimDevice> {
    if !ptx::BUILT_WITH_KERNELS {
        println!("SKIPPED: built without kernels");
        return None;
    }
    Some(SimDevice::new(seed()))
}

#[test]
fn one_layer_matches_cpu_on_the_simulator() {
    let Some(mut dev) = sim() else { return };
    cases_on(
        &mut dev,
        &[
            case(4, 2, 5, 8, 1, 0.0, false),
            case(5, 3, 3, 12, 1, 0.3, true),
        ],
    );
}

#[test]
fn two_layers_with_dropout_match_cpu_on_the_simulator() {
    let Some(mut dev) = sim() else { return };
    cases_on(
        &mut dev,
        &[
            case(5, 3, 7, 16, 2, 0.3, true),
            case(4, 4, 16, 8, 2, 0.3, false),
        ],
    );
}

#[test]
fn three_layers_match_cpu_on_the_simulator() {
    let Some(mut dev) = sim() else { return };
    cases_on(
        &mut dev,
        &[
            case(6, 2, 4, 32, 3, 0.0, true),
            case(4, 3, 9, 8, 3, 0.3, true),
        ],
    );
}

#[test]
fn eval_mode_has_no_dropout_on_the_simulator() {
    let Some(mut dev) = sim() else { return };
    let c = Case {
        train: false,
        ..case(4, 2, 6, 8, 2, 0.3, true)
    };
    cases_on(&mut dev, &[c]);
}

#[test]
fn lstm_device_op_matches_cpu_on_cuda() {
    let mut dev = match CudaDevice::new(0) {
        Ok(d) => d,
        Err(e) => {
            println!("SKIPPED: no GPU ({e})");
            return;
        }
    };
    cases_on(
        &mut dev,
        &[
            case(5, 3, 7, 16, 2, 0.3, true),
            case(6, 4, 4, 32, 3, 0.0, false),
            case(60, 64, 57, 128, 2, 0.25, true),
        ],
    );
}

#[test]
fn bad_shapes_are_errors_naming_the_argument() {
    let Some(mut dev) = sim() else { return };
    let (t, b, i, h, n) = (3, 2, 5, 8, 2);
    let lstm = Lstm::new(n, i, h).unwrap();
    let mut op = LstmDevice::new(&lstm);
    let ptr = DevicePtr::NULL;
    let s = |len| DeviceSlice::new(ptr, len);
    let layer = |i: usize| DeviceLayer {
        kernel: s(i * 4 * h),
        recurrent_kernel: s(h * 4 * h),
        bias: s(4 * h),
    };
    let weights = [layer(i), layer(h)];
    let out = DeviceOutput {
        y: s(t * b * h),
        h_n: s(n * b * h),
        c_n: s(n * b * h),
    };
    let name = |r: Result<(), Error>| match r {
        Err(Error::Shape { name, .. }) => name,
        other => panic!("want a shape error, got {other:?}"),
    };
    let mut fwd = |w: &[DeviceLayer], x: DeviceSlice, h0: Option<DeviceSlice>, o: DeviceOutput| {
        op.forward(&mut dev, w, x, (t, b), h0, None, Mode::Eval, &o)
    };
    assert_eq!(name(fwd(&weights, s(t * b * i + 1), None, out)), "x");
    assert_eq!(name(fwd(&weights[..1], s(t * b * i), None, out)), "weights");
    let wrong = [layer(i), layer(i)];
    assert_eq!(
        name(fwd(&wrong, s(t * b * i), None, out)),
        "weights[1].kernel"
    );
    let h0 = Some(s(b * h));
    assert_eq!(name(fwd(&weights, s(t * b * i), h0, out)), "h0");
    let short = DeviceOutput { y: s(b * h), ..out };
    assert_eq!(name(fwd(&weights, s(t * b * i), None, short)), "out.y");
    let grads = DeviceGrads {
        dx: None,
        dh0: s(n * b * h),
        dc0: s(n * b * h),
        layers: &weights,
    };
    let r = op.backward(&mut dev, &weights, s(t * b * h), None, None, &grads);
    assert!(
        matches!(
            &r,
            Err(Error::InvalidArgument {
                name: "backward",
                ..
            })
        ),
        "{r:?}"
    );
}
