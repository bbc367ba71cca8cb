//! Sampling: the temperature re-weighting against hand-computed values, the
//! draw against its analytic distribution (chi-square goodness of fit), and
//! the generation loop against fake predictors (window sliding, batching,
//! the exact random numbers used, errors).
//!
//! Every random number comes from Philox with a fixed seed, so each test is
//! deterministic: a chi-square test at p = 0.001 either always passes or
//! always fails, never flakes.

use std::cell::RefCell;
use std::rc::Rc;

use charlstm_cuda::sample::{
    IndexGenerator, Philox, Predict, Purpose, RngStream, draw, random_seed_text, reweight,
};
use charlstm_cuda::{Error, Generator, Result, Strategy, Vocab};

// ---------------------------------------------------------------------------
// Chi-square machinery
// ---------------------------------------------------------------------------

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9; ~1e-15 relative).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Upper regularised incomplete gamma Q(a, x) (series / Lentz continued
/// fraction, as in Numerical Recipes §6.2).
fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let prefactor = (-x + a * x.ln() - ln_gamma(a)).exp();
    if x < a + 1.0 {
        let (mut sum, mut term, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..10_000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        1.0 - sum * prefactor
    } else {
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        h * prefactor
    }
}

/// The x with P(χ²_df > x) = alpha, by bisection on the survival function.
fn chi2_critical(df: usize, alpha: f64) -> f64 {
    let (mut lo, mut hi) = (0.0, 10_000.0);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if gamma_q(df as f64 / 2.0, mid / 2.0) > alpha {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

const ALPHA: f64 = 0.001;

#[test]
fn critical_values_match_published_tables() {
    // Upper critical values of the chi-square distribution at probability
    // 0.999 (alpha = 0.001): NIST/SEMATECH e-Handbook of Statistical Methods,
    // section 1.3.6.7.4, "Critical values of the chi-square distribution".
    let table = [
        (1, 10.828),
        (2, 13.816),
        (3, 16.266),
        (4, 18.467),
        (5, 20.515),
        (6, 22.458),
        (7, 24.322),
        (8, 26.124),
        (9, 27.877),
        (10, 29.588),
        (20, 45.315),
        (30, 59.703),
        (40, 73.402),
    ];
    for (df, want) in table {
        let got = chi2_critical(df, ALPHA);
        assert!(
            (got - want).abs() < 2e-3,
            "df {df}: computed {got}, table {want}"
        );
    }
}

/// Pearson's statistic of `counts` against probabilities `expected`, and the
/// critical value at `ALPHA` for its degrees of freedom. Classes expected
/// fewer than 5 times are pooled (the usual validity rule for the χ²
/// approximation); classes of probability 0 must not occur at all.
fn chi_square(counts: &[u64], expected: &[f64]) -> (f64, f64) {
    assert_eq!(counts.len(), expected.len());
    let n: u64 = counts.iter().sum();
    let n = n as f64;
    let mut bins: Vec<(f64, f64)> = Vec::new(); // (observed, expected count)
    let mut pooled = (0.0, 0.0);
    for (&c, &p) in counts.iter().zip(expected) {
        if p == 0.0 {
            assert_eq!(c, 0, "a class of probability 0 was drawn");
            continue;
        }
        if n * p >= 5.0 {
            bins.push((c as f64, n * p));
        } else {
            pooled.0 += c as f64;
            pooled.1 += n * p;
        }
    }
    if pooled.1 > 0.0 {
        if pooled.1 >= 5.0 || bins.is_empty() {
            bins.push(pooled);
        } else {
            // Still too small: fold it into the smallest regular bin.
            let smallest = (0..bins.len())
                .min_by(|&a, &b| bins[a].1.total_cmp(&bins[b].1))
                .unwrap();
            bins[smallest].0 += pooled.0;
            bins[smallest].1 += pooled.1;
        }
    }
    assert!(
        bins.len() >= 2,
        "need at least two bins for a chi-square test"
    );
    let stat = bins.iter().map(|&(o, e)| (o - e) * (o - e) / e).sum();
    (stat, chi2_critical(bins.len() - 1, ALPHA))
}

/// Counts of `n` draws with the Philox sampling uniforms of one stream.
fn draw_counts(probs: &[f32], strategy: Strategy, n: u64, seed: u64, stream: u32) -> Vec<u64> {
    let philox = Philox::new(seed);
    let mut counts = vec![0u64; probs.len()];
    for k in 0..n {
        counts[draw(
            probs,
            strategy,
            philox.uniform_f32(Purpose::Sample, stream, k),
        )] += 1;
    }
    counts
}

/// p^(1/T) normalised, written with `powf` so it is computed independently of
/// `reweight`'s log/exp.
fn analytic(probs: &[f32], t: f64) -> Vec<f64> {
    let w: Vec<f64> = probs.iter().map(|&p| f64::from(p).powf(1.0 / t)).collect();
    let s: f64 = w.iter().sum();
    w.iter().map(|x| x / s).collect()
}

/// A small vocabulary with one impossible class.
const P8: [f32; 8] = [0.30, 0.22, 0.17, 0.12, 0.09, 0.06, 0.04, 0.0];

/// A softmax over 40 classes with spread-out logits, like a trained model's.
fn p40() -> Vec<f32> {
    let mut rng = RngStream::new(5, Purpose::Init, 99);
    let logits: Vec<f64> = (0..40).map(|_| 2.0 * rng.next_normal()).collect();
    let m = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|x| (x / s) as f32).collect()
}

#[test]
fn temperature_draws_fit_the_reweighted_distribution() {
    let p40 = p40();
    for (probs, n) in [(&P8[..], 200_000), (&p40[..], 100_000)] {
        for (i, t) in [0.2, 0.5, 1.0, 1.2].into_iter().enumerate() {
            let counts = draw_counts(probs, Strategy::Temperature(t), n, 2024, i as u32);
            let (stat, crit) = chi_square(&counts, &analytic(probs, t));
            assert!(
                stat < crit,
                "V={} T={t}: chi2 {stat:.2} >= critical {crit:.2}",
                probs.len()
            );
        }
    }
}

#[test]
fn the_fit_test_rejects_a_wrong_temperature() {
    let p40 = p40();
    for (probs, n) in [(&P8[..], 200_000), (&p40[..], 100_000)] {
        for (drawn_at, tested_at) in [(1.0, 0.5), (0.5, 1.0), (0.2, 0.5), (1.2, 1.0)] {
            let counts = draw_counts(probs, Strategy::Temperature(drawn_at), n, 7, 0);
            let (stat, crit) = chi_square(&counts, &analytic(probs, tested_at));
            assert!(
                stat > 10.0 * crit,
                "V={}: drawn at T={drawn_at}, tested at T={tested_at}: chi2 {stat:.2} not far above {crit:.2}",
                probs.len()
            );
        }
    }
}

#[test]
fn uniform_draws_fit_the_uniform_distribution() {
    let p40 = p40();
    for probs in [&P8[..], &p40[..]] {
        let v = probs.len();
        let counts = draw_counts(probs, Strategy::Uniform, 200_000, 11, 3);
        // Uniform ignores the probabilities: even the impossible class occurs.
        assert!(counts.iter().all(|&c| c > 0));
        let (stat, crit) = chi_square(&counts, &vec![1.0 / v as f64; v]);
        assert!(stat < crit, "V={v}: chi2 {stat:.2} >= critical {crit:.2}");
        // And it is not the model's distribution.
        let model: Vec<f64> = probs.iter().map(|&p| f64::from(p)).collect();
        let nonzero: Vec<usize> = (0..v).filter(|&i| model[i] > 0.0).collect();
        let sub_counts: Vec<u64> = nonzero.iter().map(|&i| counts[i]).collect();
        let sub_p: Vec<f64> = nonzero.iter().map(|&i| model[i]).collect();
        let s: f64 = sub_p.iter().sum();
        let sub_p: Vec<f64> = sub_p.iter().map(|p| p / s).collect();
        assert!(chi_square(&sub_counts, &sub_p).0 > 10.0 * crit);
    }
}

#[test]
fn greedy_is_the_first_argmax() {
    let counts = draw_counts(&P8, Strategy::Greedy, 10_000, 1, 0);
    assert_eq!(counts[0], 10_000);
    assert_eq!(draw(&[0.1, 0.4, 0.1, 0.4], Strategy::Greedy, 0.99), 1);
    let p40 = p40();
    let best = (0..40).fold(0, |b, i| if p40[i] > p40[b] { i } else { b });
    assert_eq!(draw(&p40, Strategy::Greedy, 0.5), best);
}

#[test]
fn draws_never_pick_an_impossible_class() {
    // u right at the top of [0, 1): the last class of positive weight.
    let top = 1.0 - 1.0 / 16_777_216.0_f32;
    for t in [0.2, 0.5, 1.0, 1.2, 7.0] {
        assert_eq!(draw(&P8, Strategy::Temperature(t), top), 6, "T={t}");
        assert_eq!(draw(&[0.0, 1.0, 0.0], Strategy::Temperature(t), 0.0), 1);
        assert_eq!(draw(&[0.0, 1.0, 0.0], Strategy::Temperature(t), top), 1);
    }
    assert_eq!(draw(&P8, Strategy::Uniform, top), 7);
    assert_eq!(draw(&P8, Strategy::Uniform, 0.0), 0);
}

// ---------------------------------------------------------------------------
// reweight
// ---------------------------------------------------------------------------

fn assert_close(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-12, "got {got:?}, want {want:?}");
    }
}

