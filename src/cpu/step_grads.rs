//! A layer's weight gradients a few steps at a time, inside the backward
//! ([`super::layer::backward`]), while dz_t is in cache.
//!
//! Why: done after the backward, d recurrent_kernel and d kernel read dz
//! ([T*B, 4H], 31 MB at T*B = 7680, 4H = 1024) back from memory through
//! `matrixmultiply`, which packs it again for every product (and X^T once
//! per thread), and the bias sum and a one-hot layer's scatter read it once
//! more each: at `--layers 2 --hidden 256` the weight gradients ran at
//! 62-70 G multiply-adds a second per thread where the packed kernel runs
//! at about 100 (docs/measured.md, 2026-12-07). Here each thread, right
//! after its rows' backward step t, packs its columns of dz_{t+1} (the
//! step before, which every thread has finished; with the steps above it
//! since the last product, see below) into the kernel's panels (256 KB a
//! thread and step at B = 128, 512 columns) and adds those steps'
//! products, bias and scatter into its columns of the gradients.
//!
//! Threads own rows in the recurrence and columns here: a gradient's
//! columns need every row of dz_t, so before each product a thread waits
//! until every other thread has finished its steps (a counter each; the
//! lag of one step makes the wait rare). The price is that coupling:
//! where the threads share cores with other work, one that is descheduled
//! holds up the others every few steps, not once a layer (4 threads on 2
//! cores, a wait every step: the op up to ~10 % slower than with the
//! weight gradients after the backward at H = 256; a wait every group of
//! steps took 3-6 % off that, docs/measured.md).
//!
//! Measured in lockstep against the gradients after the backward
//! (2026-12-07, 2 cores): the `--layers 2 --hidden 256` step 0.954-0.962
//! of the time, a stream batch 0.92-0.97; on one core 0.945-0.968.
//!
//! The products take a few steps at a time (k = steps x B rows of dz and
//! x): a thread's columns of a gradient (512 KB each at H = 256 on two
//! threads) are read and written once per product, and next to the
//! recurrence's 2 MB of packed weights they do not stay in L2 from one step
//! to the next. Up to [`GROUP_BYTES`] of dz panels a product (4 steps at H
//! = 256, B = 128). The sums keep their order (below), so the grouping
//! changes no bit. A small gain: the `--layers 2 --hidden 256` step about
//! 1 % faster in lockstep, the other shapes measured unchanged; 8 steps a
//! product were 4 % slower than 4 (docs/measured.md, 2026-12-07 10:15 UTC
//! on).
//!
//! Sums: each element is one chain of fused multiply-adds (adds for the
//! bias and the scatter) over the steps in the backward's order (t from T-1
//! down), rows b in increasing order within a step, from zero. Neither the
//! row split nor the column split changes it, so the gradients do not
//! depend on the thread count. (They differ from the `matrixmultiply`
//! products of the other path, which sum blocks of k apart, in the last
//! bits.)

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::Scalar;
use super::packed::{MR, NR, copy_short};
use super::steps::StepsReader;

/// The layer's input as its kernel's gradient reads it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum GradInput<'a, F> {
    /// `x` [T, B, `width`]: d kernel = x^T @ dz.
    Dense { x: &'a [F], width: usize },
    /// Class indices [T, B] of a one-hot input: d kernel's row c is the sum
    /// of the dz rows of class c.
    Classes(&'a [u32]),
}

/// What a layer's weight gradients read besides dz, and where they go
/// (overwritten).
pub(crate) struct GradTargets<'a, F> {
    /// h [T+1, B, H]: slot t is h_{t-1}, d recurrent_kernel's X.
    pub h: &'a [F],
    /// h_0 is zero: step 0 adds nothing to d recurrent_kernel.
    pub h0_zero: bool,
    pub input: GradInput<'a, F>,
    /// [H, 4H].
    pub d_rk: &'a mut [F],
    /// [In, 4H] (In = `width`, or the number of classes).
    pub d_kernel: &'a mut [F],
    /// [4H].
    pub d_bias: &'a mut [F],
}

