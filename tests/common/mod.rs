//! Helpers shared by the integration tests (each test binary uses a subset).
#![allow(dead_code)]

#[cfg(feature = "cli")]
pub mod cli;
pub mod lstm;

use std::path::{Path, PathBuf};

use charlstm_cuda::Result;
use charlstm_cuda::engine::Batch;
use charlstm_cuda::gpu::selftest::{SelftestReport, SelftestRow};
use charlstm_cuda::model::{Hyper, Params, init_params};
use charlstm_cuda::sample::{Purpose, RngStream};
use charlstm_cuda::{Backend, Device, Engine, OneHotCorpus, Windows};

/// Whether this build embeds the kernels; says SKIPPED when it does not
/// (scripts/gpu-check.sh counts a SKIPPED binary as a failure).
pub fn kernels() -> bool {
    if !charlstm_cuda::gpu::ptx::BUILT_WITH_KERNELS {
        println!("SKIPPED: built without kernels");
    }
    charlstm_cuda::gpu::ptx::BUILT_WITH_KERNELS
}

/// The shared Nietzsche corpus, wherever this checkout sits relative to it;
/// `None` (after saying SKIPPED) when it is absent.
pub fn nietzsche_file() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        root.join("../shared/corpus/nietzsche.txt"),
        root.join("../../shared/corpus/nietzsche.txt"),
        root.join("shared/corpus/nietzsche.txt"),
        PathBuf::from("/work/shared/corpus/nietzsche.txt"),
    ];
    let found = candidates.into_iter().find(|p| p.is_file());
    if found.is_none() {
        eprintln!("SKIPPED: shared/corpus/nietzsche.txt not found next to the repository");
    }
    found
}

/// Parameters uniform in [-scale, scale): large enough that every gate and
/// the softmax are far from trivial, small enough that nothing saturates.
pub fn random_params(v: usize, h: usize, scale: f64, seed: u64) -> Params<f64> {
    let mut rng = RngStream::new(seed, Purpose::Sample, 0);
    let mut p = Params::<f64>::zeros(v, h);
    for t in p.tensors_mut() {
        t.iter_mut()
            .for_each(|x| *x = scale * (2.0 * rng.next_f64() - 1.0));
    }
    p
}

/// Random class indices: x [B, T] and targets y [B].
pub fn random_batch(v: usize, b: usize, t: usize, seed: u64) -> (Vec<u32>, Vec<u32>) {
    let mut rng = RngStream::new(seed, Purpose::Sample, 1);
    let x = (0..b * t).map(|_| rng.below(v as u64) as u32).collect();
    let y = (0..b).map(|_| rng.below(v as u64) as u32).collect();
    (x, y)
}

/// A fresh seed per run (printed), or `CHARLSTM_TEST_SEED` to replay one.
pub fn seed() -> u64 {
    let s = std::env::var("CHARLSTM_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    println!("seed {s} (replay with CHARLSTM_TEST_SEED={s})");
    s
}

/// splitmix64: small, seeded, good enough for test data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo) as u64) as usize
    }
    /// Uniform in [-a, a).
    pub fn f32(&mut self, a: f32) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * a
    }
    pub fn vec(&mut self, n: usize, a: f32) -> Vec<f32> {
        (0..n).map(|_| self.f32(a)).collect()
    }
}

/// Prints `rows` as the selftest's table; fails unless every row passed.
pub fn assert_all_pass(rows: Vec<SelftestRow>) {
    let report = SelftestReport { rows };
    print!("{report}");
    assert!(
        report.all_passed(),
        "{} checks failed:\n{report}",
        report.failed()
    );
}

/// Reports NaN at one global step, like an overflow would.
pub struct NanAt<'c> {
    pub inner: Box<dyn Engine + 'c>,
    pub step: usize,
    pub calls: usize,
}

impl<'c> NanAt<'c> {
    /// A CPU engine at Keras initialisation that reports NaN at the 3rd
    /// batch of epoch 2; and the batches per epoch.
    pub fn in_epoch_2(corpus: &'c OneHotCorpus, hyper: &Hyper) -> (Self, usize) {
        let params = init_params(corpus.vocab().len(), hyper.hidden, hyper.seed);
        let zeros = Params::zeros(params.vocab, params.hidden);
        let (inner, _) = (Device::Exact(Backend::Cpu))
            .open_engine(corpus, hyper, params, zeros)
            .expect("engine");
        let windows = Windows::new(corpus.rows(), hyper.maxlen, hyper.step).expect("windows");
        let per_epoch = windows.count.div_ceil(hyper.batch);
        let step = per_epoch + 3;
        (
            NanAt {
                inner,
                step,
                calls: 0,
            },
            per_epoch,
        )
    }
}

