//! CPU reference timings on the Keras job's shapes (B = 128 windows, T = 60,
//! H = 128, V = 57), f32, random parameters and data (no corpus, no gather):
//!
//! - `train_step`: `loss_and_grads_into` + `RmsProp::step`, one batch;
//! - `forward_loss`: `loss_with` on the same batch (no backward);
//! - `predict_4x60`: `predict_into` of 4 sequences (the generator's batch);
//! - `generate_4x400`: the notebook's after-epoch block, 400 characters at
//!   temperatures 0.2 / 0.5 / 1.0 / 1.2 as one batch, sliding 60-char windows;
//! - `generate_4x400_stateful`: the same block in stateful mode
//!   (`--gen-mode stateful`): the 60-char seed once, then one LSTM step per
//!   character (issue 18: at least 20x faster than the windows).
//!
//! An epoch of the Keras job is 1,565 such batches: ms/batch x 1.565 = s/epoch.
//! Threads: one per available core (results do not depend on it).

use charlstm_cuda::corpus::Vocab;
use charlstm_cuda::cpu::{self, CpuModel, RmsProp, Workspace};
use charlstm_cuda::model::{Grads, Params, init_params};
use charlstm_cuda::sample::{
    GenMode, GenerateRequest, Generator, Purpose, RngStream, Strategy, encode_seed, no_progress,
};
use charlstm_cuda::stateful::generate_stateful;
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

const V: usize = 57;
const H: usize = 128;
const T: usize = 60;
const B: usize = 128;

fn batch(b: usize) -> (Vec<u32>, Vec<u32>) {
    let mut rng = RngStream::new(5, Purpose::Sample, 0);
    let x = (0..b * T).map(|_| rng.below(V as u64) as u32).collect();
    let y = (0..b).map(|_| rng.below(V as u64) as u32).collect();
    (x, y)
}

fn benches(c: &mut Criterion) {
    let mut params = init_params(V, H, 42);
    let (x, y) = batch(B);
    let mut ws = Workspace::<f32>::new();
    let mut grads = Grads::<f32>::zeros(V, H);
    let mut ms = Params::<f32>::zeros(V, H);
    let opt = RmsProp::default();

    c.bench_function("train_step", |bench| {
        bench.iter(|| {
            let loss = cpu::loss_and_grads_into(&params, &x, &y, T, &mut ws, &mut grads);
            opt.step(&mut params, &mut ms, &grads);
            black_box(loss)
        })
    });
    c.bench_function("forward_loss", |bench| {
        bench.iter(|| black_box(cpu::loss_with(&params, &x, &y, T, &mut ws)))
    });
    let (x4, _) = batch(4);
    let mut probs = vec![0.0f32; 4 * V];
    c.bench_function("predict_4x60", |bench| {
        bench.iter(|| {
            cpu::predict_into(&params, &x4, T, &mut ws, &mut probs);
            black_box(probs[0])
        })
    });
}

fn generation(c: &mut Criterion) {
    let text: String = (0..V as u32)
        .map(|i| char::from_u32(0x20 + i).unwrap_or('?'))
        .collect();
    let vocab = Vocab::from_text(&text);
    let params = init_params(vocab.len(), H, 42);
    let seed_text: String = text.chars().cycle().take(T).collect();
    c.bench_function("generate_4x400", |bench| {
        bench.iter(|| {
            let mut generator = Generator::new(CpuModel::new(&params), &vocab, T);
            black_box(
                generator
                    .generate(&seed_text, 400, &Strategy::KERAS, 1, 0)
                    .expect("generate"),
            )
        })
    });
    let seed_indices = encode_seed(&vocab, &seed_text).expect("seed");
    let req = GenerateRequest {
        seed_indices: &seed_indices,
        maxlen: T,
        length: 400,
        strategies: &Strategy::KERAS,
        seed: 1,
        stream: 0,
        mode: GenMode::Stateful,
    };
    c.bench_function("generate_4x400_stateful", |bench| {
        bench.iter(|| {
            black_box(generate_stateful(&params, &req, &mut no_progress).expect("generate"))
        })
    });
}

criterion_group! {
    name = generation_benches;
    // One iteration is about a second: the minimum sample count.
    config = Criterion::default().sample_size(10).warm_up_time(std::time::Duration::from_secs(1));
    targets = generation
}

criterion_group! {
    name = cpu_benches;
    // Short runs: the machine is shared; a train step is tens of ms.
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_secs(1));
    targets = benches
}
criterion_main!(cpu_benches, generation_benches);
