//! A weight matrix packed once for the many small products of a
//! recurrence: [`PackedB::gemm`] is `C = A @ B` with B packed ahead.
//!
//! Why: every step of the recurrence multiplies a thread's few rows of h
//! ([n, H], n = 64 at the notebook's batch on 2 threads) by the same
//! `recurrent_kernel` ([H, 4H], 256 KB at H = 128, 4 MB at H = 512), or dz by
//! its transpose. A general GEMM (the `matrixmultiply` crate) repacks its B
//! operand on every call, the transpose through strided reads: 16-18 % of a
//! stream-mode batch's time went to packing (perf, `examples/stream_bench`).
//! Packed once per batch, each step reads B straight from its panels.
//!
//! The same packing serves a dense layer's input products (`x_t @ kernel`
//! ahead of each forward step, `dz_t @ kernel^T` after each backward one:
//! [`PackedB::gemm_add`] sums the first with the recurrent product) and the
//! stream head's, where `matrixmultiply` would also repack B per call and
//! ran ~20 % slower (`dz @ kernel^T` at T*B = 7680, 2 x 256 units: 19.0 ->
//! 15.5 ms, as one product of all rows).
//!
//! Layout: panels of [`NR`] columns; panel j holds columns `j*NR ..` of every
//! row k at `data[(j*K + k)*NR ..][..NR]`, the last panel zero-padded.
//!
//! Each element of C is one fused multiply-add per k in increasing k from
//! zero, whatever m, n and the row split are: the engines' results do not
//! depend on the thread count. The kernel runs where the CPU has AVX-512F
//! and F is f32; everywhere else (f64 gradient checks, older CPUs)
//! [`PackedB::gemm`] is the crate's [`gemm`] on the unpacked view.

use super::Scalar;
use super::scalar::{View, gemm, gemm_to};
use super::workspace::{run_or_spawn, split_range};

/// Columns per panel: two 16-float AVX-512 registers.
pub(crate) const NR: usize = 32;
/// Rows of C per micro-tile: 12 x 2 accumulator registers of the 32, each
/// row's A read through its own pointer (8 rows: 81, 12: 92, 14: 83 G
/// multiply-adds per second on a recurrence step's shape, one core).
pub(crate) const MR: usize = 12;

/// B `[K, N]` ready for [`PackedB::gemm`]: packed into the caller's buffer
/// where the kernel runs, else the view itself.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PackedB<'a, F> {
    view: View<'a, F>,
    k: usize,
    n: usize,
    /// The panels; empty when the kernel does not run here.
    panels: &'a [F],
}

impl<'a, F: Scalar> PackedB<'a, F> {
    /// Packs `b` (`[k, n]`, any strides) into `store` (resized; its buffer
    /// reused across calls) when the kernel runs here.
    pub fn new(b: View<'a, F>, (k, n): (usize, usize), store: &'a mut Vec<F>) -> Self {
        let mut packed = PackedB {
            view: b,
            k,
            n,
            panels: &[],
        };
        if !F::packed_kernel() || k == 0 || n == 0 {
            return packed;
        }
        let panels = n.div_ceil(NR);
        let len = panels * k * NR;
        store.clear();
        store.resize(len + 16, F::zero());
        // From a 64-byte boundary: a 16-float load of a panel row then
        // touches one cache line, not two (the allocator aligns to 16 bytes).
        let start = aligned_start(store);
        let store = &mut store[start..][..len];
        for j in 0..panels {
            let cols = NR.min(n - j * NR);
            for kk in 0..k {
                let dst = &mut store[(j * k + kk) * NR..][..cols];
                let at = kk * b.rs + j * NR * b.cs;
                if b.cs == 1 {
                    copy_short::<F, NR>(dst, &b.data[at..][..cols]);
                } else {
                    for (c, d) in dst.iter_mut().enumerate() {
                        *d = b.data[at + c * b.cs];
                    }
                }
            }
        }
        packed.panels = store;
        packed
    }

    /// An LSTM layer's recurrent_kernel (`[H, 4H]` row-major) as the
    /// forward recurrence reads it: `z += h @ rk`.
    pub fn recurrent(rk: &'a [F], h: usize, store: &'a mut Vec<F>) -> Self {
        Self::new(View::new(rk, 4 * h, 1), (h, 4 * h), store)
    }

    /// Its transpose (`[4H, H]`) as the backward reads it: `dh = dz @ rk^T`.
    pub fn recurrent_t(rk: &'a [F], h: usize, store: &'a mut Vec<F>) -> Self {
        Self::new(View::new(rk, 1, 4 * h), (4 * h, h), store)
    }