#[test]
fn reweight_matches_hand_computed_values() {
    let p = [0.5_f32, 0.25, 0.25];
    // T = 0.5: p^2 = .25, .0625, .0625; sum .375.
    assert_close(&reweight(&p, 0.5), &[2.0 / 3.0, 1.0 / 6.0, 1.0 / 6.0]);
    // T = 2: sqrt(p) = 1/sqrt2, 1/2, 1/2; normalised 1/(1+sqrt2), (1 - that)/2 each.
    let a = 1.0 / (1.0 + 2f64.sqrt());
    assert_close(&reweight(&p, 2.0), &[a, (1.0 - a) / 2.0, (1.0 - a) / 2.0]);
    // A zero probability stays zero (numpy's log(0) = -inf, exp(-inf) = 0).
    assert_close(
        &reweight(&[0.0, 0.8, 0.2], 0.5),
        &[0.0, 0.64 / 0.68, 0.04 / 0.68],
    );
}

#[test]
fn reweight_at_t1_normalises_the_input() {
    assert_close(&reweight(&[2.0, 1.0, 1.0], 1.0), &[0.5, 0.25, 0.25]);
    let want: Vec<f64> = P8.iter().map(|&p| f64::from(p)).collect();
    let s: f64 = want.iter().sum();
    let want: Vec<f64> = want.iter().map(|p| p / s).collect();
    assert_close(&reweight(&P8, 1.0), &want);
}

