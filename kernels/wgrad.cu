// The LSTM weight gradients, fast: the same three sums as lstm_wgrad_bwd_f32
// (kernels/lstm.cu, the obviously-right reference they are checked against),
// split over the T*B (t, b) pairs so the whole GPU works on them, then summed
// over the splits in a fixed order. Launcher: src/gpu/lstm/wgrad.rs.
//
// With s = t*B + b (the t-major row of h, cls, dz) and G = 4H:
//   d_recurrent_kernel[k, c] = sum_{s=B}^{TB-1} h[(s-B)*H + k] * dz[s*G + c]
//                            = sum_{r=0}^{S-1} h[r*H + k] * dz_next[r*G + c]
//     with S = (T-1)*B and dz_next = dz + B*G (h_{-1} = 0: step 0 adds
//     nothing): an (H x S) @ (S x G) GEMM whose both operands are S-major.
//   d_kernel[v, c] = sum of dz[s*G + c] over s with cls[s] == v (cls[s] >= V
//     means "no class": that row adds to no d_kernel row, only to d_bias).
//   d_bias[c]      = sum over all s of dz[s*G + c].
//
// Three launches:
//   1. wgrad_rk_partial_f32: split-K GEMM. Block (tile, split) computes a
//      64 x 64 tile of d_recurrent_kernel over its split's rows r, staging 16
//      rows of h and dz_next at a time in shared memory; each of the 256
//      threads keeps a 4 x 4 register block (two 16-byte shared loads feed 16
//      FMAs). The next 16 rows are fetched into registers while the current
//      ones are multiplied. Writes rk_partial[split, H, G].
//   2. wgrad_cls_partial_f32: block (column tile, split), one thread per
//      column c: it adds the dz rows of its split in s order into its own
//      column of a [V][blockDim] shared accumulator (no other thread touches
//      that column: no races, no barriers) and into a register for d_bias.
//      Writes cls_partial[split, V+1, G] (row V: d_bias).
//   3. wgrad_reduce_f32: one thread per output sums its partials over splits
//      0, 1, 2, ... in that order. OVERWRITES d_kernel, d_recurrent_kernel,
//      d_bias.
// Deterministic: no atomics, every sum has a fixed order (rows in increasing
// s within a split, then splits in increasing order), so the same inputs and
// the same split counts give the same bits whatever the launch timing. The
// order differs from the reference's single sequential sum, so the two agree
// to rounding, not to the bit.
//
// Rows past a split's end, and k / c past H / G, are loaded as zero. A padded
// row is zero in both operands, so it adds 0 * 0 = +0 to the written sums,
// which changes no bit; a padded k or c only feeds outputs that are never
// written. Guarded loads: nothing outside [S, H] / [S, 4H] is read.

#include "common.cuh"

#define WG_TM 64  // tile rows: k along H
#define WG_TN 64  // tile columns: c along 4H
#define WG_KT 16  // rows r staged per shared-memory chunk
#define WG_THREADS 256  // blockDim of wgrad_rk_partial_f32: its load and compute roles assume it

// One 64 x 64 tile of d_recurrent_kernel over rows [split * rows_per_split,
// +rows_per_split) of S. Grid: x = tile (row-tile major: k tile = x /
// ceil(G/64), c tile = x % ceil(G/64)), y = split; exactly 256 threads.
// Every element of the tile inside [H, G] of partial[split] is written.
// (No __launch_bounds__: at 256 threads it would allow 255 registers, no
// tighter than the default, and the simulator's parser reads the `.maxntid`
// it emits together with the `.reg` lines that follow it.)
extern "C" __global__ void wgrad_rk_partial_f32(const float* __restrict__ h,        // [S + .., H] t-major h
                         const float* __restrict__ dz_next,  // dz + B*4H: [S, 4H]
                         unsigned S, unsigned H, unsigned rows_per_split,
                         float* __restrict__ partial) {     // [splits, H, 4H]
  __shared__ __align__(16) float As[WG_KT][WG_TM];
  __shared__ __align__(16) float Bs[WG_KT][WG_TN];
  const unsigned G = 4u * H;
  const unsigned tiles_n = (G + WG_TN - 1) / WG_TN;
  const unsigned k0 = (blockIdx.x / tiles_n) * WG_TM, c0 = (blockIdx.x % tiles_n) * WG_TN;
  const size_t begin = (size_t)blockIdx.y * rows_per_split;
  const size_t end = min((size_t)S, begin + rows_per_split);
  const unsigned tid = threadIdx.x;
  // Compute role: rows k0 + 4*ty .. +3, columns c0 + 4*tx .. +3.
  const unsigned tx = tid % 16, ty = tid / 16;
  // Load role: element (lr + 4*i, lm) of each staged chunk, i = 0..3, so a
  // warp reads 32 consecutive floats of one h or dz row (coalesced).
  const unsigned lm = tid % 64, lr = tid / 64;
  const bool a_in = k0 + lm < H, b_in = c0 + lm < G;
  float ra[4], rb[4];
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

  auto fetch = [&](size_t r0) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const size_t r = r0 + lr + 4 * i;
      const bool row = r < end;
      ra[i] = row && a_in ? h[r * H + k0 + lm] : 0.0f;
      rb[i] = row && b_in ? dz_next[r * G + c0 + lm] : 0.0f;
    }
  };
  if (begin < end) fetch(begin);
  for (size_t r0 = begin; r0 < end; r0 += WG_KT) {
    __syncthreads();  // every thread is done reading the previous chunk
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      As[lr + 4 * i][lm] = ra[i];
      Bs[lr + 4 * i][lm] = rb[i];
    }
    __syncthreads();
    if (r0 + WG_KT < end) fetch(r0 + WG_KT);  // in flight during the FMAs below
