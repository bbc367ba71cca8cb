// Instruction forms kernels/generate.cu adds, each behind a result that
// tests/generate_kernel.rs checks against Rust:
// - philox_blocks: the Philox 4x32-10 of common.cuh (mul.hi.u32, shr.u64 of
//   the 64-bit seed and index) against src/sample/philox.rs and Random123's
//   known answers, and philox_uniform_f32 against Philox::uniform_f32;
// - f64_math: libdevice's f64 log and exp (mov.b64 word pack / unpack,
//   rcp.approx.ftz.f64, neg / sub / add.rn / max / selp / setp on f64,
//   ld.global.nc.f64), floor (cvt.rmi.f64.f64), u32 <-> f64 conversions,
//   f64 and f32x2 / f64x2 shared-memory traffic, max.s32, predicate logic
//   and the unordered f32 / f64 comparisons, NaN included;
// - draw_rows: common.cuh's draw_index (the sampler's draw) on one row per
//   thread, against strategy::draw.
#include "common.cuh"

extern "C" __global__ void philox_blocks(const uint4* __restrict__ counters,
                                         const unsigned long long* __restrict__ keys,
                                         uint4* out, float* uniform, unsigned n) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const unsigned long long key = keys[i];
  const uint4 c = counters[i];
  out[i] = philox4x32_10(c, (unsigned)key, (unsigned)(key >> 32));
  // The counter's words as (purpose, stream, index) of Philox::uniform_f32.
  const unsigned long long index = (unsigned long long)c.y << 32 | c.x;
  uniform[i] = philox_uniform_f32(key, c.w, c.z, index);
}

// out[i*12 ..]: log a, exp a, floor a, fmax(a, b), a - b, __dadd_rn(a, b),
// -a, (double)(unsigned)|a| (cvt.rzi then cvt.rn), the shared-memory round
// trip of a (scalar and x2), and the f32 pair sum via a float2 tile.
// flags[i]: bit k set for the k-th comparison below.
extern "C" __global__ void f64_math(const double* __restrict__ a, const double* __restrict__ b,
                                    const float* __restrict__ f, const int* __restrict__ s,
                                    double* out, unsigned* flags, unsigned n) {
  __shared__ double dtile[64];
  __shared__ double2 d2tile[64];
  __shared__ float2 f2tile[64];
  const unsigned t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
  const bool live = i < n;
  const double x = live ? __ldg(a + i) : 0.0, y = live ? b[i] : 0.0;
  const float fx = live ? f[2 * i] : 0.0f, fy = live ? f[2 * i + 1] : 0.0f;
  if (t < 64) {
    dtile[t] = x;
    d2tile[t] = make_double2(x, y);
    f2tile[t] = make_float2(fx, fy);
  }
  __syncthreads();
  if (!live) return;
  double* o = out + (size_t)i * 12;
  o[0] = log(x);
  o[1] = exp(x);
  o[2] = floor(x);
  o[3] = fmax(x, y);
  o[4] = x - y;
  o[5] = __dadd_rn(x, y);
  o[6] = -x;
  const double ax = fabs(x);
  o[7] = ax < 4e9 ? (double)(unsigned)ax : -1.0;
  o[8] = dtile[t % 64];
  const double2 d2 = d2tile[t % 64];
  o[9] = d2.x + d2.y;
  const float2 f2 = f2tile[t % 64];
  o[10] = (double)(f2.x + f2.y);
  o[11] = (double)max(s[2 * i], s[2 * i + 1]);
  unsigned bits = 0;
  bits |= (!(fx < fy)) << 0;       // setp.geu.f32
  bits |= (!(fx <= fy)) << 1;      // setp.gtu.f32
  bits |= (!(fx > fy)) << 2;       // setp.leu.f32
  bits |= (!(x > y)) << 3;         // setp.leu.f64
  bits |= (x < y) << 4;            // setp.lt.f64
  bits |= (x == y) << 5;           // setp.eq.f64
  bits |= (x > y) << 6;            // setp.gt.f64
  bits |= (fx > 0.0f && isfinite(fx)) << 7;  // and.pred (or a branch)
  flags[i] = bits;
}

// out[r] = draw_index(probs[r], w[r], V, codes[r], u[r]); one thread per row,
// w [R, V] is that row's scratch.
extern "C" __global__ void draw_rows(const float* __restrict__ probs,
                                     const double* __restrict__ codes,
                                     const float* __restrict__ u, double* w, unsigned* out,
                                     unsigned R, unsigned V) {
  const unsigned r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= R) return;
  const float* p = probs + (size_t)r * V;
  double* wr = w + (size_t)r * V;
  const double code = codes[r];
  if (code > 0.0)
    for (unsigned v = 0; v < V; ++v) wr[v] = temperature_weight(p[v], code);
  out[r] = draw_index(p, wr, V, code, u[r]);
}