/// A gradient's base pointer, shared by the threads, each writing only
/// its own columns.
#[derive(Clone, Copy)]
struct Out<F>(*mut F);

// SAFETY: `StepGrads` hands each thread a disjoint set of columns of every
// gradient, and the gradients are unique borrows held for its lifetime.
unsafe impl<F: Send> Send for Out<F> {}
unsafe impl<F: Send> Sync for Out<F> {}

/// The most bytes of dz panels one product packs ([`StepGrads::group`]).
const GROUP_BYTES: usize = 1 << 20;
/// The most steps one product takes.
const GROUP_MAX: usize = 4;

/// B, H of the layer, and In.
#[derive(Clone, Copy, Debug)]
struct Dims {
    b: usize,
    h: usize,
    input: usize,
}

/// The gradients of one backward call, shared by its threads.
pub(crate) struct StepGrads<'a, F> {
    h: &'a [F],
    h0_zero: bool,
    input: GradInput<'a, F>,
    d_rk: Out<F>,
    d_kernel: Out<F>,
    d_bias: Out<F>,
    dz: StepsReader<'a, F>,
    dims: Dims,
    /// The most columns a thread adds up.
    cols: usize,
    /// Steps a product takes (the last group may be shorter; step 0 is
    /// always a group of its own).
    group: usize,
    /// Per row thread: the steps it has not finished (T down to 0).
    left: Vec<AtomicUsize>,
    /// Set by a thread that panicked, so that none waits for it forever.
    abort: AtomicBool,
    _borrow: std::marker::PhantomData<&'a mut [F]>,
}

// SAFETY: the raw pointers are the gradients' unique borrows for 'a, each
// written by one thread per column; `dz` is read only where its writer has
// said it is done (`left`, release / acquire).
unsafe impl<F: Send + Sync> Sync for StepGrads<'_, F> {}

impl<'a, F: Scalar> StepGrads<'a, F> {
    /// The gradients `t` of a layer of `h` units whose dz the backward
    /// writes into what `dz` reads ([T, B, 4H]), its rows split into
    /// `rows` (empty ranges included; every row thread runs every step),
    /// a thread's columns at most `cols` wide.
    pub fn new(
        t: GradTargets<'a, F>,
        dz: StepsReader<'a, F>,
        h: usize,
        rows: &[(usize, usize)],
        cols: usize,
    ) -> Self {
        let (steps, b) = (dz.slots(), dz.batch());
        let g = 4 * h;
        let input = match t.input {
            GradInput::Dense { x, width } => {
                assert!(
                    x.len() >= steps * b * width,
                    "StepGrads: x is not [{steps}, {b}, {width}]"
                );
                width
            }
            GradInput::Classes(c) => {
                assert_eq!(
                    c.len(),
                    steps * b,
                    "StepGrads: classes are not [{steps}, {b}]"
                );
                t.d_kernel.len() / g
            }
        };
        assert_eq!(dz.width(), g, "StepGrads: dz is not [.., {g}]");
        assert!(
            t.h.len() >= steps * b * h,
            "StepGrads: h is not [{}, {b}, {h}]",
            steps + 1
        );
        assert_eq!(
            t.d_rk.len(),
            h * g,
            "StepGrads: d recurrent_kernel is not [{h}, {g}]"
        );
        assert_eq!(
            t.d_kernel.len(),
            input * g,
            "StepGrads: d kernel is not [{input}, {g}]"
        );
        assert_eq!(t.d_bias.len(), g, "StepGrads: d bias is not [{g}]");
        let step_bytes = cols.div_ceil(NR) * NR * b * size_of::<F>();
        let group = (GROUP_BYTES / step_bytes.max(1)).clamp(1, GROUP_MAX);
        StepGrads {
            h: t.h,
            h0_zero: t.h0_zero,
            input: t.input,
            d_rk: Out(t.d_rk.as_mut_ptr()),
            d_kernel: Out(t.d_kernel.as_mut_ptr()),
            d_bias: Out(t.d_bias.as_mut_ptr()),
            dz,
            dims: Dims { b, h, input },
            cols,
            group,
            left: rows.iter().map(|_| AtomicUsize::new(steps)).collect(),
            abort: AtomicBool::new(false),
            _borrow: std::marker::PhantomData,
        }
    }

