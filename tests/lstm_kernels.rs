//! kernels/lstm.cu on the simulator: the per-step LSTM forward over all T
//! steps, the fused head, the per-step backward and the weight gradients,
//! against a plain f64 reference written here and against the CPU reference
//! `cpu::loss_and_grads::<f32>` on the same windows. Random shapes and data,
//! fresh every run (seed printed; CHARLSTM_TEST_SEED replays); every output
//! is poisoned before the launches; bound `|err| <= abs + 1e-4 * |ref|` with
//! `abs = 1e-5 * max |ref|` of the tensor (elements that cancel to ~0 have no
//! meaningful relative error), max errors printed.

mod common;
use common::{Rng, seed};

use charlstm_cuda::Result;
use charlstm_cuda::corpus::OneHotCorpus;
use charlstm_cuda::cpu;
use charlstm_cuda::gpu::device::{DeviceError, DevicePtr, GpuDevice};
use charlstm_cuda::gpu::head::{HeadBuffers, HeadDims, HeadLauncher};
use charlstm_cuda::gpu::lstm::{LstmBuffers, LstmDims, LstmLauncher};
use charlstm_cuda::gpu::{CudaDevice, SimDevice, ptx};
use charlstm_cuda::model::Params;
use charlstm_cuda::sim::{ParamValue as P, Simulator};

/// `|got - want| <= 1e-5 * max|want| + 1e-4 * |want|`; prints the worst
/// errors; returns the max relative error over elements with |want| above
/// the absolute floor.
fn check(name: &str, got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let scale = want.iter().fold(0f64, |m, w| m.max(w.abs()));
    let (abs, rel) = (1e-5 * scale, 1e-4);
    let (mut max_abs, mut max_rel, mut bad) = (0f64, 0f64, Vec::new());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (f64::from(g) - w).abs();
        max_abs = max_abs.max(err);
        if w.abs() > abs {
            max_rel = max_rel.max(err / w.abs());
        }
        if err.is_nan() || err > abs + rel * w.abs() {
            bad.push((i, g, w));
        }
    }
    println!(
        "  {name:<22} {:>6} values  max|ref| {scale:.2e}  max abs err {max_abs:.2e}  max rel err {max_rel:.2e}",
        got.len()
    );
    assert!(
        bad.is_empty(),
        "{name}: {} of {} outside {abs:e} + {rel:e}*|ref|, first (index, got, want): {:?}",
        bad.len(),
        got.len(),
        &bad[..bad.len().min(5)]
    );
    max_rel
}

fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Everything the kernels produce, computed plainly in f64.
struct Reference {
    gates: Vec<f64>, // [T, B, 4H]
    c: Vec<f64>,     // [T, B, H]
    h: Vec<f64>,     // [T, B, H]
    dz: Vec<f64>,    // [T, B, 4H]
    loss: f64,
    dlogits: Vec<f64>,
    grads: Params<f64>,
}