#[test]
fn lower_temperature_sharpens() {
    let entropy = |w: &[f64]| -> f64 { w.iter().filter(|&&x| x > 0.0).map(|&x| -x * x.ln()).sum() };
    let mut last_max = 0.0;
    let mut last_entropy = f64::INFINITY;
    for t in [5.0, 1.2, 1.0, 0.5, 0.2, 0.05] {
        let w = reweight(&P8, t);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        let (m, h) = (w[0], entropy(&w));
        assert!(
            m > last_max && h < last_entropy,
            "T={t}: max {m}, entropy {h}"
        );
        (last_max, last_entropy) = (m, h);
    }
}

// ---------------------------------------------------------------------------
// Generator, with fake predictors
// ---------------------------------------------------------------------------

/// Every call the generator made: (x, seq_len).
type Calls = Rc<RefCell<Vec<(Vec<u32>, usize)>>>;

/// A deterministic model of the last input character: most of the mass on
/// `(last + 1) % V`, the rest spread so that every class stays possible.
/// Records its inputs.
struct NextChar {
    v: usize,
    calls: Calls,
}

impl NextChar {
    fn new(v: usize) -> (Self, Calls) {
        let calls = Calls::default();
        (
            NextChar {
                v,
                calls: calls.clone(),
            },
            calls,
        )
    }
}

