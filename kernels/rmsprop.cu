// RMSprop over every parameter in one launch (Keras / TF2 formulation), the
// device twin of src/cpu/rmsprop.rs in f32:
//
//   ms = rho * ms + (1 - rho) * (g * g)
//   p  = p - (lr * g) / (sqrt(ms) + eps)
//
// Layout: params, ms and grads are each ONE contiguous f32 buffer of
// n = Params::len() scalars holding the five tensors back to back in
// layout order (src/model/params.rs, `ParamLayout`, owns the offsets):
//
//   lstm.kernel            [V, 4H]  at 0
//   lstm.recurrent_kernel  [H, 4H]  at 4HV
//   lstm.bias              [4H]     at 4HV + 4HH
//   dense.kernel           [H, V]   at 4HV + 4HH + 4H
//   dense.bias             [V]      at 4HV + 4HH + 4H + HV
//
// Element-wise, so the layout only matters to the host. Overwrites params and
// ms in place; grads are read only. Grid-stride loop: any grid covers any n.
//
// Exactness: every operation is an explicitly rounded IEEE intrinsic
// (__fmul_rn, __fadd_rn, __fdiv_rn, __fsqrt_rn), which also forbids nvcc from
// contracting a*b+c into an FMA, so the result equals the CPU f32 path
// (plain Rust f32 ops, no FMA, correctly rounded sqrt) bit for bit.
// `1 - rho` is computed in f32 on the device, as the CPU computes it.

#include "common.cuh"

extern "C" __global__ void rmsprop_update_f32(float* __restrict__ params,
                                              float* __restrict__ ms,
                                              const float* __restrict__ grads,
                                              unsigned n, float lr, float rho, float eps) {
  const float one_minus_rho = __fsub_rn(1.0f, rho);
  const size_t stride = (size_t)gridDim.x * blockDim.x;  // size_t: no wrap near n = 2^32
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float g = grads[i];
    const float m = __fadd_rn(__fmul_rn(rho, ms[i]), __fmul_rn(one_minus_rho, __fmul_rn(g, g)));
    ms[i] = m;
    params[i] = __fsub_rn(params[i], __fdiv_rn(__fmul_rn(lr, g), __fadd_rn(__fsqrt_rn(m), eps)));
  }
}

// Global gradient-norm clipping (PyTorch clip_grad_norm_, Keras
// global_clipnorm), run before rmsprop_update_f32 when --clip-norm is set;
// the device twin of cpu::clip_grad_norm:
//
//   norm = sqrt(sum_i grads[i]^2)        over all n = Params::len() scalars
//   if (norm > max_norm) grads[i] *= (float)(max_norm / norm)
//
// Layout: grads is the flat ParamLayout buffer above; in place. norm_out,
// when not null, receives the norm before clipping as one f32.
//
// ONE block of GRAD_CLIP_MAX_BLOCK or fewer threads (a power of two; the
// launcher checks): thread t sums the squares of elements t, t + blockDim,
// ... in f64 (a square of an f32 is exact in f64), then a fixed shared-memory
// tree adds the per-thread sums. The order depends only on blockDim, so the
// result is the same on every run; it differs from the CPU's sequential f64
// sum by a few f64 ulp, far below the f32 rounding of the scale. One block
// because the norm must be complete before any element is scaled: one block
// needs neither a grid-wide barrier nor a second launch, and the Keras model
// has only ~100k parameters (0.4 MB) to read twice. (Not yet timed on a GPU;
// a model of millions of parameters would want a multi-block first pass.)

#define GRAD_CLIP_MAX_BLOCK 1024

extern "C" __global__ void grad_norm_clip_f32(float* __restrict__ grads, unsigned n,
                                              float max_norm, float* __restrict__ norm_out) {
  __shared__ double partial[GRAD_CLIP_MAX_BLOCK];
  __shared__ float scale;
  const unsigned tid = threadIdx.x;
  double sum = 0.0;
  // size_t: no wrap near n = 2^32, as in rmsprop_update_f32.
  for (size_t i = tid; i < n; i += blockDim.x) {
    const double g = (double)grads[i];
    sum = __dadd_rn(sum, __dmul_rn(g, g));
  }
  partial[tid] = sum;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (tid < s) partial[tid] = __dadd_rn(partial[tid], partial[tid + s]);
    __syncthreads();
  }
  if (tid == 0) {
    const double norm = __dsqrt_rn(partial[0]);
    if (norm_out != nullptr) *norm_out = (float)norm;
    // A NaN norm compares false: no scaling, as on the CPU.
    scale = norm > (double)max_norm ? (float)__ddiv_rn((double)max_norm, norm) : 1.0f;
  }
  __syncthreads();
  const float k = scale;
  if (k == 1.0f) return;  // nothing to clip: no writes
  for (size_t i = tid; i < n; i += blockDim.x) grads[i] = __fmul_rn(grads[i], k);
}