/// x [B, T], y [B] as `cpu::gather` returns them.
fn reference(p: &Params<f32>, x: &[u32], y: &[u32], bsz: usize, tsz: usize) -> Reference {
    let (h, v) = (p.hidden, p.vocab);
    let g = 4 * h;
    let pk = to_f64(&p.kernel);
    let prk = to_f64(&p.recurrent_kernel);
    let pb = to_f64(&p.bias);
    let pdk = to_f64(&p.dense_kernel);
    let pdb = to_f64(&p.dense_bias);
    let mut r = Reference {
        gates: vec![0.0; tsz * bsz * g],
        c: vec![0.0; tsz * bsz * h],
        h: vec![0.0; tsz * bsz * h],
        dz: vec![0.0; tsz * bsz * g],
        loss: 0.0,
        dlogits: vec![0.0; bsz * v],
        grads: Params::zeros(v, h),
    };
    let zeros = vec![0.0; h];
    for t in 0..tsz {
        for b in 0..bsz {
            let cls = x[b * tsz + t] as usize;
            let s = (t * bsz + b) * h;
            let (hp, cp) = if t == 0 {
                (zeros.clone(), zeros.clone())
            } else {
                let sp = ((t - 1) * bsz + b) * h;
                (r.h[sp..sp + h].to_vec(), r.c[sp..sp + h].to_vec())
            };
            for j in 0..h {
                let z = |q: usize| {
                    pk[cls * g + q * h + j]
                        + pb[q * h + j]
                        + (0..h).map(|k| hp[k] * prk[k * g + q * h + j]).sum::<f64>()
                };
                let (i, f, gg, o) = (sigmoid(z(0)), sigmoid(z(1)), z(2).tanh(), sigmoid(z(3)));
                let gs = (t * bsz + b) * g;
                r.gates[gs + j] = i;
                r.gates[gs + h + j] = f;
                r.gates[gs + 2 * h + j] = gg;
                r.gates[gs + 3 * h + j] = o;
                let c = f * cp[j] + i * gg;
                r.c[s + j] = c;
                r.h[s + j] = o * c.tanh();
            }
        }
    }
    // Head on h[T-1].
    let last = (tsz - 1) * bsz * h;
    let mut dh = vec![0.0; bsz * h];
    for b in 0..bsz {
        let hl = &r.h[last + b * h..last + (b + 1) * h];
        let logits: Vec<f64> = (0..v)
            .map(|j| pdb[j] + (0..h).map(|k| hl[k] * pdk[k * v + j]).sum::<f64>())
            .collect();
        let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let log_z = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
        r.loss += (log_z - logits[y[b] as usize]) / bsz as f64;
        for j in 0..v {
            let pj = (logits[j] - log_z).exp();
            let dl = (pj - if j == y[b] as usize { 1.0 } else { 0.0 }) / bsz as f64;
            r.dlogits[b * v + j] = dl;
            r.grads.dense_bias[j] += dl;
            for k in 0..h {
                r.grads.dense_kernel[k * v + j] += hl[k] * dl;
                dh[b * h + k] += dl * pdk[k * v + j];
            }
        }
    }
    // BPTT.
    let mut dc = vec![0.0; bsz * h];
    for t in (0..tsz).rev() {
        for b in 0..bsz {
            for j in 0..h {
                let gs = (t * bsz + b) * g;
                let (i, f, gg, o) = (
                    r.gates[gs + j],
                    r.gates[gs + h + j],
                    r.gates[gs + 2 * h + j],
                    r.gates[gs + 3 * h + j],
                );
                let s = (t * bsz + b) * h + j;
                let tc = r.c[s].tanh();
                let cp = if t == 0 {
                    0.0
                } else {
                    r.c[((t - 1) * bsz + b) * h + j]
                };
                let dhj = dh[b * h + j];
                let dcj = dc[b * h + j] + dhj * o * (1.0 - tc * tc);
                r.dz[gs + j] = dcj * gg * i * (1.0 - i);
                r.dz[gs + h + j] = dcj * cp * f * (1.0 - f);
                r.dz[gs + 2 * h + j] = dcj * i * (1.0 - gg * gg);
                r.dz[gs + 3 * h + j] = dhj * tc * o * (1.0 - o);
                dc[b * h + j] = dcj * f;
            }
        }
        for b in 0..bsz {
            let gs = (t * bsz + b) * g;
            let cls = x[b * tsz + t] as usize;
            for q in 0..g {
                let d = r.dz[gs + q];
                r.grads.kernel[cls * g + q] += d;
                r.grads.bias[q] += d;
                if t > 0 {
                    for k in 0..h {
                        r.grads.recurrent_kernel[k * g + q] += r.h[((t - 1) * bsz + b) * h + k] * d;
                    }
                }
            }
            for k in 0..h {
                dh[b * h + k] = (0..g).map(|q| r.dz[gs + q] * prk[k * g + q]).sum();
            }
        }
    }
    r
}