impl Predict for NextChar {
    fn predict(&mut self, x: &[u32], seq_len: usize) -> Result<Vec<f32>> {
        assert!(
            seq_len > 0 && x.len().is_multiple_of(seq_len),
            "x is not [B, T]"
        );
        self.calls.borrow_mut().push((x.to_vec(), seq_len));
        let mut out = Vec::new();
        for row in x.chunks_exact(seq_len) {
            let last = *row.last().unwrap() as usize;
            let rest = 0.4 / (self.v - 1) as f32;
            out.extend((0..self.v).map(|i| if i == (last + 1) % self.v { 0.6 } else { rest }));
        }
        Ok(out)
    }
}

/// Returns the same distribution for every sequence and step.
struct Fixed(Vec<f32>);

impl Predict for Fixed {
    fn predict(&mut self, x: &[u32], seq_len: usize) -> Result<Vec<f32>> {
        Ok(self.0.repeat(x.len() / seq_len))
    }
}

/// Fails the test if called.
struct Never;

impl Predict for Never {
    fn predict(&mut self, _: &[u32], _: usize) -> Result<Vec<f32>> {
        panic!("predict must not be called");
    }
}

const MIXED: [Strategy; 4] = [
    Strategy::Temperature(0.5),
    Strategy::Greedy,
    Strategy::Uniform,
    Strategy::Temperature(1.2),
];

/// The last `maxlen` characters of seed ++ the first `k` generated ones.
fn expected_window(seed: &[u32], generated: &[u32], k: usize, maxlen: usize) -> Vec<u32> {
    let full: Vec<u32> = seed.iter().chain(&generated[..k]).copied().collect();
    full[full.len().saturating_sub(maxlen)..].to_vec()
}

/// Checks every recorded call against the windows the generated text implies.
fn check_windows(calls: &Calls, seed: &[u32], out: &[Vec<u32>], maxlen: usize) {
    let calls = calls.borrow();
    let length = out[0].len();
    assert_eq!(
        calls.len(),
        length,
        "one predict call per generated character"
    );
    for (k, (x, seq_len)) in calls.iter().enumerate() {
        let t = (seed.len() + k).min(maxlen);
        assert_eq!(*seq_len, t, "step {k}");
        assert_eq!(
            x.len(),
            out.len() * t,
            "step {k}: the whole batch in one call"
        );
        for (j, seq) in out.iter().enumerate() {
            assert_eq!(
                x[j * t..(j + 1) * t],
                expected_window(seed, seq, k, maxlen)[..],
                "step {k}, seq {j}"
            );
        }
    }
}

#[test]
fn windows_slide_like_the_notebook() {
    // The notebook's case: a seed of exactly maxlen characters.
    let (v, maxlen) = (7, 5);
    let seed = [3, 1, 4, 1, 5];
    let (p, calls) = NextChar::new(v);
    let out = IndexGenerator::new(p, v, maxlen)
        .generate(&seed, 12, &MIXED, 42, 0)
        .unwrap();
    assert_eq!(out.len(), MIXED.len());
    assert!(out.iter().all(|s| s.len() == 12));
    check_windows(&calls, &seed, &out, maxlen);

    // And literally the notebook's loop, for sequence 0.
    let mut generated_text = seed.to_vec();
    for (k, (x, t)) in calls.borrow().iter().enumerate() {
        assert_eq!(*t, maxlen);
        assert_eq!(x[..maxlen], generated_text[..]);
        generated_text.push(out[0][k]); // generated_text += next_char
        generated_text.remove(0); // generated_text = generated_text[1:]
    }
}

#[test]
fn a_short_seed_grows_the_window_and_a_long_one_is_cut() {
    let (v, maxlen) = (6, 4);
    for seed in [&[2][..], &[2, 5], &[0, 1, 2, 3, 4, 5, 0, 1, 2]] {
        let (p, calls) = NextChar::new(v);
        let out = IndexGenerator::new(p, v, maxlen)
            .generate(seed, 7, &MIXED, 9, 3)
            .unwrap();
        check_windows(&calls, seed, &out, maxlen);
    }
    let (p, calls) = NextChar::new(v);
    IndexGenerator::new(p, v, maxlen)
        .generate(&[2], 6, &MIXED, 9, 3)
        .unwrap();
    let lens: Vec<usize> = calls.borrow().iter().map(|c| c.1).collect();
    assert_eq!(lens, [1, 2, 3, 4, 4, 4]);
}

