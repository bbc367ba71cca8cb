// Instruction forms kernels/lstm.cu uses that the other test kernels do not:
// 64-bit count-leading-zeros and negation (the lowest-set-bit decode of a
// packed one-hot word), min.u32, or.pred, rcp.rn.f32 (1 / x in the
// sigmoid), setp.le.u64 and setp.ne.s64, ld.global.nc.v4.f32 (the tiled
// kernels' float4 weight loads: out_f[n + i] is a[i] read as part of the
// aligned float4 holding it; n a multiple of 4, a 16-byte aligned).
// tests/lstm_kernels.rs checks every output against Rust.
extern "C" __global__ void lstm_forms(const unsigned long long* __restrict__ w,
                                      const float* __restrict__ a,
                                      const unsigned* __restrict__ u,
                                      unsigned long long* out_w, float* out_f,
                                      unsigned* out_u, unsigned n) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const unsigned long long p = w[2 * i], q = w[2 * i + 1];
  unsigned long long* r = out_w + (size_t)i * 5;
  r[0] = (unsigned long long)__clzll((long long)p);  // clz.b64
  r[1] = 0ull - p;                                   // neg.s64
  r[2] = p <= q ? 1ull : 0ull;                       // setp.le.u64
  r[3] = (long long)p != (long long)q ? 1ull : 0ull; // setp.ne.s64
  r[4] = (p == 0ull || q == 0ull) ? 7ull : 9ull;     // or.pred (maybe)
  out_f[i] = __frcp_rn(a[i]);                        // rcp.rn.f32
  const float4 v = *(const float4*)(a + (i & ~3u));  // ld.global.nc.v4.f32
  const unsigned c = i & 3u;
  out_f[n + i] = c == 0 ? v.x : c == 1 ? v.y : c == 2 ? v.z : v.w;
  out_u[i] = min(u[2 * i], u[2 * i + 1]);            // min.u32
}