/// A random text over exactly `v` distinct characters (no upper case, so
/// lower-casing cannot merge two), at least `len` long.
fn random_text(rng: &mut Rng, v: usize, len: usize) -> String {
    let pool: Vec<char> = (0x21u8..0x7f)
        .map(char::from)
        .filter(|c| !c.is_ascii_uppercase())
        .chain("éèàùâêîôûçëïü ".chars())
        .collect();
    assert!(v <= pool.len(), "V = {v} needs a larger pool");
    let mut text: Vec<char> = pool[..v].to_vec(); // every symbol occurs
    while text.len() < len {
        text.push(pool[rng.range(0, v)]);
    }
    // Shuffle so the guaranteed occurrences are not all at the start.
    for i in (1..text.len()).rev() {
        text.swap(i, rng.range(0, i + 1));
    }
    text.into_iter().collect()
}

fn poisoned<D: GpuDevice>(dev: &mut D, n: usize) -> Result<DevicePtr> {
    dev.upload_new_f32(&vec![f32::NAN; n.max(1)])
}

fn one_case<D: GpuDevice>(
    dev: &mut D,
    rng: &mut Rng,
    (v, h, bsz, tsz): (usize, usize, usize, usize),
) -> Result<()> {
    let text = random_text(rng, v, v + tsz + 40);
    let corpus = OneHotCorpus::from_text(&text, true)?;
    assert_eq!(corpus.vocab().len(), v);
    let wpr = corpus.words_per_row();
    let starts: Vec<u32> = (0..bsz)
        .map(|_| rng.range(0, corpus.rows() - tsz) as u32)
        .collect();
    let (x, y) = cpu::gather(&corpus, &starts, tsz);
    let mut p = Params::<f32>::zeros(v, h);
    for t in p.tensors_mut() {
        t.iter_mut().for_each(|e| *e = rng.f32(0.6));
    }
    println!("case V={v} H={h} B={bsz} T={tsz} words_per_row={wpr}");
    let want = reference(&p, &x, &y, bsz, tsz);

    let g = 4 * h;
    let dims = LstmDims {
        batch: bsz,
        seq_len: tsz,
        hidden: h,
        vocab: v,
        words_per_row: wpr,
    };
    let words = dev.alloc(corpus.words().len() * 8)?;
    dev.upload(words, bytemuck::cast_slice(corpus.words()))?;
    let bufs = LstmBuffers {
        corpus_words: words,
        starts: dev.upload_new_u32(&starts)?,
        kernel: dev.upload_new_f32(&p.kernel)?,
        recurrent_kernel: dev.upload_new_f32(&p.recurrent_kernel)?,
        bias: dev.upload_new_f32(&p.bias)?,
        gates: poisoned(dev, tsz * bsz * g)?,
        c: poisoned(dev, tsz * bsz * h)?,
        h: poisoned(dev, tsz * bsz * h)?,
        cls: dev.upload_new_u32(&vec![u32::MAX; tsz * bsz])?,
        dz: poisoned(dev, tsz * bsz * g)?,
        dh: poisoned(dev, bsz * h)?,
        dc: poisoned(dev, bsz * h)?,
        d_kernel: poisoned(dev, v * g)?,
        d_recurrent_kernel: poisoned(dev, h * g)?,
        d_bias: poisoned(dev, g)?,
    };
    let head = HeadBuffers {
        h: dims.at(bufs.h, tsz - 1, h),
        dense_kernel: dev.upload_new_f32(&p.dense_kernel)?,
        dense_bias: dev.upload_new_f32(&p.dense_bias)?,
        targets: dev.upload_new_u32(&y)?,
        probs: DevicePtr::NULL,
        dlogits: poisoned(dev, bsz * v)?,
        dh: bufs.dh,
        d_dense_kernel: poisoned(dev, h * v)?,
        d_dense_bias: poisoned(dev, v)?,
        loss_sum: dev.upload_new_f32(&[0.0])?,
    };
    let lstm = LstmLauncher::default();
    lstm.forward(dev, dims, &bufs)?;
    HeadLauncher::default().fwd_bwd(
        dev,
        HeadDims {
            batch: bsz,
            hidden: h,
            vocab: v,
        },
        &head,
        1.0 / bsz as f32,
    )?;
    lstm.backward(dev, dims, &bufs)?;
    dev.synchronize()?;

    let mut cls = vec![0u32; tsz * bsz];
    dev.download(bufs.cls, bytemuck::cast_slice_mut(&mut cls))?;
    let x_tmajor: Vec<u32> = (0..tsz * bsz)
        .map(|s| x[(s % bsz) * tsz + s / bsz])
        .collect();
    assert_eq!(
        cls, x_tmajor,
        "cls [T, B] must be the decoded input classes"
    );

    let got = |dev: &mut D, ptr, n| dev.download_vec_f32(ptr, n);
    let loss = got(dev, head.loss_sum, 1)?;
    let got_grads = Params {
        vocab: v,
        hidden: h,
        kernel: got(dev, bufs.d_kernel, v * g)?,
        recurrent_kernel: got(dev, bufs.d_recurrent_kernel, h * g)?,
        bias: got(dev, bufs.d_bias, g)?,
        dense_kernel: got(dev, head.d_dense_kernel, h * v)?,
        dense_bias: got(dev, head.d_dense_bias, v)?,
    };
    println!(" vs f64 reference:");
    check("gates", &got(dev, bufs.gates, tsz * bsz * g)?, &want.gates);
    check("c", &got(dev, bufs.c, tsz * bsz * h)?, &want.c);
    check("h", &got(dev, bufs.h, tsz * bsz * h)?, &want.h);
    check("dz", &got(dev, bufs.dz, tsz * bsz * g)?, &want.dz);
    check("dlogits", &got(dev, head.dlogits, bsz * v)?, &want.dlogits);
    check("loss", &loss, &[want.loss]);
    let names = charlstm_cuda::model::TENSOR_NAMES;
    for ((name, gt), wt) in names
        .iter()
        .zip(got_grads.tensors())
        .zip(want.grads.tensors())
    {
        check(&format!("d {name}"), gt, wt);
    }

    println!(" vs cpu::loss_and_grads::<f32>:");
    let (cpu_loss, cpu_grads) = cpu::loss_and_grads::<f32>(&p, &x, &y, tsz);
    check("loss", &loss, &[f64::from(cpu_loss)]);
    for ((name, gt), ct) in names
        .iter()
        .zip(got_grads.tensors())
        .zip(cpu_grads.tensors())
    {
        check(&format!("d {name}"), gt, &to_f64(ct));
    }

    for ptr in [
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
        bufs.d_kernel,
        bufs.d_recurrent_kernel,
        bufs.d_bias,
        head.dense_kernel,
        head.dense_bias,
        head.targets,
        head.dlogits,
        head.d_dense_kernel,
        head.d_dense_bias,
        head.loss_sum,
    ] {
        dev.free(ptr)?;
    }
    Ok(())
}