#[test]
fn greedy_output_is_predictable() {
    let v = 10;
    let (p, _) = NextChar::new(v);
    let out = IndexGenerator::new(p, v, 3)
        .generate(&[8, 3], 15, &[Strategy::Greedy], 1, 0)
        .unwrap();
    let want: Vec<u32> = (0..15).map(|k| (3 + 1 + k) % 10).collect();
    assert_eq!(out, [want]);
}

#[test]
fn same_seed_same_text_other_seed_or_stream_other_text() {
    let v = 9;
    let run = |seed: u64, stream: u32| {
        let (p, _) = NextChar::new(v);
        IndexGenerator::new(p, v, 4)
            .generate(&[1, 2, 3], 200, &MIXED, seed, stream)
            .unwrap()
    };
    let a = run(42, 0);
    assert_eq!(a, run(42, 0));
    assert_ne!(a, run(43, 0));
    assert_ne!(a, run(42, 1));
    // Within one run, two sequences with the same strategy differ: different streams.
    let (p, _) = NextChar::new(v);
    let same = [Strategy::Temperature(1.0); 2];
    let b = IndexGenerator::new(p, v, 4)
        .generate(&[1, 2, 3], 200, &same, 42, 0)
        .unwrap();
    assert_ne!(b[0], b[1]);
}

#[test]
fn sequence_j_uses_stream_plus_j() {
    // Sequences do not interact (the predictor reads each row alone), so
    // sequence j of a batch at stream s is the single sequence at stream s + j.
    let v = 9;
    let (p, _) = NextChar::new(v);
    let batch = IndexGenerator::new(p, v, 4)
        .generate(&[1, 2], 100, &MIXED, 5, 10)
        .unwrap();
    for (j, &strategy) in MIXED.iter().enumerate() {
        let (p, _) = NextChar::new(v);
        let alone = IndexGenerator::new(p, v, 4)
            .generate(&[1, 2], 100, &[strategy], 5, 10 + j as u32)
            .unwrap();
        assert_eq!(batch[j], alone[0], "sequence {j}");
    }
}

#[test]
fn draws_use_philox_sample_stream_plus_j_index_k() {
    // Recomputed from the raw Philox word, with the inverse CDF written out by hand.
    let probs = vec![0.3_f32, 0.3, 0.4];
    let strategies = [
        Strategy::Temperature(1.0),
        Strategy::Uniform,
        Strategy::Temperature(0.5),
    ];
    let (seed, stream, length) = (0x1234_5678_9abc_def0_u64, 77_u32, 300);
    let out = IndexGenerator::new(Fixed(probs.clone()), 3, 60)
        .generate(&[0], length, &strategies, seed, stream)
        .unwrap();
    let philox = Philox::new(seed);
    let p: Vec<f64> = probs.iter().map(|&x| f64::from(x)).collect();
    let cdf = |w: [f64; 3]| {
        let s = w[0] + w[1] + w[2];
        [w[0] / s, (w[0] + w[1]) / s]
    };
    let t1 = cdf([p[0], p[1], p[2]]);
    let t05 = cdf([p[0] * p[0], p[1] * p[1], p[2] * p[2]]);
    let pick = |c: [f64; 2], u: f64| {
        if u < c[0] {
            0
        } else if u < c[1] {
            1
        } else {
            2
        }
    };
    for (j, seq) in out.iter().enumerate() {
        for (k, &got) in seq.iter().enumerate() {
            let word = philox.at(Purpose::Sample, stream + j as u32, k as u64)[0];
            let u = f64::from(word >> 8) / 16_777_216.0;
            let want = match j {
                0 => pick(t1, u),
                1 => (u * 3.0).floor() as u32,
                _ => pick(t05, u),
            };
            assert_eq!(got, want, "sequence {j}, character {k}, u {u}");
        }
    }
    // The stream wraps around in u32, as on the device.
    let wrapped = IndexGenerator::new(Fixed(probs.clone()), 3, 60)
        .generate(
            &[0],
            50,
            &[Strategy::Uniform, Strategy::Uniform],
            seed,
            u32::MAX,
        )
        .unwrap();
    for (k, &got) in wrapped[1].iter().enumerate() {
        let u = f64::from(philox.uniform_f32(Purpose::Sample, 0, k as u64));
        assert_eq!(got, (u * 3.0).floor() as u32);
    }
}

