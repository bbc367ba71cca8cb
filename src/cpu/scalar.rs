//! The float type of the reference (f32 for speed, f64 for gradient checks),
//! its GEMM (the `matrixmultiply` crate) and its activations.
//!
//! Matrices are strided views: element (r, c) of a matrix stored in `data`
//! with row stride `rs` and column stride `cs` is `data[r * rs + c * cs]`, so
//! a transpose is a swap of the two strides, never a copy.

/// Float type the reference runs in (f32 or f64).
pub trait Scalar: num_traits::Float + Default + Send + Sync + std::fmt::Debug + 'static {
    /// `C[m, n] = A[m, k] @ B[k, n] + beta * C` on raw strided matrices
    /// `(pointer, row stride, column stride)`: `sgemm` / `dgemm`.
    ///
    /// # Safety
    /// Every element the strides address must lie inside its allocation, and
    /// `c` must not alias `a` or `b`. The crate calls it only through its
    /// bounds-checking wrapper.
    #[allow(clippy::too_many_arguments)]
    #[doc(hidden)]
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        a: (*const Self, isize, isize),
        b: (*const Self, isize, isize),
        beta: Self,
        c: (*mut Self, isize, isize),
    );

    /// From an f64 (rounded to nearest for f32): batch sizes, hyper-parameters.
    fn of(x: f64) -> Self;

    /// Whether [`gemm_panels_raw`](Self::gemm_panels_raw) runs on this CPU
    /// ([`super::packed`]); when false, packed products fall back to
    /// [`gemm_raw`](Self::gemm_raw).
    #[doc(hidden)]
    fn packed_kernel() -> bool {
        false
    }

    /// `C[m, n] = A[m, k] @ B` (`C += A @ B` where `add`), B in panels of
    /// [`super::packed::NR`] columns: `super::packed::gemm_f32_avx512`.
    ///
    /// # Safety
    /// [`packed_kernel`](Self::packed_kernel) returned true, and the
    /// pointers and strides address what `gemm_f32_avx512` requires.
    #[allow(clippy::type_complexity)]
    #[doc(hidden)]
    unsafe fn gemm_panels_raw(
        mkn: (usize, usize, usize),
        a: (*const Self, usize, usize),
        b: *const Self,
        c: (*mut Self, usize),
        add: bool,
    ) {
        let _ = (mkn, a, b, c, add);
        unreachable!("gemm_panels_raw without a packed kernel")
    }

    /// `1 / (1 + exp(-self))`, as the cell evaluates it (libm here).
    #[inline(always)]
    fn sigmoid(self) -> Self {
        Self::one() / (Self::one() + (-self).exp())
    }

    /// `tanh(self)`, as the cell evaluates it (libm here).
    #[inline(always)]
    fn tanh_act(self) -> Self {
        self.tanh()
    }

    /// `exp(self)` for `self <= 0`, as the softmax evaluates it (libm here).
    #[inline(always)]
    fn exp_act(self) -> Self {
        self.exp()
    }
}

impl Scalar for f32 {
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        a: (*const f32, isize, isize),
        b: (*const f32, isize, isize),
        beta: f32,
        c: (*mut f32, isize, isize),
    ) {
        // SAFETY: forwarded verbatim; the caller upholds `gemm_raw`'s contract,
        // which is `sgemm`'s.
        unsafe {
            matrixmultiply::sgemm(
                m, k, n, 1.0, a.0, a.1, a.2, b.0, b.1, b.2, beta, c.0, c.1, c.2,
            )
        }
    }
    fn of(x: f64) -> f32 {
        x as f32
    }
    fn packed_kernel() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx512f")
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    }
    unsafe fn gemm_panels_raw(
        mkn: (usize, usize, usize),
        a: (*const f32, usize, usize),
        b: *const f32,
        c: (*mut f32, usize),
        add: bool,
    ) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller upholds `gemm_panels_raw`'s contract, which
        // includes the AVX-512F check of `packed_kernel`.
        unsafe {
            super::packed::gemm_f32_avx512(mkn, a, b, c, add)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (mkn, a, b, c);
            unreachable!("no packed kernel off x86_64")
        }
    }
    /// Branch-free polynomial (`fastmath`): vectorises where libm cannot.
    #[inline(always)]
    fn sigmoid(self) -> f32 {
        super::fastmath::sigmoid_f32(self)
    }
    /// Branch-free polynomial (`fastmath`): vectorises where libm cannot.
    #[inline(always)]
    fn tanh_act(self) -> f32 {
        super::fastmath::tanh_f32(self)
    }
    /// Branch-free polynomial (`fastmath`, ~2 ulp; below e^-87 it returns
    /// e^-87, a probability nothing can draw): inlined, where libm's is a call.
    #[inline(always)]
    fn exp_act(self) -> f32 {
        super::fastmath::exp_f32(self)
    }
}

