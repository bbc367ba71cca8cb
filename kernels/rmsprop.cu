// RMSprop over every parameter in one launch (Keras / TF2 formulation), the
// device twin of src/cpu/rmsprop.rs in f32:
//
//   ms = rho * ms + (1 - rho) * (g * g)
//   p  = p - (lr * g) / (sqrt(ms) + eps)
//
// Layout: params, ms and grads are each ONE contiguous f32 buffer of
// n = Params::len() scalars holding the five tensors back to back in
// TENSOR_NAMES order (src/gpu/rmsprop.rs, `ParamLayout`, owns the offsets):
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
