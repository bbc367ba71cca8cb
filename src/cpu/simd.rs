//! Run-time choice of an AVX-512 or AVX2 build for the element-wise loops.
//!
//! The crate is compiled for baseline x86-64 (SSE2), so the compiler
//! vectorises the cell loops 4 wide. `simd_dispatch!` compiles a function
//! body twice more, with AVX-512F (16 wide) and with AVX2 (8 wide), and
//! picks the widest the CPU has (AVX-512 took 3 ms of CPU time off a stream
//! batch's cells). All copies give bit-identical results: Rust never
//! contracts `a * b + c` into an FMA, so the width changes, not the rounding;
//! an explicit `mul_add` rounds once in every build (an FMA instruction in
//! these two, which both enable FMA; libm's `fmaf` in the baseline).

/// Defines `fn $name<F: Scalar>(args)` running `$body`, in an AVX-512F or
/// AVX2 build of it when the CPU supports one, else in the baseline build.
macro_rules! simd_dispatch {
    ($(#[$m:meta])* $vis:vis fn $name:ident<F: Scalar>($($a:ident: $t:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        $vis fn $name<F: Scalar>($($a: $t),*) {
            #[inline(always)]
            fn body<F: Scalar>($($a: $t),*) $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            fn avx2<F: Scalar>($($a: $t),*) {
                body($($a),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f")]
            fn avx512<F: Scalar>($($a: $t),*) {
                body($($a),*)
            }
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: `avx512` only requires the AVX-512F instructions
                // and those it implies (AVX2, FMA; every AVX-512F CPU has
                // them), which the CPU was just found to support.
                return unsafe { avx512($($a),*) };
            }
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: `avx2` only requires the AVX2 and FMA
                // instructions, which the CPU was just found to support.
                return unsafe { avx2($($a),*) };
            }
            body($($a),*)
        }
    };
}