/// Fixed edge shapes (one step, one row, V > 64 so two words per row,
/// B*H across the 128-thread block), then random ones.
fn all_cases<D: GpuDevice>(dev: &mut D, seed: u64) -> Result<()> {
    let mut rng = Rng(seed);
    let mut cases = vec![(5, 3, 1, 1), (70, 7, 2, 3), (66, 33, 4, 2)];
    for _ in 0..3 {
        cases.push((
            rng.range(5, 71),
            rng.range(3, 41),
            rng.range(1, 7),
            rng.range(1, 8),
        ));
    }
    for case in cases {
        one_case(dev, &mut rng, case)?;
    }
    Ok(())
}

#[test]
fn lstm_kernels_match_f64_and_cpu_on_the_simulator() {
    if !ptx::BUILT_WITH_KERNELS {
        println!("SKIPPED: built without kernels");
        return;
    }
    let seed = seed();
    all_cases(&mut SimDevice::new(seed), seed).unwrap();
}

#[test]
fn lstm_kernels_match_f64_and_cpu_on_cuda() {
    if !ptx::BUILT_WITH_KERNELS {
        println!("SKIPPED: built without kernels");
        return;
    }
    let mut dev = match CudaDevice::new(0) {
        Ok(dev) => dev,
        Err(e) => {
            println!("SKIPPED: no GPU ({e})");
            return;
        }
    };
    println!("device: {}", dev.name());
    all_cases(&mut dev, seed()).unwrap();
}