    /// [`recurrent`](Self::recurrent) over panels packed earlier.
    pub fn recurrent_prepacked(rk: &'a [F], h: usize, store: &'a [F]) -> Self {
        Self::prepacked(View::new(rk, 4 * h, 1), (h, 4 * h), store)
    }

    /// The view of `b` over panels an earlier [`new`](Self::new) of the
    /// same `b` and sizes left in its store: packed once for many calls
    /// while the weights do not change (the stateful generator's steps).
    pub fn prepacked(b: View<'a, F>, (k, n): (usize, usize), store: &'a [F]) -> Self {
        let packed = F::packed_kernel() && k > 0 && n > 0;
        let len = n.div_ceil(NR) * k * NR;
        assert!(
            !packed || store.len() == len + 16,
            "PackedB::prepacked: a store of {} values did not come from packing a [{k}x{n}] B",
            store.len()
        );
        PackedB {
            view: b,
            k,
            n,
            panels: if packed {
                &store[aligned_start(store)..][..len]
            } else {
                &[]
            },
        }
    }

    /// `C[m, n] = A[m, k] @ B` (C only written): A any strided view, C
    /// row-major with row stride `ldc`.
    pub fn gemm(&self, m: usize, a: View<'_, F>, c: &mut [F], ldc: usize) {
        self.product(m, a, (c, ldc), false);
    }

    /// `C[m, n] += A[m, k] @ B`: each element's chain of FMAs goes on from
    /// C's value, so a product over [A1 | A2] and [B1; B2] is `gemm` of the
    /// first halves then `gemm_add` of the second, to the bit.
    pub fn gemm_add(&self, m: usize, a: View<'_, F>, c: &mut [F], ldc: usize) {
        self.product(m, a, (c, ldc), true);
    }

    fn product(&self, m: usize, a: View<'_, F>, (c, ldc): (&mut [F], usize), add: bool) {
        let (k, n) = (self.k, self.n);
        if self.panels.is_empty() {
            let beta = if add { F::one() } else { F::zero() };
            gemm((m, k, n), a, self.view, beta, c, (ldc, 1));
            return;
        }
        // SAFETY: `panels` is non-empty only when `F::packed_kernel()` said
        // the kernel runs, and holds n.div_ceil(NR) panels of k rows of NR.
        unsafe { kernel((m, k, n), a, self.panels.as_ptr(), (c, ldc), add) }
    }
}

/// `dst = src` for a panel's row (or a strip's, `cpu::step_grads`): where
/// it is of `N` values, a fixed-size copy (vector moves), not a memmove
/// call (which took 7 % of a stacked step for those 48- and 128-byte rows).
#[inline(always)]
pub(crate) fn copy_short<F: Copy, const N: usize>(dst: &mut [F], src: &[F]) {
    match (<&mut [F; N]>::try_from(&mut *dst), <&[F; N]>::try_from(src)) {
        (Ok(d), Ok(s)) => *d = *s,
        _ => dst.copy_from_slice(src),
    }
}

/// Where a store's panels start: its first 64-byte boundary (the store
/// holds 16 values more than the panels; the same offset on every call for
/// a buffer that has not moved).
fn aligned_start<F>(store: &[F]) -> usize {
    store.as_ptr().align_offset(64).min(16)
}

/// The kernel on `a` and `c` bounds-checked here, B as the caller vouches.
///
/// # Safety
/// `F::packed_kernel()` is true and `b` addresses B [k, n] in panels as
/// `gemm_f32_avx512` reads it.
unsafe fn kernel<F: Scalar>(
    (m, k, n): (usize, usize, usize),
    a: View<'_, F>,
    b: *const F,
    (c, ldc): (&mut [F], usize),
    add: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        (m - 1) * a.rs + (k - 1) * a.cs < a.data.len(),
        "packed gemm: A [{m}x{k}] out of bounds"
    );
    assert!(
        ldc >= n && (m - 1) * ldc + n <= c.len(),
        "packed gemm: C [{m}x{n}] out of bounds"
    );
    let a = (a.data.as_ptr(), a.rs, a.cs);
    // SAFETY: the asserts bound A and C; the caller vouches for B and the CPU.
    unsafe { F::gemm_panels_raw((m, k, n), a, b, (c.as_mut_ptr(), ldc), add) }
}