impl Scalar for f64 {
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        a: (*const f64, isize, isize),
        b: (*const f64, isize, isize),
        beta: f64,
        c: (*mut f64, isize, isize),
    ) {
        // SAFETY: forwarded verbatim; the caller upholds `gemm_raw`'s contract,
        // which is `dgemm`'s.
        unsafe {
            matrixmultiply::dgemm(
                m, k, n, 1.0, a.0, a.1, a.2, b.0, b.1, b.2, beta, c.0, c.1, c.2,
            )
        }
    }
    fn of(x: f64) -> f64 {
        x
    }
}

/// A read-only strided matrix: `rows x cols`, element (r, c) at `data[r * rs + c * cs]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct View<'a, F> {
    pub data: &'a [F],
    pub rs: usize,
    pub cs: usize,
}

impl<'a, F> View<'a, F> {
    /// The matrix whose element (r, c) is `data[r * rs + c * cs]`.
    pub fn new(data: &'a [F], rs: usize, cs: usize) -> Self {
        View { data, rs, cs }
    }
}

/// Index one past the last element a `rows x cols` view with these strides touches.
fn span(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// `C[m, n] = A[m, k] @ B[k, n] + beta * C`, every access bounds-checked up front.
///
/// With `beta == 0` C is only written, never read (so it may hold garbage).
/// Each element of C is the same sequence of fused multiply-adds over k
/// whatever m and n are, which is what makes a chunked batch bit-identical to
/// a whole one (checked in tests/cpu_reference.rs).
pub(crate) fn gemm<F: Scalar>(
    (m, k, n): (usize, usize, usize),
    a: View<'_, F>,
    b: View<'_, F>,
    beta: F,
    c: &mut [F],
    (rsc, csc): (usize, usize),
) {
    assert!(
        span(m, n, rsc, csc) <= c.len(),
        "gemm: C [{m}x{n}] out of bounds"
    );
    // SAFETY: the assert keeps every addressed element of C inside `c`, a
    // unique borrow, so nothing else touches it and it aliases neither A nor B.
    unsafe { gemm_to((m, k, n), a, b, beta, (c.as_mut_ptr(), rsc, csc)) }
}

/// [`gemm`] into a C the caller addresses by pointer: for threads that each
/// write their own elements of one C ([`super::packed::gemm_cols`]). A and B
/// are bounds-checked here.
///
/// # Safety
/// The `m x n` elements `c.0 + i * rsc + j * csc` lie in one allocation, and
/// nothing else reads or writes them during the call (so C aliases neither A
/// nor B).
pub(crate) unsafe fn gemm_to<F: Scalar>(
    (m, k, n): (usize, usize, usize),
    a: View<'_, F>,
    b: View<'_, F>,
    beta: F,
    (c, rsc, csc): (*mut F, usize, usize),
) {
    assert!(
        span(m, k, a.rs, a.cs) <= a.data.len(),
        "gemm: A [{m}x{k}] out of bounds"
    );
    assert!(
        span(k, n, b.rs, b.cs) <= b.data.len(),
        "gemm: B [{k}x{n}] out of bounds"
    );
    let s = |x: usize| isize::try_from(x).expect("gemm: stride overflows isize");
    // SAFETY: the asserts keep A and B inside their slices; the caller
    // vouches for C.
    unsafe {
        F::gemm_raw(
            m,
            k,
            n,
            (a.data.as_ptr(), s(a.rs), s(a.cs)),
            (b.data.as_ptr(), s(b.rs), s(b.cs)),
            beta,
            (c, s(rsc), s(csc)),
        )
    }
}