#[test]
fn length_zero_and_no_strategies_do_not_predict() {
    let out = IndexGenerator::new(Never, 5, 60)
        .generate(&[1, 2], 0, &MIXED, 1, 0)
        .unwrap();
    assert_eq!(out, vec![Vec::<u32>::new(); 4]);
    let out = IndexGenerator::new(Never, 5, 60)
        .generate(&[1, 2], 10, &[], 1, 0)
        .unwrap();
    assert!(out.is_empty());
}

fn invalid_name(e: Error) -> &'static str {
    match e {
        Error::InvalidArgument { name, .. } => name,
        other => panic!("expected InvalidArgument, got {other}"),
    }
}

#[test]
fn bad_arguments_are_clear_errors() {
    let gen_err = |seed: &[u32], strategies: &[Strategy], maxlen: usize| {
        IndexGenerator::new(Never, 5, maxlen)
            .generate(seed, 3, strategies, 1, 0)
            .unwrap_err()
    };
    assert_eq!(invalid_name(gen_err(&[], &MIXED, 60)), "seed_text");
    assert_eq!(invalid_name(gen_err(&[1, 5], &MIXED, 60)), "seed_text");
    assert_eq!(invalid_name(gen_err(&[1], &MIXED, 0)), "maxlen");
    for t in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert_eq!(
            invalid_name(gen_err(&[1], &[Strategy::Temperature(t)], 60)),
            "temperature"
        );
    }
}

/// Returns what it was built with whatever the input; fails when built with `None`.
struct Canned(Option<Vec<f32>>);

impl Predict for Canned {
    fn predict(&mut self, _: &[u32], _: usize) -> Result<Vec<f32>> {
        self.0.clone().ok_or(Error::BackendUnavailable {
            backend: "fake",
            what: "test".into(),
        })
    }
}

#[test]
fn bad_predictions_are_errors() {
    let two = [Strategy::Greedy, Strategy::Temperature(1.0)];
    let cases: [Vec<f32>; 6] = [
        vec![0.5; 3],                                 // too short
        vec![0.25; 8],                                // B x V + 2
        vec![0.5, f32::NAN, 0.5, 0.5, 0.2, 0.8],      // NaN
        vec![0.5, 0.5, 0.5, 0.2, f32::INFINITY, 0.8], // inf
        vec![0.5, 0.5, 0.0, 1.2, -0.2, 0.0],          // negative
        vec![0.5, 0.5, 0.0, 0.0, 0.0, 0.0],           // a row with nothing to draw
    ];
    for probs in cases {
        let e = IndexGenerator::new(Canned(Some(probs.clone())), 3, 60)
            .generate(&[1], 4, &two, 1, 0)
            .unwrap_err();
        assert!(matches!(e, Error::BadPrediction { .. }), "{probs:?}: {e}");
        assert!(!e.hint().is_empty());
    }
    // The predictor's own error comes through unchanged.
    let e = IndexGenerator::new(Canned(None), 3, 60)
        .generate(&[1], 4, &two, 1, 0)
        .unwrap_err();
    assert!(matches!(e, Error::BackendUnavailable { .. }));
}

#[test]
fn a_mut_reference_is_a_predictor() {
    let (mut p, calls) = NextChar::new(4);
    let out = IndexGenerator::new(&mut p, 4, 3)
        .generate(&[0], 5, &[Strategy::Greedy], 1, 0)
        .unwrap();
    assert_eq!(out, [[1, 2, 3, 0, 1]]);
    assert_eq!(calls.borrow().len(), 5);
    assert_eq!(p.v, 4);
}