    /// Scratch values one thread needs for its columns.
    pub fn scratch_len(&self) -> usize {
        let d = self.dims;
        let widest = d.h.max(if matches!(self.input, GradInput::Dense { .. }) {
            d.input
        } else {
            0
        });
        let k = self.group * d.b;
        self.cols.div_ceil(NR) * NR * k + widest.div_ceil(MR) * MR * k + 16
    }

    /// The steps to add once step `t` is finished, `(hi, lo)` (`hi >= lo`,
    /// added from `hi` down), if a group ends there: groups of
    /// [`group`](Self::group) steps from T-1 down, the one ending at step 1
    /// perhaps shorter, step 0 alone (so that it can skip d
    /// recurrent_kernel where h_0 is zero), each added a step after its
    /// lowest step is finished (by then every thread most likely has
    /// finished it too, so the wait is rare).
    pub fn due(&self, t: usize) -> Option<(usize, usize)> {
        let (last, lo) = (self.dz.slots() - 1, t + 1);
        if lo > last {
            return None;
        }
        let pos = (last - lo) % self.group;
        (pos == self.group - 1 || lo == 1).then_some((lo + pos, lo))
    }

    /// The same with `group` steps a product: for tests.
    #[cfg(test)]
    fn with_group(mut self, group: usize) -> Self {
        self.group = group;
        self
    }

    /// Row thread `me` has finished its backward step `t`.
    pub fn finished(&self, me: usize, t: usize) {
        self.left[me].store(t, Ordering::Release);
    }

