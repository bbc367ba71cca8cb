// Device helpers shared by every kernel in kernels/: activations, warp /
// block reductions, the packed one-hot decode, the Philox RNG and the
// sampler's draw. Header-only; every function is __device__ inline.
//
// Warp reductions use the full mask (0xffffffff): callers must have all 32
// lanes of the warp active, so launchers use block sizes that are multiples
// of 32 and call these outside divergent branches.
#pragma once

#include <math.h>

#define CHARLSTM_FULL_MASK 0xffffffffu

// 1 / (1 + exp(-x)), with IEEE expf (not __expf).
__device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

// The LSTM cell's backward at one (row, unit), lstm.cu's header math: from
// the activated gates, c_t, c_{t-1}, dh_t and dc_{t+1}, the four gates' dz
// and dc_t * f (the dc carried to step t-1). The per-step and the cluster
// kernels call it; lstm_persistent.cu spells the same operations out in the
// same order (same bits, tests/lstm_persistent.rs), left as the H100 ran
// and timed it (calling this reorders its PTX).
struct CellGrads {
  float zi, zf, zg, zo, dc_prev;
};
__device__ __forceinline__ CellGrads lstm_cell_grads(float gi, float gf, float gg, float go,
                                                     float c_t, float c_prev, float dht,
                                                     float dc_next) {
  const float tc = tanhf(c_t);
  const float dc = dc_next + dht * go * (1.0f - tc * tc);
  return {dc * gg * (gi * (1.0f - gi)), dc * c_prev * (gf * (1.0f - gf)),
          dc * gi * (1.0f - gg * gg), dht * tc * (go * (1.0f - go)), dc * gf};
}

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

// Philox 4x32-10, bit-identical to src/sample/philox.rs (Salmon et al.,
// Random123's known-answer vectors hold for both). Counter-based: a draw is a
// pure function of (key, counter), so a device thread computes the CPU's
// number without any shared RNG state. The key is the run's 64-bit seed (low
// word first); the counter is [index_lo, index_hi, stream, purpose].
#define CHARLSTM_PHILOX_M0 0xD2511F53u
#define CHARLSTM_PHILOX_M1 0xCD9E8D57u
#define CHARLSTM_PHILOX_W0 0x9E3779B9u
#define CHARLSTM_PHILOX_W1 0xBB67AE85u

// `Purpose` of src/sample/philox.rs: the counter's last word.
#define CHARLSTM_PURPOSE_INIT 1u
#define CHARLSTM_PURPOSE_SHUFFLE 2u
#define CHARLSTM_PURPOSE_SEED_TEXT 3u
#define CHARLSTM_PURPOSE_SAMPLE 4u
#define CHARLSTM_PURPOSE_DROPOUT 5u

// Ten rounds over one counter; the key is bumped before rounds 1..9, as
// `Philox::block` does.
__device__ __forceinline__ uint4 philox4x32_10(uint4 c, unsigned k0, unsigned k1) {
#pragma unroll
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += CHARLSTM_PHILOX_W0;
      k1 += CHARLSTM_PHILOX_W1;
    }
    const unsigned hi0 = __umulhi(CHARLSTM_PHILOX_M0, c.x), lo0 = CHARLSTM_PHILOX_M0 * c.x;
    const unsigned hi1 = __umulhi(CHARLSTM_PHILOX_M1, c.z), lo1 = CHARLSTM_PHILOX_M1 * c.z;
    c = make_uint4(hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0);
  }
  return c;
}

// `Philox::new(seed).at(purpose, stream, index)`.
__device__ __forceinline__ uint4 philox_at(unsigned long long seed, unsigned purpose,
                                           unsigned stream, unsigned long long index) {
  return philox4x32_10(make_uint4((unsigned)index, (unsigned)(index >> 32), stream, purpose),
                       (unsigned)seed, (unsigned)(seed >> 32));
}

// `Philox::uniform_f32`: the top 24 bits of the block's first word times
// 2^-24, a value in [0, 1) that is exact in f32 and f64 (so host and device
// compare the same number against their cumulative sums).
__device__ __forceinline__ float philox_uniform_f32(unsigned long long seed, unsigned purpose,
                                                    unsigned stream, unsigned long long index) {
  const unsigned x = philox_at(seed, purpose, stream, index).x;
  return __uint2float_rn(x >> 8) * (1.0f / 16777216.0f);
}

// The sampler's draw, strategy::draw of src/sample/strategy.rs to the bit
// (up to the last-ulp accuracy of the device's f64 log / exp). A strategy is
// one f64 code: T > 0 a temperature, 0 greedy, < 0 uniform.

// log(p) as strategy::reweight takes it: -inf for p <= 0 or non-finite p.
__device__ __forceinline__ double log_weight(float p) {
  return (p > 0.0f && isfinite(p)) ? log((double)p) : -INFINITY;
}

// The notebook's unnormalised weight exp(log p / T), in f64.
__device__ __forceinline__ double temperature_weight(float p, double t) {
  return exp(log_weight(p) / t);
}

// Temperature t, given w[v] = temperature_weight(p[v], t) for every v: the
// left-to-right f64 sum, the normalisation w / sum and the cumulative walk of
// strategy::inverse_cdf, in the CPU's order (so one thread runs it). May
// overwrite w (the underflow fallback of strategy::reweight).
__device__ inline unsigned draw_temperature(const float* p, double* w, unsigned V, double t,
                                            float u) {
  double sum = 0.0;
  for (unsigned v = 0; v < V; ++v) sum += w[v];
  if (!(isfinite(sum) && sum > 0.0)) {
    // Every weight underflowed: exp((log p - max log p) / t), the same
    // distribution shifted by a constant.
    double max = -INFINITY;
    for (unsigned v = 0; v < V; ++v) max = fmax(max, log_weight(p[v]));
    if (max == -INFINITY) return 0;  // no positive probability: draw returns 0
    sum = 0.0;
    for (unsigned v = 0; v < V; ++v) {
      w[v] = exp((log_weight(p[v]) - max) / t);
      sum += w[v];
    }
  }
  const double uu = (double)u;
  double acc = 0.0;
  int last_positive = -1;
  for (unsigned v = 0; v < V; ++v) {
    const double wv = w[v] / sum;
    if (wv > 0.0) {  // a zero weight can never be the first index with u < acc
      acc += wv;
      last_positive = (int)v;
      if (uu < acc) return v;
    }
  }
  return last_positive < 0 ? 0u : (unsigned)last_positive;
}

// Greedy: the first largest value, NaN skipped, 0 if none.
__device__ inline unsigned draw_greedy(const float* p, unsigned V) {
  int best = -1;
  for (unsigned v = 0; v < V; ++v) {
    const float x = p[v];
    if (isnan(x)) continue;
    if (best < 0 || x > p[best]) best = (int)v;
  }
  return best < 0 ? 0u : (unsigned)best;
}

// Uniform: floor(u * V) (exact in f64: 24-bit u, small V), clamped to V - 1.
__device__ __forceinline__ unsigned draw_uniform(unsigned V, float u) {
  const double i = floor((double)u * (double)V);
  return i > 0.0 ? min((unsigned)i, V - 1u) : 0u;
}

// strategy::draw for the strategy `code`; w as draw_temperature wants it
// when code > 0, unused otherwise.
__device__ inline unsigned draw_index(const float* p, double* w, unsigned V, double code,
                                      float u) {
  if (code > 0.0) return draw_temperature(p, w, V, code, u);
  if (code == 0.0) return draw_greedy(p, V);
  return draw_uniform(V, u);
}
