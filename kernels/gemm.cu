// Dense f32 GEMMs for the LSTM layers above the first (a dense input), the
// device twin of the gemm_rows calls in src/ops/lstm.rs. Launcher:
// src/gpu/gemm.rs. Three forms of C = op(A) @ op(B) (+ bias):
//
//   gemm_nn_f32:  A [M, K], B [K, N]   Z_x = X @ kernel + bias   [T*B, In] x [In, 4H]
//   gemm_nt_f32:  A [M, K], B [N, K]   dX  = dZ @ kernel^T       [T*B, 4H] x [4H, In]^T
//   gemm_tn_f32:  A [K, M], B [K, N]   dW  = X^T @ dZ            [T*B, In]^T x [T*B, 4H]
//
// all row-major, C [M, N] row-major, bias [N] (nullable) added to every row.
//
// Deterministic, no atomics: output (m, n) is one thread's fmaf chain over
// k in increasing order within its K split; the splits (grid z) are summed
// by gemm_reduce_f32 in increasing split order, then the bias is added.
// With one split the GEMM kernel writes C itself (sum, then + bias). So the
// same inputs and the same split count give the same bits. The order
// differs from the CPU's (bias first there, no fma), so the two agree to
// rounding, not to the bit.
//
// Tiling (as kernels/wgrad.cu's GEMM): a block of 256 threads owns a 64 x 64
// tile of C; K is staged 16 at a time in shared memory (As[k][m], Bs[k][n],
// so the compute reads 16-byte vectors along m and n); each thread keeps a
// 4 x 4 register block (rows 4*ty.., columns 4*tx..). The next chunk is
// fetched into registers while the current one is multiplied. Loads are
// mapped so a warp reads consecutive addresses of the stored layout.
// Elements outside [M, K] / [K, N] load as zero: a padded k adds 0 * x =
// +0 (or 0 * 0) to a real output, which changes no bit, and a padded m or n
// only feeds outputs that are never written.
//
// Grid: x = ceil(N / 64), y = ceil(M / 64), z = splits; exactly 256
// threads. Split z covers k in [z * k_per_split, min(K, (z+1) * k_per_split)).
// `out` is C when gridDim.z == 1 (bias added), else partial [splits, M, N]
// (split z at z*M*N, bias not added). OVERWRITES every element of its
// output inside [M, N].

#include "common.cuh"

#define GM_TM 64       // tile rows (m)
#define GM_TN 64       // tile columns (n)
#define GM_KT 16       // k staged per chunk
#define GM_THREADS 256 // blockDim of the GEMM kernels: the load and compute roles assume it

// TA: A is stored [K, M] (A^T is used); TB: B is stored [N, K].
template <bool TA, bool TB>
__device__ __forceinline__ void gemm_tile(const float* __restrict__ A,
                                          const float* __restrict__ B,
                                          const float* __restrict__ bias, unsigned M,
                                          unsigned N, unsigned K, unsigned k_per_split,
                                          float* __restrict__ out) {
  __shared__ __align__(16) float As[GM_KT][GM_TM];
  __shared__ __align__(16) float Bs[GM_KT][GM_TN];
  const unsigned m0 = blockIdx.y * GM_TM, n0 = blockIdx.x * GM_TN;
  const size_t kbegin = (size_t)blockIdx.z * k_per_split;
  const size_t kend = min((size_t)K, kbegin + k_per_split);
  const unsigned tid = threadIdx.x;
  const unsigned tx = tid % 16, ty = tid / 16;
  float ra[4], rb[4];
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

  // Load roles, element i = 0..3 of this thread: (row of As / Bs, column).
  // Stored [K, M] / [K, N]: consecutive threads, consecutive m / n.
  // Stored [M, K] / [N, K]: consecutive threads, consecutive k.
  auto a_at = [&](int i, unsigned& kk, unsigned& mm) {
    if (TA) { kk = tid / 64 + 4 * i; mm = tid % 64; }
    else { kk = tid % 16; mm = tid / 16 + 16 * i; }
  };
  auto b_at = [&](int i, unsigned& kk, unsigned& nn) {
    if (TB) { kk = tid % 16; nn = tid / 16 + 16 * i; }
    else { kk = tid / 64 + 4 * i; nn = tid % 64; }
  };
  auto fetch = [&](size_t k0) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      unsigned kk, mm, nn;
      a_at(i, kk, mm);
      const size_t ka = k0 + kk;
      const unsigned m = m0 + mm;
      ra[i] = ka < kend && m < M ? (TA ? A[ka * M + m] : A[(size_t)m * K + ka]) : 0.0f;
      b_at(i, kk, nn);
      const size_t kb = k0 + kk;
      const unsigned n = n0 + nn;
      rb[i] = kb < kend && n < N ? (TB ? B[(size_t)n * K + kb] : B[kb * N + n]) : 0.0f;
    }
  };
  if (kbegin < kend) fetch(kbegin);
  for (size_t k0 = kbegin; k0 < kend; k0 += GM_KT) {
    __syncthreads();  // every thread is done reading the previous chunk
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      unsigned kk, mm, nn;
      a_at(i, kk, mm);
      As[kk][mm] = ra[i];
      b_at(i, kk, nn);
      Bs[kk][nn] = rb[i];
    }
    __syncthreads();
    if (k0 + GM_KT < kend) fetch(k0 + GM_KT);  // in flight during the FMAs below
#pragma unroll
    for (int kk = 0; kk < GM_KT; ++kk) {
      const float4 a = *reinterpret_cast<const float4*>(&As[kk][4 * ty]);
      const float4 b = *reinterpret_cast<const float4*>(&Bs[kk][4 * tx]);
      const float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
  }
  const bool whole = gridDim.z == 1;
  float* o = whole ? out : out + (size_t)blockIdx.z * M * N;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const unsigned m = m0 + 4 * ty + i;
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const unsigned n = n0 + 4 * tx + j;
      if (n < N) o[(size_t)m * N + n] = whole && bias ? acc[i][j] + bias[n] : acc[i][j];
    }
  }
}

#define GEMM_PARAMS                                                                          \
  const float *__restrict__ A, const float *__restrict__ B, const float *__restrict__ bias, \
      unsigned M, unsigned N, unsigned K, unsigned k_per_split, float *__restrict__ out
#define GEMM_ARGS A, B, bias, M, N, K, k_per_split, out

// C = A @ B (+ bias): A [M, K], B [K, N].
extern "C" __global__ void gemm_nn_f32(GEMM_PARAMS) { gemm_tile<false, false>(GEMM_ARGS); }

// C = A @ B^T (+ bias): A [M, K], B [N, K].
extern "C" __global__ void gemm_nt_f32(GEMM_PARAMS) { gemm_tile<false, true>(GEMM_ARGS); }

// C = A^T @ B (+ bias): A [K, M], B [K, N].
extern "C" __global__ void gemm_tn_f32(GEMM_PARAMS) { gemm_tile<true, false>(GEMM_ARGS); }

// C[i] = (partial[0, i] + partial[1, i] + ... in split order) + bias[i % N]
// (bias nullable). Grid-stride over M*N. OVERWRITES C.
extern "C" __global__ void gemm_reduce_f32(const float* __restrict__ partial, unsigned splits,
                                           const float* __restrict__ bias, unsigned M,
                                           unsigned N, float* __restrict__ C) {
  const size_t n = (size_t)M * N, stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    float acc = 0.0f;
#pragma unroll 8
    for (unsigned s = 0; s < splits; ++s) acc += partial[s * n + i];
    C[i] = bias ? acc + bias[i % N] : acc;
  }
}