#[test]
fn launcher_rejects_bad_dims() {
    let mut dev = SimDevice::new(0);
    let dims = LstmDims {
        batch: 2,
        seq_len: 3,
        hidden: 4,
        vocab: 70,
        words_per_row: 1,
    };
    let p = DevicePtr(64);
    let bufs = LstmBuffers {
        corpus_words: p,
        starts: p,
        kernel: p,
        recurrent_kernel: p,
        bias: p,
        gates: p,
        c: p,
        h: p,
        cls: p,
        dz: p,
        dh: p,
        dc: p,
        d_kernel: p,
        d_recurrent_kernel: p,
        d_bias: p,
    };
    let l = LstmLauncher::default();
    let err = l.fwd_step(&mut dev, dims, &bufs, 0).unwrap_err();
    assert!(
        matches!(
            err,
            charlstm_cuda::Error::Device(DeviceError::BadArguments { .. })
        ),
        "{err}"
    );
    let ok = LstmDims {
        words_per_row: 2,
        ..dims
    };
    let err = l.bwd_step(&mut dev, ok, &bufs, 3).unwrap_err();
    assert!(err.to_string().contains("step 3 of T = 3"), "{err}");
}

/// The instruction forms kernels/lstm.cu adds (tests/kernels/lstm_forms.cu),
/// checked against Rust.
#[test]
fn lstm_instruction_forms_match_rust() {
    if !ptx::BUILT_WITH_KERNELS {
        println!("SKIPPED: built without kernels");
        return;
    }
    let mut s = Simulator::new(5);
    s.load_module("lstm_forms", ptx::test_module("lstm_forms").unwrap())
        .unwrap();
    let n = 100usize;
    let mut w = Vec::new();
    for i in 0..n as u64 {
        w.push(if i % 9 == 0 {
            0
        } else {
            i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (i % 64)
        });
        w.push(if i % 5 == 0 {
            w[w.len() - 1]
        } else {
            i << (i % 50)
        });
    }
    let a: Vec<f32> = (0..n).map(|i| (i as f32 - 50.5) * 0.731).collect();
    let u: Vec<u32> = (0..2 * n as u32)
        .map(|i| i.wrapping_mul(2_654_435_761))
        .collect();
    let up = |s: &mut Simulator, b: &[u8]| {
        let p = s.alloc(b.len()).unwrap();
        s.write(p, b).unwrap();
        p
    };
    let (dw, da, du) = (
        up(&mut s, bytemuck::cast_slice(&w)),
        up(&mut s, bytemuck::cast_slice(&a)),
        up(&mut s, bytemuck::cast_slice(&u)),
    );
    let (ow, of, ou) = (
        s.alloc(n * 40).unwrap(),
        s.alloc(n * 4).unwrap(),
        s.alloc(n * 4).unwrap(),
    );
    s.launch(
        "lstm_forms",
        [4, 1, 1],
        [32, 1, 1],
        0,
        &[
            P::Ptr(dw),
            P::Ptr(da),
            P::Ptr(du),
            P::Ptr(ow),
            P::Ptr(of),
            P::Ptr(ou),
            P::U32(n as u32),
        ],
    )
    .unwrap();
    let mut rw = vec![0u64; n * 5];
    let mut rf = vec![0f32; n];
    let mut ru = vec![0u32; n];
    s.read(ow, bytemuck::cast_slice_mut(&mut rw)).unwrap();
    s.read(of, bytemuck::cast_slice_mut(&mut rf)).unwrap();
    s.read(ou, bytemuck::cast_slice_mut(&mut ru)).unwrap();
    for i in 0..n {
        let (p, q) = (w[2 * i], w[2 * i + 1]);
        let want = [
            u64::from(p.leading_zeros()),
            0u64.wrapping_sub(p),
            u64::from(p <= q),
            u64::from(p as i64 != q as i64),
            if p == 0 || q == 0 { 7 } else { 9 },
        ];
        assert_eq!(rw[i * 5..i * 5 + 5], want, "u64 forms, element {i}");
        assert_eq!(rf[i].to_bits(), (1.0 / a[i]).to_bits(), "rcp.rn {i}");
        assert_eq!(ru[i], u[2 * i].min(u[2 * i + 1]), "min.u32 {i}");
    }
}