#pragma unroll
    for (int kk = 0; kk < WG_KT; ++kk) {
      const float4 a = *reinterpret_cast<const float4*>(&As[kk][4 * ty]);
      const float4 b = *reinterpret_cast<const float4*>(&Bs[kk][4 * tx]);
      const float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
  }
  float* out = partial + (size_t)blockIdx.y * H * G;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const unsigned k = k0 + 4 * ty + i;
    if (k >= H) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const unsigned c = c0 + 4 * tx + j;
      if (c < G) out[(size_t)k * G + c] = acc[i][j];
    }
  }
}

// d_kernel and d_bias partials of rows [split * rows_per_split,
// +rows_per_split) of the S = T*B rows. Grid: x = column tile of blockDim.x
// columns, y = split; dynamic shared memory V * blockDim.x floats. Writes
// partial[split, v, c] for every v < V and partial[split, V, c] (d_bias) for
// every column c < 4H.
extern "C" __global__ void wgrad_cls_partial_f32(const unsigned* __restrict__ cls,  // [S]
                                                 const float* __restrict__ dz,      // [S, 4H]
                                                 unsigned S, unsigned H, unsigned V,
                                                 unsigned rows_per_split,
                                                 float* __restrict__ partial) {  // [splits, V+1, 4H]
  extern __shared__ float acc[];  // [V][blockDim.x]; column threadIdx.x is this thread's
  const unsigned G = 4u * H, cols = blockDim.x;
  const unsigned c = blockIdx.x * cols + threadIdx.x;
  // No barrier below, so a thread past the last column may simply leave.
  if (c >= G) return;
  const size_t begin = (size_t)blockIdx.y * rows_per_split;
  const size_t end = min((size_t)S, begin + rows_per_split);
  float* mine = acc + threadIdx.x;
  for (unsigned v = 0; v < V; ++v) mine[(size_t)v * cols] = 0.0f;
  float bias = 0.0f;
#pragma unroll 4
  for (size_t s = begin; s < end; ++s) {
    const float x = dz[s * G + c];
    const unsigned v = cls[s];
    bias += x;
    if (v < V) mine[(size_t)v * cols] += x;
  }
  float* out = partial + (size_t)blockIdx.y * (V + 1) * G;
  for (unsigned v = 0; v < V; ++v) out[(size_t)v * G + c] = mine[(size_t)v * cols];
  out[(size_t)V * G + c] = bias;
}

// Sums the partials over splits 0, 1, ... in that order: output i < 4H*H is
// d_recurrent_kernel[i] = sum_p rk_partial[p, i] (p < rk_splits); the rest,
// e = i - 4H*H, is sum_p cls_partial[p, e] (p < cls_splits), d_kernel[e] for
// e < 4H*V, else d_bias[e - 4H*V]. Zero splits give zero. Grid-stride over
// 4H*H + 4H*V + 4H. OVERWRITES all three outputs.
extern "C" __global__ void wgrad_reduce_f32(const float* __restrict__ rk_partial,
                                            unsigned rk_splits,
                                            const float* __restrict__ cls_partial,
                                            unsigned cls_splits, unsigned H, unsigned V,
                                            float* __restrict__ d_kernel,
                                            float* __restrict__ d_recurrent_kernel,
                                            float* __restrict__ d_bias) {
  const size_t G = 4 * (size_t)H;
  const size_t n_rk = G * H, n_k = G * V, n_cls = n_k + G, n = n_rk + n_cls;
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    float acc = 0.0f;
    // Unrolled so several independent partial loads are in flight; the adds
    // still run in split order.
    if (i < n_rk) {
#pragma unroll 8
      for (unsigned p = 0; p < rk_splits; ++p) acc += rk_partial[p * n_rk + i];
      d_recurrent_kernel[i] = acc;
    } else {
      const size_t e = i - n_rk;
#pragma unroll 8
      for (unsigned p = 0; p < cls_splits; ++p) acc += cls_partial[p * n_cls + e];
      if (e < n_k)
        d_kernel[e] = acc;
      else
        d_bias[e - n_k] = acc;
    }
  }
}