#[test]
fn a_long_generation_keeps_only_the_window() {
    // 20,000 characters at maxlen 60: every call gets at most 60 per sequence.
    struct Check(usize);
    impl Predict for Check {
        fn predict(&mut self, x: &[u32], seq_len: usize) -> Result<Vec<f32>> {
            assert!(seq_len <= 60 && x.len() == 2 * seq_len);
            self.0 += 1;
            Ok(vec![0.25; 8])
        }
    }
    let mut check = Check(0);
    let out = IndexGenerator::new(&mut check, 4, 60)
        .generate(
            &[0, 1],
            20_000,
            &[Strategy::Uniform, Strategy::Temperature(1.0)],
            3,
            0,
        )
        .unwrap();
    assert_eq!(out[1].len(), 20_000);
    assert_eq!(check.0, 20_000);
}

// ---------------------------------------------------------------------------
// Text level (needs the corpus module's Vocab)
// ---------------------------------------------------------------------------

fn vocab(chars: &str) -> Vocab {
    Vocab::from_chars(chars.chars().collect()).expect("sorted unique chars")
}

#[test]
fn text_generation_decodes_the_indices() {
    let vocab = vocab(" abcde");
    let (p, calls) = NextChar::new(vocab.len());
    let mut g = Generator::new(p, &vocab, 4);
    let out = g
        .generate("a bad", 6, &[Strategy::Greedy, Strategy::Uniform], 8, 2)
        .unwrap();
    // Greedy follows (last + 1) % 6 over " abcde": d -> e -> ' ' -> a -> b -> c -> d.
    assert_eq!(out[0], "e abcd");
    assert_eq!(out[1].chars().count(), 6);
    // The first window holds the last 4 seed characters: " bad".
    assert_eq!(calls.borrow()[0].0[..4], [0, 2, 1, 4]);
    // Same as the index-level generator.
    let (p, _) = NextChar::new(vocab.len());
    let idx = IndexGenerator::new(p, 6, 4)
        .generate(&[1, 0, 2, 1, 4], 6, &[Strategy::Uniform], 8, 3)
        .unwrap();
    let decoded: String = idx[0].iter().map(|&i| vocab.char_at(i)).collect();
    assert_eq!(out[1], decoded);
}

#[test]
fn unknown_or_empty_seed_text_is_an_error() {
    let vocab = vocab(" abcde");
    let mut g = Generator::new(Never, &vocab, 4);
    match g.generate("a Bad", 3, &MIXED, 1, 0) {
        Err(Error::UnknownChar { ch }) => assert_eq!(ch, 'B'),
        other => panic!("expected UnknownChar, got {other:?}"),
    }
    assert_eq!(
        invalid_name(g.generate("", 3, &MIXED, 1, 0).unwrap_err()),
        "seed_text"
    );
    assert_eq!(
        g.generate("abc", 0, &MIXED, 1, 0).unwrap(),
        vec![String::new(); 4]
    );
}

// ---------------------------------------------------------------------------
// Seed text position
// ---------------------------------------------------------------------------

#[test]
fn random_seed_text_mirrors_randint_range() {
    // randint(0, len - maxlen - 1) is inclusive: len - maxlen choices.
    for epoch in 0..50 {
        assert_eq!(random_seed_text(61, 60, 42, epoch).unwrap(), 0);
    }
    let starts: Vec<usize> = (0..2000)
        .map(|e| random_seed_text(70, 60, 42, e).unwrap())
        .collect();
    assert!(starts.iter().all(|&s| s <= 9));
    for want in 0..=9 {
        assert!(starts.contains(&want), "start {want} never chosen");
    }
    // Deterministic per (seed, epoch), and it is the SeedText stream.
    assert_eq!(
        random_seed_text(600_000, 60, 7, 3).unwrap(),
        random_seed_text(600_000, 60, 7, 3).unwrap()
    );
    let want = RngStream::new(7, Purpose::SeedText, 3).below(600_000 - 60) as usize;
    assert_eq!(random_seed_text(600_000, 60, 7, 3).unwrap(), want);
}

#[test]
fn random_seed_text_rejects_short_text() {
    match random_seed_text(60, 60, 1, 0) {
        Err(Error::TextTooShort {
            chars: 60,
            needed: 61,
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        invalid_name(random_seed_text(10, 0, 1, 0).unwrap_err()),
        "maxlen"
    );
}