    /// Marks the call as failed when dropped while the thread unwinds:
    /// the other threads stop waiting for this one and panic too.
    pub fn guard(&self) -> AbortOnPanic<'_> {
        AbortOnPanic(&self.abort)
    }

    /// Zeroes columns `j0..j1` of every gradient (before the first step).
    pub fn zero(&self, (j0, j1): (usize, usize)) {
        let d = self.dims;
        let g = 4 * d.h;
        for (out, rows) in [(self.d_rk, d.h), (self.d_kernel, d.input), (self.d_bias, 1)] {
            for r in 0..rows {
                // SAFETY: row r's columns j0..j1 lie in the gradient (its
                // shape asserted in `new`) and belong to this caller.
                unsafe { cols_mut(out, r * g, (j0, j1)) }.fill(F::zero());
            }
        }
    }

    /// Adds steps `hi` down to `lo` (at most [`group`](Self::group) of
    /// them; step 0 only alone) to columns `j0..j1` of every gradient, once
    /// every row thread has finished step `lo`. `scratch`:
    /// [`scratch_len`](Self::scratch_len).
    pub fn add_steps(&self, (hi, lo): (usize, usize), (j0, j1): (usize, usize), scratch: &mut [F]) {
        assert!(
            hi >= lo && hi - lo < self.group && (lo > 0 || hi == 0),
            "StepGrads::add_steps: steps {hi} down to {lo}"
        );
        assert!(
            j1 >= j0 && j1 - j0 <= self.cols,
            "StepGrads::add_steps: columns {j0}..{j1}, more than the {} of `new`",
            self.cols
        );
        if j1 == j0 {
            return;
        }
        self.wait_for(lo);
        let d = self.dims;
        let g = 4 * d.h;
        let w = j1 - j0;
        // The product's k: step hi's B rows, then step hi-1's, ...
        let rows = (hi - lo + 1) * d.b;
        let start = scratch.as_ptr().align_offset(64).min(16);
        let (panels, strips) = scratch[start..].split_at_mut(w.div_ceil(NR) * NR * rows);
        // SAFETY: columns j0..j1 of d bias are this caller's.
        let bias = unsafe { cols_mut(self.d_bias, 0, (j0, j1)) };
        for k in 0..rows {
            let (s, b) = self.group_row(hi, k);
            // SAFETY: every row thread has finished step lo (`wait_for`),
            // and so every step above it (they run from T-1 down): dz's
            // rows of step s >= lo are final and none writes them again.
            let row = &unsafe { self.dz.row(s, b) }[j0..j1];
            for (q, part) in row.chunks(NR).enumerate() {
                copy_short::<F, NR>(&mut panels[(q * rows + k) * NR..][..part.len()], part);
            }
            add_row(bias, row);
            if let GradInput::Classes(classes) = self.input {
                let c = classes[s * d.b + b] as usize;
                assert!(c < d.input, "class {c} of {} in the input", d.input);
                // SAFETY: columns j0..j1 of d kernel's row c (c < its rows,
                // asserted) are this caller's.
                add_row(unsafe { cols_mut(self.d_kernel, c * g, (j0, j1)) }, row);
            }
        }
        if lo > 0 || !self.h0_zero {
            self.product(
                (self.h, d.h),
                (hi, rows),
                panels,
                strips,
                self.d_rk,
                (j0, j1),
            );
        }
        if let GradInput::Dense { x, width } = self.input {
            self.product(
                (x, width),
                (hi, rows),
                panels,
                strips,
                self.d_kernel,
                (j0, j1),
            );
        }
    }

    /// Row `k` of a group's product from step `hi` down: (step, batch
    /// row). The order of every sum: step hi's B rows, then step hi-1's, ...
    fn group_row(&self, hi: usize, k: usize) -> (usize, usize) {
        (hi - k / self.dims.b, k % self.dims.b)
    }

    /// `C[:, j0..j1] += X^T @ panels`, X [b, m] the `b` rows of x ([T, B,
    /// m]) in the panels' order: step hi's B rows, then step hi-1's, ...
    fn product(
        &self,
        (x, m): (&[F], usize),
        (hi, b): (usize, usize),
        panels: &[F],
        strips: &mut [F],
        c: Out<F>,
        (j0, j1): (usize, usize),
    ) {
        let (bs, g) = (self.dims.b, 4 * self.dims.h);
        // Row by row, each row read once in order. Strip by strip (every
        // row read 48 bytes at a time, the reads 1 KB apart at m = 256)
        // took 2.9 ms a thread and training step at layer 1 against 1.8.
        for k in 0..b {
            let (s, r) = self.group_row(hi, k);
            let row = &x[(s * bs + r) * m..][..m];
            for (s, part) in row.chunks(MR).enumerate() {
                let rows = part.len();
                copy_short::<F, MR>(&mut strips[s * MR * b + k * rows..][..rows], part);
            }
        }
        for s in 0..m.div_ceil(MR) {
            let rows = MR.min(m - s * MR);
            let a = &strips[s * MR * b..][..rows * b];
            // SAFETY: `F::packed_kernel()` (the caller builds a StepGrads only
            // then); A is [rows, b] at strides (1, rows) inside `a`; the
            // panels hold columns j0..j1 of b rows; C's rows s*MR.. columns
            // j0..j1 lie in the gradient and are this caller's.
            unsafe {
                F::gemm_panels_raw(
                    (rows, b, j1 - j0),
                    (a.as_ptr(), 1, rows),
                    panels.as_ptr(),
                    (c.0.add(s * MR * g + j0), g),
                    true,
                )
            }
        }
    }

    /// Waits until every row thread has finished step `s`.
    fn wait_for(&self, s: usize) {
        for left in &self.left {
            let mut spins = 0u32;
            while left.load(Ordering::Acquire) > s {
                if self.abort.load(Ordering::Relaxed) {
                    panic!("another thread of the LSTM backward panicked");
                }
                spins += 1;
                // A few microseconds of spinning, then the core goes to
                // whoever needs it: on a loaded machine the thread waited
                // for may be the one queued behind this one. (4096 spins
                // before yielding measured the same on two free cores,
                // and slower with 4 threads on 2 cores.)
                if spins < 64 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
    }
}

/// See [`StepGrads::guard`].
pub(crate) struct AbortOnPanic<'g>(&'g AtomicBool);

