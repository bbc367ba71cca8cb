// Instruction forms the real kernels (kernels/*.cu) use that the other test
// kernels do not: explicitly rounded f32 (add/sub/mul.rn), 64-bit unsigned
// division and comparisons, signed 64-bit subtraction, read-only global loads
// (ld.global.nc), vector shared loads, and f32 equality.
extern "C" __global__ void coverage_forms(const float* __restrict__ a,
                                          const unsigned* __restrict__ u,
                                          const unsigned long long* __restrict__ w,
                                          float* out_f, unsigned long long* out_w,
                                          unsigned n) {
  __shared__ float4 tile[64];
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  const unsigned t = threadIdx.x;
  const float x = __ldg(a + i % n);          // ld.global.nc.f32
  const unsigned k = __ldg(u + i % n);       // ld.global.nc.u32
  if (t < 64) tile[t] = make_float4(x, x + 1.0f, (float)k, 2.0f);
  __syncthreads();
  if (i >= n) return;
  const float4 v = tile[t % 64];             // ld.shared.v4.f32
  float* o = out_f + (size_t)i * 5;
  o[0] = __fadd_rn(x, v.y);
  o[1] = __fsub_rn(x, v.z);
  o[2] = __fmul_rn(x, v.w);
  o[3] = (x == v.x) ? 1.0f : 0.0f;
  o[4] = v.x + v.y + v.z + v.w;
  const unsigned long long p = w[2 * i], q = w[2 * i + 1];
  unsigned long long* r = out_w + (size_t)i * 4;
  r[0] = q ? p / q : 0ull;                   // div.u64
  r[1] = p < q ? 1ull : 0ull;                // setp.lt.u64
  r[2] = p >= q ? 1ull : 0ull;               // setp.ge.u64
  r[3] = (unsigned long long)((long long)p - (long long)q);  // sub.s64
}
