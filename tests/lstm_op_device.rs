//! `ops::LstmDevice` (the public LSTM op on a device, issue 17) against the
//! CPU `ops::Lstm::<f64>` on the same inputs: every output (y, h_n, c_n)
//! and every gradient (dX, dh0, dc0, each layer's three weight gradients)
//! within a tolerance, all of them NaN-poisoned before the call, at small
//! shapes (T 3..6, B 2..4, H 8..64, N 1..3, In != H), each on the per-step,
//! persistent and (H a multiple of 64) cluster-forward paths, with and without
//! h0/c0 and dh_n/dc_n, dropout 0 and 0.3 in training (the same Philox
//! masks) and in evaluation, dense and class-index input (on the host, and
//! on the device: the same bits). On the simulator
//! here; the two `cuda` tests run such cases on a GPU (through `CudaDevice`
//! and through `LstmCuda` on the test's own cudarc stream) and skip without
//! one. Bad shapes are errors.
//! Fresh random inputs every run (seed printed; CHARLSTM_TEST_SEED replays).

mod common;
use common::{Rng, seed};

use charlstm_cuda::Error;
use charlstm_cuda::gpu::lstm::LstmPath;
use charlstm_cuda::gpu::{CudaDevice, DevicePtr, GpuDevice, SimDevice};
use charlstm_cuda::ops::{
    DeviceGrads, DeviceLayer, DeviceOutput, DeviceSlice, LayerParams, Lstm, LstmDevice, LstmGrads,
    LstmInput, Mode,
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
    /// Class indices [T, B] in 0..In for input (one-hot), not dense.
    classes: bool,
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

/// Every layer's weight gradients of `lstm`, NaN-poisoned.
fn poisoned_layers<D: GpuDevice>(dev: &mut D, lstm: &Lstm) -> Vec<DeviceLayer> {
    let (h, g) = (lstm.hidden(), 4 * lstm.hidden());
    (0..lstm.layers())
        .map(|l| DeviceLayer {
            kernel: poisoned(dev, lstm.layer_input(l) * g),
            recurrent_kernel: poisoned(dev, h * g),
            bias: poisoned(dev, g),
        })
        .collect()
}

fn down<D: GpuDevice>(dev: &mut D, s: DeviceSlice) -> Vec<f32> {
    if s.len == 0 {
        return Vec::new();
    }
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

/// One case's random inputs.
struct Data {
    lstm: Lstm,
    params: Vec<LayerParams<f32>>,
    x: Vec<f32>,
    /// The class input when the case has one.
    cls: Option<Vec<u32>>,
    h0: Option<Vec<f32>>,
    c0: Option<Vec<f32>>,
    dh_n: Option<Vec<f32>>,
    dc_n: Option<Vec<f32>>,
    dy: Vec<f32>,
    mode: Mode,
}

/// What the CPU op in f64 gives on them: y, h_n, c_n and the gradients.
struct Want {
    y: Vec<f64>,
    h_n: Vec<f64>,
    c_n: Vec<f64>,
    grads: LstmGrads<f64>,
}

fn data(c: Case, rng: &mut Rng) -> Data {
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
    let cls = c
        .classes
        .then(|| (0..t * b).map(|_| rng.range(0, c.input) as u32).collect());
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
    Data {
        lstm,
        params,
        x,
        cls,
        h0,
        c0,
        dh_n,
        dc_n,
        dy,
        mode,
    }
}

/// The CPU op in f64 on the same f32 values.
fn want(d: &Data, (t, b): (usize, usize)) -> Want {
    let p64: Vec<LayerParams<f64>> = d
        .params
        .iter()
        .map(|p| LayerParams {
            kernel: widen(&p.kernel),
            recurrent_kernel: widen(&p.recurrent_kernel),
            bias: widen(&p.bias),
        })
        .collect();
    let views: Vec<_> = p64.iter().map(LayerParams::weights).collect();
    let w64 = |s: &Option<Vec<f32>>| s.as_deref().map(widen);
    let (h0, c0, dh_n, dc_n) = (w64(&d.h0), w64(&d.c0), w64(&d.dh_n), w64(&d.dc_n));
    let x64 = widen(&d.x);
    let input = match &d.cls {
        Some(cls) => LstmInput::classes(cls, t, b),
        None => LstmInput::dense(&x64, t, b),
    };
    let out = d
        .lstm
        .forward(&views, input, h0.as_deref(), c0.as_deref(), d.mode)
        .unwrap();
    let (y, h_n, c_n) = (out.y().to_vec(), out.h_n().to_vec(), out.c_n().to_vec());
    let grads = d
        .lstm
        .backward(&views, out, &widen(&d.dy), dh_n.as_deref(), dc_n.as_deref())
        .unwrap();
    Want { y, h_n, c_n, grads }
}

const TOL: f64 = 2e-4;

/// Every output and gradient against the CPU's; `layers` = (d kernel, d
/// recurrent_kernel, d bias) of each layer.
fn compare(got: [Vec<f32>; 6], layers: Vec<[Vec<f32>; 3]>, want: &Want) {
    let [y, h_n, c_n, dx, dh0, dc0] = got;
    close("y", &y, &want.y, TOL);
    close("h_n", &h_n, &want.h_n, TOL);
    close("c_n", &c_n, &want.c_n, TOL);
    // A class input has no dX (`dx` empty then).
    match &want.grads.dx {
        Some(want_dx) => close("dx", &dx, want_dx, TOL),
        None => assert!(dx.is_empty()),
    }
    close("dh0", &dh0, &want.grads.dh0, TOL);
    close("dc0", &dc0, &want.grads.dc0, TOL);
    for (l, ([k, r, bias], w)) in layers.into_iter().zip(&want.grads.layers).enumerate() {
        close(&format!("d kernel {l}"), &k, &w.kernel, TOL);
        close(&format!("d recurrent {l}"), &r, &w.recurrent_kernel, TOL);
        close(&format!("d bias {l}"), &bias, &w.bias, TOL);
    }
}

fn run_case<D: GpuDevice>(dev: &mut D, c: Case, rng: &mut Rng) {
    let lstm = Lstm::new(c.n, c.input, c.h)
        .unwrap()
        .with_dropout(c.p)
        .unwrap();
    let mut op = LstmDevice::new(&lstm).with_path(c.path);
    run_case_on(dev, c, rng, &mut op);
    op.free(dev).unwrap();
}

/// One case on `op` (made for the case's N, In, H and p; its workspace
/// may hold any earlier call's).
fn run_case_on<D: GpuDevice>(dev: &mut D, c: Case, rng: &mut Rng, op: &mut LstmDevice) {
    let (t, b, h, n) = (c.t, c.b, c.h, c.n);
    let d = data(c, rng);
    let want = want(&d, (t, b));
    let (lstm, params, mode, state) = (&d.lstm, &d.params, d.mode, n * b * h);
    let (x, h0, c0, dh_n, dc_n, dy) = (&d.x, &d.h0, &d.c0, &d.dh_n, &d.dc_n, &d.dy);
    let weights: Vec<DeviceLayer> = params
        .iter()
        .map(|p| DeviceLayer {
            kernel: up(dev, &p.kernel),
            recurrent_kernel: up(dev, &p.recurrent_kernel),
            bias: up(dev, &p.bias),
        })
        .collect();
    let gl = poisoned_layers(dev, lstm);
    let xd = up(dev, x);
    let opt_up = |dev: &mut D, s: &Option<Vec<f32>>| s.as_deref().map(|s| up(dev, s));
    let (h0d, c0d) = (opt_up(dev, h0), opt_up(dev, c0));
    let (dhd, dcd) = (opt_up(dev, dh_n), opt_up(dev, dc_n));
    let out = DeviceOutput {
        y: poisoned(dev, t * b * h),
        h_n: poisoned(dev, state),
        c_n: poisoned(dev, state),
    };
    match &d.cls {
        Some(cls) => op.forward_classes(dev, &weights, cls, (t, b), h0d, c0d, mode, &out),
        None => op.forward(dev, &weights, xd, (t, b), h0d, c0d, mode, &out),
    }
    .unwrap();
    let dyd = up(dev, dy);
    let grads = DeviceGrads {
        dx: (!c.classes).then(|| poisoned(dev, t * b * c.input)),
        dh0: poisoned(dev, state),
        dc0: poisoned(dev, state),
        layers: &gl,
    };
    if c.classes {
        let with_dx = DeviceGrads {
            dx: Some(poisoned(dev, t * b * c.input)),
            ..grads
        };
        let r = op.backward(dev, &weights, dyd, dhd, dcd, &with_dx);
        assert!(
            matches!(
                r,
                Err(Error::InvalidArgument {
                    name: "grads.dx",
                    ..
                })
            ),
            "{r:?}"
        );
    }
    op.backward(dev, &weights, dyd, dhd, dcd, &grads).unwrap();
    let got = [
        out.y,
        out.h_n,
        out.c_n,
        grads.dx.unwrap_or_default(),
        grads.dh0,
        grads.dc0,
    ]
    .map(|s| down(dev, s));
    let layers = gl
        .iter()
        .map(|l| [l.kernel, l.recurrent_kernel, l.bias].map(|s| down(dev, s)))
        .collect();
    compare(got, layers, &want);
    // A second backward has no forward left to differentiate.
    let again = op.backward(dev, &weights, dyd, dhd, dcd, &grads);
    assert!(matches!(
        again,
        Err(Error::InvalidArgument {
            name: "backward",
            ..
        })
    ));
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
        classes: false,
    }
}

/// The cases of one test, each on the per-step and the persistent kernels
/// (where H is a multiple of 8) and the cluster forward (a multiple of 64).
fn cases_on<D: GpuDevice>(dev: &mut D, cases: &[Case]) {
    let mut rng = Rng(seed());
    for &c in cases {
        for path in [LstmPath::PerStep, LstmPath::Persistent, LstmPath::Cluster] {
            if path == LstmPath::Persistent && c.h % 8 != 0
                || path == LstmPath::Cluster && c.h % 64 != 0
            {
                continue;
            }
            run_case(dev, Case { path, ..c }, &mut rng);
        }
    }
}

fn sim() -> Option<SimDevice> {
    if !common::kernels() {
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
            case(3, 3, 9, 64, 2, 0.3, true),
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
fn one_op_serves_calls_of_several_shapes_on_the_simulator() {
    let Some(mut dev) = sim() else { return };
    let mut rng = Rng(seed());
    let lstm = Lstm::new(2, 5, 8).unwrap().with_dropout(0.3).unwrap();
    let mut op = LstmDevice::new(&lstm);
    // Grows in T, then in B, then runs within what it holds.
    for (t, b) in [(4, 2), (6, 2), (5, 4), (3, 3), (6, 4)] {
        run_case_on(&mut dev, case(t, b, 5, 8, 2, 0.3, true), &mut rng, &mut op);
    }
    op.free(&mut dev).unwrap();
}

#[test]
fn class_indices_match_cpu_on_the_simulator() {
    let Some(mut dev) = sim() else { return };
    let classes = |c: Case| Case { classes: true, ..c };
    cases_on(
        &mut dev,
        &[
            classes(case(5, 3, 70, 16, 2, 0.3, true)),
            classes(case(4, 2, 9, 8, 1, 0.0, false)),
            classes(case(4, 4, 20, 12, 3, 0.3, true)),
        ],
    );
    // Dense and class calls on one op, in turn.
    let mut rng = Rng(seed());
    let lstm = Lstm::new(2, 9, 8).unwrap().with_dropout(0.3).unwrap();
    let mut op = LstmDevice::new(&lstm);
    for classes in [false, true, false] {
        let c = Case {
            classes,
            ..case(4, 3, 9, 8, 2, 0.3, true)
        };
        run_case_on(&mut dev, c, &mut rng, &mut op);
    }
    op.free(&mut dev).unwrap();
}

/// Class indices already on the device (`forward_classes_device`) give the
/// host indices' results bit for bit, forward and backward, with dropout
/// and two u64 words a one-hot row (In = 70, an index in each word). Both
/// go through `op_classes_onehot_u32`; its packing is checked against the
/// host's by the selftest and, through the CPU op, by
/// `class_indices_match_cpu_on_the_simulator`. An index not below In is an
/// error naming the first and the count, after which the op has no forward
/// for a backward and serves the next call as before; a wrong length is a
/// shape error.
#[test]
fn class_indices_on_the_device_give_the_host_indices_bits_on_the_simulator() {
    let Some(mut dev) = sim() else { return };
    let mut rng = Rng(seed());
    let (t, b, i, h, n) = (5, 3, 70, 16, 2);
    let lstm = Lstm::new(n, i, h).unwrap().with_dropout(0.3).unwrap();
    let g = 4 * h;
    let weights: Vec<DeviceLayer> = (0..n)
        .map(|l| DeviceLayer {
            kernel: up(&mut dev, &rng.vec(lstm.layer_input(l) * g, 0.6)),
            recurrent_kernel: up(&mut dev, &rng.vec(h * g, 0.6)),
            bias: up(&mut dev, &rng.vec(g, 0.6)),
        })
        .collect();
    let mut classes: Vec<u32> = (0..t * b).map(|_| rng.range(0, i) as u32).collect();
    (classes[2], classes[7]) = (3, 67);
    let up_u32 = |dev: &mut SimDevice, v: &[u32]| {
        let p = dev.alloc(v.len() * 4).unwrap();
        dev.upload_u32(p, v).unwrap();
        DeviceSlice::new(p, v.len())
    };
    let on_device = up_u32(&mut dev, &classes);
    let dy = up(&mut dev, &rng.vec(t * b * h, 0.1));
    let mode = Mode::Train {
        seed: rng.next_u64(),
        step: 3,
    };
    let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
    let mut run = |device: bool| {
        let mut op = LstmDevice::new(&lstm);
        let dev = &mut dev;
        let state = n * b * h;
        let out = DeviceOutput {
            y: poisoned(dev, t * b * h),
            h_n: poisoned(dev, state),
            c_n: poisoned(dev, state),
        };
        match device {
            true => {
                op.forward_classes_device(dev, &weights, on_device, (t, b), None, None, mode, &out)
            }
            false => op.forward_classes(dev, &weights, &classes, (t, b), None, None, mode, &out),
        }
        .unwrap();
        let gl = poisoned_layers(dev, &lstm);
        let grads = DeviceGrads {
            dx: None,
            dh0: poisoned(dev, state),
            dc0: poisoned(dev, state),
            layers: &gl,
        };
        op.backward(dev, &weights, dy, None, None, &grads).unwrap();
        let mut all = vec![out.y, out.h_n, out.c_n, grads.dh0, grads.dc0];
        all.extend(
            gl.iter()
                .flat_map(|l| [l.kernel, l.recurrent_kernel, l.bias]),
        );
        let got: Vec<Vec<u32>> = all.into_iter().map(|s| bits(down(dev, s))).collect();
        op.free(dev).unwrap();
        got
    };
    let (host, device) = (run(false), run(true));
    assert!(host.iter().flatten().all(|&x| !f32::from_bits(x).is_nan()));
    assert_eq!(host, device, "device indices vs host indices");

    // One op: a good forward, a refused one, then good calls again.
    let mut op = LstmDevice::new(&lstm);
    let out = DeviceOutput {
        y: poisoned(&mut dev, t * b * h),
        h_n: poisoned(&mut dev, n * b * h),
        c_n: poisoned(&mut dev, n * b * h),
    };
    let fwd = |op: &mut LstmDevice, dev: &mut SimDevice, x: DeviceSlice| {
        op.forward_classes_device(dev, &weights, x, (t, b), None, None, mode, &out)
    };
    fwd(&mut op, &mut dev, on_device).unwrap();
    let mut bad = classes.clone();
    (bad[4], bad[9]) = (1000, i as u32); // k = 4: t = 1, b = 1
    let bad = up_u32(&mut dev, &bad);
    let e = fwd(&mut op, &mut dev, bad)
        .expect_err("indices out of range")
        .to_string();
    assert!(
        e.contains("2 class index(es)")
            && e.contains("In = 70")
            && e.contains("t = 1, b = 1, is 1000"),
        "{e}"
    );
    let grads = DeviceGrads {
        dx: None,
        dh0: poisoned(&mut dev, n * b * h),
        dc0: poisoned(&mut dev, n * b * h),
        layers: &weights,
    };
    let r = op.backward(&mut dev, &weights, dy, None, None, &grads);
    assert!(
        matches!(
            &r,
            Err(Error::InvalidArgument {
                name: "backward",
                ..
            })
        ),
        "the refused forward left the good one's tape: {r:?}"
    );
    fwd(&mut op, &mut dev, on_device).unwrap();
    assert_eq!(
        bits(down(&mut dev, out.y)),
        host[0],
        "y after a refused call"
    );
    let r = fwd(&mut op, &mut dev, bad);
    assert!(r.is_err(), "the count was not reset: {r:?}");
    let short = DeviceSlice::new(on_device.ptr, t * b - 1);
    let r = fwd(&mut op, &mut dev, short);
    assert!(
        matches!(&r, Err(Error::Shape { name, .. }) if name == "x"),
        "{r:?}"
    );
    op.free(&mut dev).unwrap();
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
            case(20, 16, 57, 256, 2, 0.25, true),
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
    let mut classes = vec![0u32; t * b];
    classes[t * b - 1] = i as u32;
    let r = op.forward_classes(
        &mut dev,
        &weights,
        &classes,
        (t, b),
        None,
        None,
        Mode::Eval,
        &out,
    );
    assert!(
        matches!(&r, Err(Error::InvalidArgument { name: "x", .. })),
        "{r:?}"
    );
    let r = op.forward_classes(
        &mut dev,
        &weights,
        &classes[1..],
        (t, b),
        None,
        None,
        Mode::Eval,
        &out,
    );
    assert!(
        matches!(&r, Err(Error::Shape { name, .. }) if name == "x"),
        "{r:?}"
    );
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

/// `LstmCuda` the way a cudarc crate calls it: its own context, stream and
/// `CudaSlice`s, nothing uploaded through our device.
/// A class case's indices go from the host, or (`on_device`) from the
/// caller's own `CudaSlice<u32>`.
fn cudarc_case(
    stream: &std::sync::Arc<charlstm_cuda::cudarc::driver::CudaStream>,
    c: Case,
    on_device: bool,
    rng: &mut Rng,
) {
    use charlstm_cuda::ops::{CudaLayer, CudaLayerGrads, LstmCuda};
    let (t, b, h, n, g) = (c.t, c.b, c.h, c.n, 4 * c.h);
    let d = data(c, rng);
    let want = want(&d, (t, b));
    let up = |v: &[f32]| stream.clone_htod(v).unwrap();
    let nan = |len: usize| up(&vec![f32::NAN; len]);
    let opt = |v: &Option<Vec<f32>>| v.as_deref().map(up);
    let w: Vec<_> = d
        .params
        .iter()
        .map(|p| [&p.kernel, &p.recurrent_kernel, &p.bias].map(|v| up(v)))
        .collect();
    let weights: Vec<CudaLayer<'_>> = w
        .iter()
        .map(|[k, r, bias]| CudaLayer {
            kernel: k,
            recurrent_kernel: r,
            bias,
        })
        .collect();
    let mut op = LstmCuda::new(&d.lstm, stream.clone())
        .unwrap()
        .with_path(c.path);
    let (x, h0, c0) = (up(&d.x), opt(&d.h0), opt(&d.c0));
    let state = n * b * h;
    let (mut y, mut h_n, mut c_n) = (nan(t * b * h), nan(state), nan(state));
    let (h0, c0, out) = (h0.as_ref(), c0.as_ref(), (&mut y, &mut h_n, &mut c_n));
    match &d.cls {
        None => op.forward(&weights, &x, (t, b), h0, c0, d.mode, out),
        Some(cls) if on_device => {
            let cls = stream.clone_htod(cls).unwrap();
            op.forward_classes_device(&weights, &cls, (t, b), h0, c0, d.mode, out)
        }
        Some(cls) => op.forward_classes(&weights, cls, (t, b), h0, c0, d.mode, out),
    }
    .unwrap();
    let (dy, dh_n, dc_n) = (up(&d.dy), opt(&d.dh_n), opt(&d.dc_n));
    let (mut dx, mut dh0, mut dc0) = (nan(t * b * c.input), nan(state), nan(state));
    let mut gw: Vec<_> = (0..n)
        .map(|l| [nan(d.lstm.layer_input(l) * g), nan(h * g), nan(g)])
        .collect();
    let mut grads: Vec<CudaLayerGrads<'_>> = gw
        .iter_mut()
        .map(|[k, r, bias]| CudaLayerGrads {
            kernel: k,
            recurrent_kernel: r,
            bias,
        })
        .collect();
    op.backward(
        &weights,
        &dy,
        dh_n.as_ref(),
        dc_n.as_ref(),
        (!c.classes).then_some(&mut dx),
        (&mut dh0, &mut dc0),
        &mut grads,
    )
    .unwrap();
    drop(grads);
    let down = |s: &charlstm_cuda::cudarc::driver::CudaSlice<f32>| stream.clone_dtoh(s).unwrap();
    let mut got = [&y, &h_n, &c_n, &dx, &dh0, &dc0].map(down);
    if c.classes {
        got[3].clear(); // no dX for a class input
    }
    let layers = gw.iter().map(|l| [&l[0], &l[1], &l[2]].map(down)).collect();
    compare(got, layers, &want);
}

#[test]
fn lstm_cuda_on_the_callers_stream_matches_cpu_on_cuda() {
    if let Err(why) = CudaDevice::probe() {
        println!("SKIPPED: no GPU ({why})");
        return;
    }
    let ctx = charlstm_cuda::cudarc::driver::CudaContext::new(0).unwrap();
    let stream = ctx.new_stream().unwrap();
    let mut rng = Rng(seed());
    let classes = Case {
        classes: true,
        ..case(6, 4, 9, 32, 2, 0.3, true)
    };
    for (c, on_device) in [
        (case(5, 3, 7, 16, 2, 0.3, true), false),
        (case(60, 64, 57, 128, 2, 0.25, false), false),
        (classes, false),
        (classes, true),
    ] {
        cudarc_case(&stream, c, on_device, &mut rng);
    }
}