impl Drop for AbortOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

/// Columns `j0..j1` of the row starting at `at` of a gradient.
///
/// # Safety
/// `out.0 + at + j1` lies in the gradient, and no other thread touches
/// those elements meanwhile.
unsafe fn cols_mut<'x, F>(out: Out<F>, at: usize, (j0, j1): (usize, usize)) -> &'x mut [F] {
    // SAFETY: as the caller vouches.
    unsafe { std::slice::from_raw_parts_mut(out.0.add(at + j0), j1 - j0) }
}

simd_dispatch! {
    /// `dst += src`, element by element.
    fn add_row<F: Scalar>(dst: &mut [F], src: &[F]) {
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = *d + v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::steps::Steps;

    /// A thread that panics does not leave the others waiting for it: they
    /// panic too, naming why, and the call returns.
    #[test]
    fn a_panicking_thread_stops_the_waits() {
        let (t, b, h) = (3, 4, 8);
        let mut dz = vec![0f32; t * b * 4 * h];
        let hs = vec![0f32; (t + 1) * b * h];
        let x = vec![0f32; t * b * 2];
        let (mut d_rk, mut d_kernel, mut d_bias) = (
            vec![0f32; h * 4 * h],
            vec![0f32; 2 * 4 * h],
            vec![0f32; 4 * h],
        );
        let steps = Steps::new(&mut dz, t, b, 4 * h);
        let rows = [(0, 2), (2, 4)];
        let sg = StepGrads::new(
            GradTargets {
                h: &hs,
                h0_zero: true,
                input: GradInput::Dense { x: &x, width: 2 },
                d_rk: &mut d_rk,
                d_kernel: &mut d_kernel,
                d_bias: &mut d_bias,
            },
            steps.reader(),
            h,
            &rows,
            16,
        );
        let mut scratch = vec![0f32; sg.scratch_len()];
        let sg = &sg;
        let waiter = std::thread::scope(|s| {
            let failing = s.spawn(move || {
                let _guard = sg.guard();
                panic!("planted");
            });
            let waiting = s.spawn(move || {
                let _guard = sg.guard();
                sg.finished(1, 0);
                sg.add_steps((0, 0), (0, 16), &mut scratch);
            });
            assert!(failing.join().is_err());
            waiting.join()
        });
        let payload = waiter.expect_err("the waiting thread returned");
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        assert!(text.contains("another thread"), "{text}");
    }

    /// One row thread's steps as the backward runs them, `group` steps a
    /// product (`None`: as `new` chooses); the gradients (d rk, d kernel,
    /// d bias) of columns `cols`.
    #[allow(clippy::type_complexity)]
    fn run(
        (dz, hs, input): (&mut [f32], &[f32], GradInput<'_, f32>),
        (t, b, h, inputs): (usize, usize, usize, usize),
        h0_zero: bool,
        group: Option<usize>,
        cols: (usize, usize),
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>, usize) {
        let g = 4 * h;
        let (mut d_rk, mut d_kernel, mut d_bias) = (
            vec![f32::NAN; h * g],
            vec![f32::NAN; inputs * g],
            vec![f32::NAN; g],
        );
        let steps = Steps::new(dz, t, b, g);
        let targets = GradTargets {
            h: hs,
            h0_zero,
            input,
            d_rk: &mut d_rk,
            d_kernel: &mut d_kernel,
            d_bias: &mut d_bias,
        };
        let mut sg = StepGrads::new(targets, steps.reader(), h, &[(0, b)], cols.1 - cols.0);
        if let Some(group) = group {
            sg = sg.with_group(group);
        }
        let chosen = sg.group;
        let mut scratch = vec![f32::NAN; sg.scratch_len()];
        sg.zero(cols);
        for s in (0..t).rev() {
            sg.finished(0, s);
            if let Some(steps) = sg.due(s) {
                sg.add_steps(steps, cols, &mut scratch);
            }
        }
        sg.add_steps((0, 0), cols, &mut scratch);
        drop(sg);
        (d_rk, d_kernel, d_bias, chosen)
    }

    /// A product of several steps gives every gradient the bits of one
    /// step a product (the same chain of FMAs: steps from T-1 down, rows
    /// in order), and both agree with the sums in f64; groups that do not
    /// divide T-1, step 0 skipped or not, dense and one-hot input.
    #[test]
    fn steps_in_groups_sum_as_one_step_at_a_time() {
        if !f32::packed_kernel() {
            eprintln!(
                "SKIPPED steps_in_groups_sum_as_one_step_at_a_time: no AVX-512F here, so no StepGrads"
            );
            return;
        }
        let (t, b, h, width) = (8, 5, 16, 24);
        let g = 4 * h;
        let mut rng = crate::rng::RngStream::new(11, crate::rng::Purpose::Init, 0);
        // Uniform in [-0.5, 0.5).
        let mut next = || (rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
        let dz: Vec<f32> = (0..t * b * g).map(|_| next()).collect();
        let hs: Vec<f32> = (0..(t + 1) * b * h).map(|_| next()).collect();
        let x: Vec<f32> = (0..t * b * width).map(|_| next()).collect();
        let classes: Vec<u32> = (0..t * b).map(|i| (i * 7 % 3) as u32).collect();
        let cols = (32, 64);
        for (input, inputs) in [
            (GradInput::Dense { x: &x, width }, width),
            (GradInput::Classes(&classes), 3),
        ] {
            for h0_zero in [true, false] {
                let one = run(
                    (&mut dz.clone(), &hs, input),
                    (t, b, h, inputs),
                    h0_zero,
                    Some(1),
                    cols,
                );
                let (mut chosen, mut seen) = (0, 0);
                for group in [None, Some(2), Some(3), Some(7)] {
                    let many = run(
                        (&mut dz.clone(), &hs, input),
                        (t, b, h, inputs),
                        h0_zero,
                        group,
                        cols,
                    );
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    for (a, z, name) in [
                        (&one.0, &many.0, "d rk"),
                        (&one.1, &many.1, "d kernel"),
                        (&one.2, &many.2, "d bias"),
                    ] {
                        assert_eq!(
                            bits(a),
                            bits(z),
                            "{name}, {group:?} steps, h0 zero {h0_zero}"
                        );
                    }
                    (chosen, seen) = (many.3, seen + 1);
                }
                assert!(
                    chosen > 1 && seen == 4,
                    "new chose {chosen} steps a product"
                );
                // The sums themselves, in f64, on the columns computed.
                let dz_at = |s: usize, r: usize, j: usize| f64::from(dz[(s * b + r) * g + j]);
                // Every (step, row) from step `first` on.
                let rows = |first: usize| (first..t).flat_map(move |s| (0..b).map(move |r| (s, r)));
                for j in cols.0..cols.1 {
                    let bias: f64 = rows(0).map(|(s, r)| dz_at(s, r, j)).sum();
                    assert!(
                        (f64::from(one.2[j]) - bias).abs() < 1e-4,
                        "d bias column {j}"
                    );
                    for i in 0..h {
                        let first = usize::from(h0_zero);
                        let want: f64 = rows(first)
                            .map(|(s, r)| f64::from(hs[(s * b + r) * h + i]) * dz_at(s, r, j))
                            .sum();
                        assert!(
                            (f64::from(one.0[i * g + j]) - want).abs() < 1e-4,
                            "d rk ({i}, {j})"
                        );
                    }
                    for i in 0..inputs {
                        let want: f64 = rows(0)
                            .map(|(s, r)| match input {
                                GradInput::Dense { x, width } => {
                                    f64::from(x[(s * b + r) * width + i]) * dz_at(s, r, j)
                                }
                                GradInput::Classes(c) => {
                                    if c[s * b + r] as usize == i {
                                        dz_at(s, r, j)
                                    } else {
                                        0.0
                                    }
                                }
                            })
                            .sum();
                        assert!(
                            (f64::from(one.1[i * g + j]) - want).abs() < 1e-4,
                            "d kernel ({i}, {j})"
                        );
                    }
                }
            }
        }
    }
}