/// Inside `impl Engine for W`, where `W` wraps an engine in `self.inner`:
/// the methods such a test wrapper passes on unchanged (the backend,
/// prediction, the weights, the optimizer state, the learning rate, the
/// step), so
/// that each wrapper spells out only what it changes.
#[macro_export]
macro_rules! pass_on_to_inner {
    () => {
        fn backend(&self) -> charlstm_cuda::Backend {
            self.inner.backend()
        }
        fn predict(&mut self, x: &[u32], seq_len: usize) -> charlstm_cuda::Result<Vec<f32>> {
            self.inner.predict(x, seq_len)
        }
        fn params(&mut self) -> charlstm_cuda::Result<charlstm_cuda::Params<f32>> {
            self.inner.params()
        }
        fn rmsprop_state(&mut self) -> charlstm_cuda::Result<charlstm_cuda::Params<f32>> {
            self.inner.rmsprop_state()
        }
        fn set_state(
            &mut self,
            params: &charlstm_cuda::Params<f32>,
            rmsprop: &charlstm_cuda::Params<f32>,
        ) -> charlstm_cuda::Result<()> {
            self.inner.set_state(params, rmsprop)
        }
        fn set_learning_rate(&mut self, lr: f32) -> charlstm_cuda::Result<()> {
            self.inner.set_learning_rate(lr)
        }
        fn set_step(&mut self, step: u64) -> charlstm_cuda::Result<()> {
            self.inner.set_step(step)
        }
    };
}

impl Engine for NanAt<'_> {
    crate::pass_on_to_inner!();
    fn begin_epoch(&mut self, order: &[u32], position: usize) -> Result<()> {
        self.inner.begin_epoch(order, position)
    }
    fn queue_train(&mut self, batch: Batch<'_>) -> Result<Option<f32>> {
        self.calls += 1;
        let loss = self.inner.train(batch)?;
        Ok(Some(if self.calls == self.step {
            f32::NAN
        } else {
            loss
        }))
    }
    fn eval_batch(&mut self, starts: &[u32]) -> Result<f32> {
        self.inner.eval_batch(starts)
    }
}

/// The u64 words tests/kernels/lstm_forms.cu reads: `n` pairs with zeros,
/// equal pairs and shifts across the whole width (for clz and the 64-bit
/// compares). The simulator's test and the hardware comparison share them.
pub fn lstm_forms_words(n: usize) -> Vec<u64> {
    let mut w = Vec::with_capacity(2 * n);
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
    w
}

/// The selectors tests/kernels/byte_forms.cu's prmt_forms reads: every
/// nibble value (0-15, the sign-spreading top bit included) in every byte
/// position, then `random`. The simulator's test and the hardware
/// comparison share them.
pub fn prmt_selectors(random: &[u32]) -> Vec<u32> {
    (0..64u32)
        .map(|k| (k % 16) * 0x1111 + (k / 16) * 0x1000_0000)
        .chain(random.iter().copied())
        .collect()
}

/// The second operands of byte_forms.cu's short_forms for the words `a`:
/// every third equal to its `a` in the low half only (the high half from
/// `random`), every third equal, the rest `random`.
pub fn short_forms_b(a: &[u32], random: &[u32]) -> Vec<u32> {
    a.iter()
        .zip(random)
        .enumerate()
        .map(|(i, (&x, &r))| match i % 3 {
            0 => (x & 0xffff) | (r & 0xffff_0000),
            1 => x,
            _ => r,
        })
        .collect()
}

/// The inputs of tests/kernels/persistent_forms.cu: `n` u32 pairs (equal,
/// smaller, larger and low-byte-equal) and `n` u64 pairs (equal or
/// rotated). The simulator's test and the hardware comparison share them.
pub fn persistent_forms_inputs(n: usize) -> (Vec<u32>, Vec<u64>) {
    let (mut a, mut w) = (Vec::with_capacity(2 * n), Vec::with_capacity(2 * n));
    for i in 0..n as u32 {
        let x = i.wrapping_mul(2_654_435_761);
        let y = match i % 4 {
            0 => x,
            1 => x.wrapping_sub(i + 1),
            2 => x.wrapping_add(i * 7 + 1),
            _ => x & 0xff,
        };
        a.extend([x, y]);
        let p = u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        w.extend([p, if i % 3 == 0 { p } else { p.rotate_left(i) }]);
    }
    (a, w)
}

/// Fails unless two runs of one training (the CPU and a device) reached the
/// same weights: every element within `1e-3 * (lr + |w|)`, and prints how
/// close the worst came to that bound (the GPU check's logs keep it).
///
/// Why `lr` in the scale: RMSprop moves a weight by up to ~lr a step
/// whatever its size, and where a gradient is small against RMSprop's
/// epsilon (1e-7), the last bits of that gradient move where the weight
/// lands by far more than a ulp of the weight. Scaled by `1e-3 + |w|`
/// instead, the simulator against the CPU (two layers of 16, six steps)
/// came to 0.54 of the bound (5.7e-7 on a weight of 5.4e-5): too close
/// for a GPU, whose `.approx` functions round differently again.
pub fn assert_weights_alike(what: &str, cpu: &[f32], dev: &[f32], lr: f32) {
    assert_eq!(cpu.len(), dev.len(), "{what}: weight counts");
    let ratio = |(a, b): (&f32, &f32)| (a - b).abs() / (1e-3 * (lr + a.abs()));
    let (i, worst) = cpu
        .iter()
        .zip(dev)
        .map(ratio)
        .enumerate()
        .fold(
            (0, 0.0f32),
            |w, (i, r)| if r > w.1 || r.is_nan() { (i, r) } else { w },
        );
    println!("{what}: the weights' worst difference is {worst:.3} of its bound");
    assert!(
        worst <= 1.0,
        "{what}: weight {i} is {} on the CPU, {} on the device: more than 1e-3 * (lr + |w|)",
        cpu[i],
        dev[i]
    );
}
