// Device helpers shared by every kernel in kernels/: activations, warp /
// block reductions and the packed one-hot decode. Header-only; every
// function is __device__ inline.
//
// Warp reductions use the full mask (0xffffffff): callers must have all 32
// lanes of the warp active, so launchers use block sizes that are multiples
// of 32 and call these outside divergent branches.
#pragma once

#include <math.h>

#define CHARLSTM_FULL_MASK 0xffffffffu

// 1 / (1 + exp(-x)), with IEEE expf (not __expf).
__device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

__device__ __forceinline__ float warp_reduce_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(CHARLSTM_FULL_MASK, x, o);
  return x;
}

__device__ __forceinline__ float warp_reduce_max(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(CHARLSTM_FULL_MASK, x, o));
  return x;
}

// Block-wide reductions. `scratch` is 32 floats of shared memory owned by the
// caller; every thread of the block must call (they contain __syncthreads),
// blockDim.x must be a multiple of 32 and at most 1024. Every thread gets the
// result. Ends with a barrier, so `scratch` may be reused straight away.
template <bool IS_MAX>
__device__ __forceinline__ float block_reduce(float x, float* scratch) {
  const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
  const unsigned nwarps = blockDim.x >> 5;
  const float identity = IS_MAX ? -INFINITY : 0.0f;
  x = IS_MAX ? warp_reduce_max(x) : warp_reduce_sum(x);
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  if (warp == 0) {
    x = lane < nwarps ? scratch[lane] : identity;
    x = IS_MAX ? warp_reduce_max(x) : warp_reduce_sum(x);
    if (lane == 0) scratch[0] = x;  // lane 0 read scratch[0] above: same thread
  }
  __syncthreads();
  const float r = scratch[0];
  __syncthreads();
  return r;
}

__device__ __forceinline__ float block_reduce_sum(float x, float* scratch) {
  return block_reduce<false>(x, scratch);
}

__device__ __forceinline__ float block_reduce_max(float x, float* scratch) {
  return block_reduce<true>(x, scratch);
}

// Class of one packed one-hot row: the lowest set bit below V, or V if none.
__device__ __forceinline__ unsigned onehot_class(const unsigned long long* row,
                                                 unsigned words_per_row, unsigned V) {
  for (unsigned w = 0; w < words_per_row; ++w) {
    const unsigned long long word = row[w];
    if (word != 0ull) {
      const unsigned v = w * 64u + (63u - (unsigned)__clzll(word & (0ull - word)));
      return v < V ? v : V;
    }
  }
  return V;
}