/// `C[m, n] = A[m, k] @ B[k, n]` into a row-major C, its columns split
/// across `threads`: for a weight gradient `X^T @ dz` over all T*B rows,
/// whose B is large and used once. Split by rows, every
/// thread would pack the whole of B (15 MB of dz at the notebook's stream
/// batch); split by columns, each packs its share. Each element is the
/// same sum over k whatever the split (the crate's [`gemm`] on a column
/// block), so the result does not depend on `threads`.
pub(crate) fn gemm_cols<F: Scalar>(
    threads: usize,
    (m, k, n): (usize, usize, usize),
    a: View<'_, F>,
    b: View<'_, F>,
    c: &mut [F],
) {
    assert!(c.len() >= m * n, "gemm_cols: C [{m}x{n}] out of bounds");
    let parts: Vec<(usize, usize)> = split_range(n, threads.max(1), NR)
        .filter(|(j0, j1)| j1 > j0)
        .collect();
    if parts.len() <= 1 {
        gemm((m, k, n), a, b, F::zero(), c, (n, 1));
        return;
    }
    // Each thread writes its column block straight into C's rows (row
    // stride n): no block of its own to allocate (512 KB a thread for a
    // [256, 1024] gradient, fresh pages from the system every call) and
    // copy back after the join.
    let c = ColumnBlocks(c.as_mut_ptr());
    std::thread::scope(|scope| {
        let last = parts.len() - 1;
        for (p, &(j0, j1)) in parts.iter().enumerate() {
            let job = move || {
                let w = j1 - j0;
                let b = View::new(&b.data[j0 * b.cs..], b.rs, b.cs);
                // SAFETY: C's elements (i, j0..j1), i < m, lie in `c` (len
                // >= m * n, asserted) and no other thread's block holds any
                // of them; `c` is a unique borrow held for the whole scope,
                // so nothing else reads or writes them meanwhile.
                unsafe { gemm_to((m, k, w), a, b, F::zero(), (c.at(j0), n, 1)) }
            };
            run_or_spawn(scope, p == last, job);
        }
    });
}

/// C's base pointer, shared by the threads of [`gemm_cols`], each writing
/// only its own columns.
#[derive(Clone, Copy)]
struct ColumnBlocks<F>(*mut F);

// SAFETY: `gemm_cols` hands each thread a disjoint set of C's elements.
unsafe impl<F: Send> Send for ColumnBlocks<F> {}
unsafe impl<F: Send> Sync for ColumnBlocks<F> {}

impl<F> ColumnBlocks<F> {
    /// Column j of row 0. A method, so that a closure captures the whole
    /// (Send) struct, not its raw pointer field.
    fn at(self, j: usize) -> *mut F {
        self.0.wrapping_add(j)
    }
}

/// The f32 kernel behind [`Scalar::gemm_panels_raw`]: `C[m, n] = A @ B`
/// (`C += A @ B` where `add`) panel by panel, [`MR`] rows of C at a time.
///
/// # Safety
/// The CPU has AVX-512F. A's element (i, q) is at `a + i * rs + q * cs`
/// for i < m, q < k. B is in panels: its element (q, j) is at `b + ((j /
/// NR) * k + q) * NR + j % NR` for q < k, j < n. C's element (i, j) is at
/// `c + i * ldc + j`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn gemm_f32_avx512(
    (m, k, n): (usize, usize, usize),
    (a, rs, cs): (*const f32, usize, usize),
    b: *const f32,
    (c, ldc): (*mut f32, usize),
    add: bool,
) {
    for j in 0..n.div_ceil(NR) {
        let cols = NR.min(n - j * NR);
        let mut i = 0;
        while i < m {
            // Full tiles then one short one: splitting the rest evenly
            // instead (64 rows as 4 x 12 + 8 + 8, not 5 x 12 + 4) measured
            // 86 against 92 G multiply-adds per second.
            let rows = MR.min(m - i);
            // SAFETY: rows i..i+rows of A, panel j of B and C's columns
            // j*NR..+cols of those rows lie inside what the caller vouched for.
            unsafe {
                let a = (a.add(i * rs), rs, cs);
                let b = b.add(j * k * NR);
                let c = (c.add(i * ldc + j * NR), ldc);
                match rows {
                    12 => tile::<12>(k, a, b, c, cols, add),
                    11 => tile::<11>(k, a, b, c, cols, add),
                    10 => tile::<10>(k, a, b, c, cols, add),
                    9 => tile::<9>(k, a, b, c, cols, add),
                    8 => tile::<8>(k, a, b, c, cols, add),
                    7 => tile::<7>(k, a, b, c, cols, add),
                    6 => tile::<6>(k, a, b, c, cols, add),
                    5 => tile::<5>(k, a, b, c, cols, add),
                    4 => tile::<4>(k, a, b, c, cols, add),
                    3 => tile::<3>(k, a, b, c, cols, add),
                    2 => tile::<2>(k, a, b, c, cols, add),
                    _ => tile::<1>(k, a, b, c, cols, add),
                }
            }
            i += rows;
        }
    }
}

