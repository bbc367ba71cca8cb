// Dropout between stacked LSTM layers, forward and backward: the device
// twin of src/ops/dropout.rs (read its header: the counter layout is
// defined there, once). Launcher: src/gpu/dropout.rs.
//
// For layer `layer`'s output [T, B, H] (rows = T*B), element (row, j):
//   block = row * ceil(H/4) + j/4
//   word  = philox(seed, [block, step, layer, CHARLSTM_PURPOSE_DROPOUT])[j % 4]
//   keep  = (word >> 8) >= threshold          (threshold = ceil(p * 2^24), host)
//   y     = keep ? x * scale : 0              (scale = 1 / (1 - p) in f32, host)
// The backward is the same map on the gradient: dx = keep ? dy * scale : 0,
// the mask recomputed from the counter (no mask buffer). The comparison is
// on integers and the product is one IEEE multiply, so the result is the
// CPU's to the bit.
//
// The step is `step`, or, when `step_at` is not null, the u32 it points to:
// a device counter that dropout_step_advance_u32 moves on after each
// optimizer step, so a captured training step (a CUDA graph, whose launch
// arguments are frozen) draws the next step's masks on every replay.
//
// One thread per Philox block (4 units of one row), grid-stride over
// rows * ceil(H/4). Every element of `dst` inside [rows, H] is OVERWRITTEN;
// `src` and `dst` may be the same buffer (each element is read, then written,
// by one thread).

#include "common.cuh"

__device__ __forceinline__ void dropout_apply(unsigned long long seed, unsigned step_arg,
                                              const unsigned* step_at, unsigned layer,
                                              unsigned threshold, float scale,
                                              unsigned rows, unsigned H, const float* src,
                                              float* dst) {
  const unsigned step = step_at ? *step_at : step_arg;
  const unsigned bpr = (H + 3) / 4;
  const size_t n = (size_t)rows * bpr, stride = (size_t)gridDim.x * blockDim.x;
  for (size_t blk = (size_t)blockIdx.x * blockDim.x + threadIdx.x; blk < n; blk += stride) {
    const uint4 w = philox_at(seed, CHARLSTM_PURPOSE_DROPOUT, layer,
                              (unsigned long long)blk | ((unsigned long long)step << 32));
    const unsigned words[4] = {w.x, w.y, w.z, w.w};
    const size_t row = blk / bpr;
    const unsigned j0 = (unsigned)(blk % bpr) * 4;
#pragma unroll
    for (unsigned i = 0; i < 4; ++i) {
      const unsigned j = j0 + i;
      if (j < H) {
        const size_t e = row * H + j;
        dst[e] = (words[i] >> 8) >= threshold ? src[e] * scale : 0.0f;
      }
    }
  }
}

#define DROPOUT_PARAMS                                                                     \
  unsigned long long seed, unsigned step, const unsigned *step_at, unsigned layer,          \
      unsigned threshold, float scale, unsigned rows, unsigned H, const float *src, float *dst

// y = dropout(x): src = x, dst = y.
extern "C" __global__ void dropout_fwd_f32(DROPOUT_PARAMS) {
  dropout_apply(seed, step, step_at, layer, threshold, scale, rows, H, src, dst);
}

// dx = the same mask and scale applied to dy: src = dy, dst = dx.
extern "C" __global__ void dropout_bwd_f32(DROPOUT_PARAMS) {
  dropout_apply(seed, step, step_at, layer, threshold, scale, rows, H, src, dst);
}

// *step += 1 (u32, wrapping as the CPU's `step as u32` does): the device
// step counter read through `step_at`, moved on after an optimizer step.
// One thread.
extern "C" __global__ void dropout_step_advance_u32(unsigned* step) {
  if (blockIdx.x == 0 && threadIdx.x == 0) *step += 1u;
}