/// R rows x `cols` (<= NR) columns of C from R rows of A and one panel of
/// B (row q at `b + q * NR`), written over C or (`add`) added to it.
///
/// # Safety
/// As [`gemm_f32_avx512`], for this tile.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile<const R: usize>(
    k: usize,
    (a, rs, cs): (*const f32, usize, usize),
    b: *const f32,
    (c, ldc): (*mut f32, usize),
    cols: usize,
    add: bool,
) {
    use std::arch::x86_64::*;
    // Columns past `cols` are outside B and C: masked loads and stores.
    let mask = |lo: usize| -> __mmask16 {
        let live = cols.saturating_sub(lo).min(16);
        ((1u32 << live) - 1) as __mmask16
    };
    let (m0, m1) = (mask(0), mask(16));
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    if add {
        // The chain of FMAs goes on from C's value (`PackedB::gemm_add`).
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: the masks keep the loads to C's `cols` columns of row r.
            unsafe {
                let row = c.add(r * ldc);
                acc[0] = _mm512_maskz_loadu_ps(m0, row);
                acc[1] = _mm512_maskz_loadu_ps(m1, row.add(16));
            }
        }
    }
    // One k: B's row at `$b` times A's element `$at` of each row `$r`.
    macro_rules! step {
        ($r:ident => $at:expr, $b:expr) => {{
            let b0 = _mm512_maskz_loadu_ps(m0, $b);
            let b1 = _mm512_maskz_loadu_ps(m1, $b.add(16));
            for ($r, acc) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_ps(*$at);
                acc[0] = _mm512_fmadd_ps(x, b0, acc[0]);
                acc[1] = _mm512_fmadd_ps(x, b1, acc[1]);
            }
        }};
    }
    // SAFETY: every kk below is < k, so B's row kk (masked to `cols`) and
    // A's column kk are in bounds.
    unsafe {
        if cs == 1 {
            // A's rows (h, dz, x rows of a step): each through its own
            // pointer, so a load is base + index, not the end of a chain of
            // adds from row 0 each k (integer work that competes with the
            // FMAs for ports); four k per pass, one index update.
            let ap: [*const f32; R] = std::array::from_fn(|r| a.add(r * rs));
            let mut kk = 0;
            while kk + 4 <= k {
                let row = b.add(kk * NR);
                step!(r => ap[r].add(kk), row);
                step!(r => ap[r].add(kk + 1), row.add(NR));
                step!(r => ap[r].add(kk + 2), row.add(2 * NR));
                step!(r => ap[r].add(kk + 3), row.add(3 * NR));
                kk += 4;
            }
            for kk in kk..k {
                step!(r => ap[r].add(kk), b.add(kk * NR));
            }
        } else {
            // Any other A (no caller today; the tests read one down its
            // columns): one k at a time from a pointer to column kk.
            for kk in 0..k {
                let p = a.add(kk * cs);
                step!(r => p.add(r * rs), b.add(kk * NR));
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        // SAFETY: the masks keep the stores to C's `cols` columns of row r.
        unsafe {
            let row = c.add(r * ldc);
            _mm512_mask_storeu_ps(row, m0, acc[0]);
            _mm512_mask_storeu_ps(row.add(16), m1, acc[1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Results as their bit patterns: compared for exact equality.
    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// The packed product equals a plain f64 one at shapes with partial
    /// tiles and panels, and does not depend on how rows are split.
    #[test]
    fn matches_plain_products_and_row_splits() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        for (m, k, n) in [
            (1, 1, 1),
            (9, 17, 33),
            (64, 128, 512),
            (13, 40, 100),
            (8, 5, 32),
            (25, 7, 64),
            (70, 12, 64),
            (11, 9, 40),
        ] {
            let a: Vec<f32> = (0..m * k).map(|_| next()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| next()).collect();
            for transposed in [false, true] {
                // B as [k, n] row-major, or as the transpose of a [n, k] buffer.
                let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
                let view = if transposed {
                    View::new(&bt[..], 1, k)
                } else {
                    View::new(&b[..], n, 1)
                };
                let mut store = Vec::new();
                let packed = PackedB::new(view, (k, n), &mut store);
                if f32::packed_kernel() {
                    let at = packed.panels.as_ptr() as usize;
                    assert_eq!(at % 64, 0, "panels not on a cache line");
                }
                let mut c = vec![f32::NAN; m * n];
                packed.gemm(m, View::new(&a, k, 1), &mut c, n);
                for i in 0..m {
                    for j in 0..n {
                        let want: f64 = (0..k)
                            .map(|q| a[i * k + q] as f64 * b[q * n + j] as f64)
                            .sum();
                        let got = c[i * n + j] as f64;
                        assert!(
                            (got - want).abs() < 1e-5 * (k as f64),
                            "({m},{k},{n}) [{i},{j}] {got} vs {want}"
                        );
                    }
                }
                // A read down its columns (strided k, the kernel's
                // one-k-at-a-time path): the same sums, the same bits.
                let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
                let mut ct = vec![f32::NAN; m * n];
                packed.gemm(m, View::new(&at, 1, m), &mut ct, n);
                assert_eq!(
                    bits(&c),
                    bits(&ct),
                    "({m},{k},{n}): a strided A changed bits"
                );
                let mut split = vec![f32::NAN; m * n];
                let cut = m / 3;
                packed.gemm(cut, View::new(&a, k, 1), &mut split, n);
                packed.gemm(
                    m - cut,
                    View::new(&a[cut * k..], k, 1),
                    &mut split[cut * n..],
                    n,
                );
                assert_eq!(
                    bits(&c),
                    bits(&split),
                    "({m},{k},{n}): a row split changed bits"
                );
                // The same panels seen again through `prepacked`.
                let again = PackedB::prepacked(view, (k, n), &store);
                let mut c2 = vec![f32::NAN; m * n];
                again.gemm(m, View::new(&a, k, 1), &mut c2, n);
                assert_eq!(bits(&c), bits(&c2), "({m},{k},{n}): prepacked differs");
            }
        }
    }

    /// `A @ B` over k = k1 + k2 as `gemm` of the first k1 then `gemm_add`
    /// of the rest (A `[m, k]`, B `[k, n]`, both row-major).
    fn split_k<F: Scalar>(
        a: &[F],
        b: &[F],
        (m, k1, k2, n): (usize, usize, usize, usize),
    ) -> Vec<F> {
        let k = k1 + k2;
        let (mut s1, mut s2) = (Vec::new(), Vec::new());
        let top = PackedB::new(View::new(b, n, 1), (k1, n), &mut s1);
        let bottom = PackedB::new(View::new(&b[k1 * n..], n, 1), (k2, n), &mut s2);
        let mut c = vec![F::of(f64::NAN); m * n];
        top.gemm(m, View::new(a, k, 1), &mut c, n);
        bottom.gemm_add(m, View::new(&a[k1..], k, 1), &mut c, n);
        c
    }

    /// `gemm` of [A1 | A2] and [B1; B2] is `gemm` of the first halves then
    /// `gemm_add` of the second, to the bit (the forward's input and
    /// recurrent products); in f64, where the plain GEMM runs, to rounding.
    #[test]
    fn gemm_add_goes_on_from_c() {
        let (m, k1, k2, n) = (13, 20, 37, 70);
        let k = k1 + k2;
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 997) as f32 / 997.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 104729) % 991) as f32 / 991.0 - 0.5)
            .collect();
        let mut store = Vec::new();
        let whole = PackedB::new(View::new(&b, n, 1), (k, n), &mut store);
        let mut want = vec![f32::NAN; m * n];
        whole.gemm(m, View::new(&a, k, 1), &mut want, n);
        assert_eq!(bits(&want), bits(&split_k(&a, &b, (m, k1, k2, n))));

        let wide = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<_>>();
        let got = split_k(&wide(&a), &wide(&b), (m, k1, k2, n));
        for (g, w) in got.iter().zip(&want) {
            assert!((g - f64::from(*w)).abs() < 1e-5, "{g} vs {w}");
        }
    }

    /// Split by columns over any thread count, the product has the bits of
    /// one unsplit [`gemm`] (a weight gradient must not depend on threads).
    #[test]
    fn column_split_changes_no_bit() {
        let (m, k, n) = (24, 300, 100);
        let a: Vec<f32> = (0..k * m)
            .map(|i| ((i * 7919) % 997) as f32 / 997.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 104729) % 991) as f32 / 991.0 - 0.5)
            .collect();
        // A = X^T of a [k, m] X, as the weight gradients read it.
        let (av, bv) = (View::new(&a[..], 1, m), View::new(&b[..], n, 1));
        let mut whole = vec![f32::NAN; m * n];
        gemm((m, k, n), av, bv, 0.0, &mut whole, (n, 1));
        for threads in [1, 2, 3, 5] {
            let mut split = vec![f32::NAN; m * n];
            gemm_cols(threads, (m, k, n), av, bv, &mut split);
            assert_eq!(bits(&whole), bits(&split), "{threads} threads");
        }
    }
}
