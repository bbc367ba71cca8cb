// The LSTM cell, one time step per launch, forward and backward (BPTT), and
// the weight gradients: the device twin of src/cpu forward::recurrence and
// backward::{recurrence_backward, weight_grads}. These per-step kernels are
// the simple, obviously-right version; a persistent fast path is checked
// against them later.
//
// Gate order along every 4H axis (Keras): i, f, c(g), o; q*H + j is gate q
// of unit j.
//
// Forward, step t, batch row b (x_t = the class whose bit is set in corpus
// row starts[b] + t; h_{-1} = c_{-1} = 0 in the window form, the initial
// state h0, c0 [B, H] in the sequence form):
//   z   = h_{t-1} @ recurrent_kernel + (kernel[x_t, :] + bias)      [4H]
//   i, f, o = sigmoid(z_i, z_f, z_o);  g = tanh(z_c)
//   c_t = f * c_{t-1} + i * g;         h_t = o * tanh(c_t)
// The input term is a gather of one row of `kernel`, never a one-hot matmul.
// A layer above the first (a dense input, lstm_cell_dense_fwd_f32) reads
// its input term instead from zx [T, B, 4H] = X @ kernel + bias, computed
// for all steps by one GEMM ahead of the recurrence (kernels/gemm.cu); the
// backward and the recurrent weight gradient are the same for both inputs.
//
// Backward, step t = T-1 .. 0. Window form: dh_{T-1} from the head (one
// loss at the last step), dc_T = 0. Sequence form (a loss at every step,
// or the layer above): dh_t = dh_t^rec + dy_t with dy [T, B, H] the
// gradient arriving from outside the recurrence, dh_T^rec, dc_T given (the
// final state's gradient, zeros for truncated BPTT), and the backward also
// yields dh_{-1}, dc_{-1}, the initial state's gradient:
//   dc   = dc_{t+1} + dh_t * o * (1 - tanh(c_t)^2)
//   dz_i = dc * g * i(1-i)     dz_f = dc * c_{t-1} * f(1-f)
//   dz_c = dc * i * (1-g^2)    dz_o = dh_t * tanh(c_t) * o(1-o)
//   dc_t-1 = dc * f;           dh_{t-1} = dz_t @ recurrent_kernel^T
// Weight gradients, one pass after the whole recurrence (fixed order):
//   d_recurrent_kernel = sum_{t, b} h_{t-1}[b]^T dz_t[b]            [H, 4H]
//                        (t >= 1 when h_{-1} = 0)
//   d_kernel[v, :]     = sum of dz_t[b] over (t, b) with x_t[b] = v  [V, 4H]
//   d_bias             = sum_{t, b} dz_t[b]                           [4H]
//
// Layouts (row-major, Keras): kernel [V, 4H] (v*4H + q*H + j),
// recurrent_kernel [H, 4H] (k*4H + ...), bias [4H]. corpus_words: the packed
// one-hot stream (src/corpus/onehot.rs), rows of words_per_row little-endian
// u64, bit v%64 of word v/64 set for class v. starts [B] u32 window starts.
// Saved state, t-major, written by the forward, read by the backward:
//   gates [T, B, 4H]  activated i, f, g, o   ((t*B + b)*4H + q*H + j)
//   c     [T, B, H]   cell state c_t
//   h     [T, B, H]   hidden state h_t (h[T-1] is the head's input)
//   cls   [T, B] u32  the decoded input class x_t[b] (V if the row had no
//                     bit below V: then that row's z, c, h are NaN)
// Backward buffers: dz [T, B, 4H] pre-activation gradients, dh [B, H],
// dc [B, H] (one step's worth, carried between launches).
// The launcher (src/gpu/lstm/cell.rs) passes per-step pointers (gates + t*B*4H...),
// so each kernel sees one step's [B, ...] slices.
//
// Decisions:
// - One thread per (b, j): it computes the four pre-activations of unit j,
//   so the state update needs no communication. Grid-stride over B*H.
// - Every output is OVERWRITTEN; nothing accumulates across launches except
//   the state the caller threads through (h_prev, c_prev, dc).
// - The weight gradients are one kernel after the recurrence with one thread
//   per output element summing over (t, b) in the CPU's order k = t*B + b:
//   deterministic and race-free, no atomics (d_kernel is a gather by class
//   over the saved cls, not a scatter). It is the reference: the trainer
//   runs the split, tiled kernels/wgrad.cu, checked against it.
// - Full-precision expf / tanhf (no fast math).

#include "common.cuh"

// One step forward. h_prev / c_prev null means zeros (t = 0). Thread (b, j)
// writes gates[b, q*H + j] for q = 0..3, c[b, j], h[b, j]; thread (b, 0) also
// writes cls[b]. DENSE (lstm_cell_dense_fwd_f32, a layer above the first):
// the input term is zx[b, q*H + j] (step t of the precomputed
// Z_x = X @ kernel + bias [T, B, 4H], kernels/gemm.cu) instead of the
// gathered kernel row plus bias, and nothing is decoded (no corpus, no cls).
// The one-hot form (DENSE = false) is compiled as before the dense one
// existed.
template <bool DENSE>
__device__ __forceinline__ void lstm_cell_fwd(const unsigned long long* __restrict__ corpus_words,
                                              unsigned words_per_row,
                                              const unsigned* __restrict__ starts, unsigned t,
                                              const float* __restrict__ kernel,
                                              const float* __restrict__ zx,
                                              const float* __restrict__ recurrent_kernel,
                                              const float* __restrict__ bias, unsigned B,
                                              unsigned H, unsigned V,
                                              const float* __restrict__ h_prev,
                                              const float* __restrict__ c_prev,
                                              float* __restrict__ gates, float* __restrict__ c,
                                              float* __restrict__ h, unsigned* __restrict__ cls) {
  const size_t n = (size_t)B * H, stride = (size_t)gridDim.x * blockDim.x;
  const size_t G = 4 * (size_t)H;
  for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += stride) {
    const unsigned b = (unsigned)(idx / H), j = (unsigned)(idx % H);
    unsigned x = 0;
    if (!DENSE) {
      const size_t row = (size_t)starts[b] + t;
      x = onehot_class(corpus_words + row * words_per_row, words_per_row, V);
      if (j == 0) cls[b] = x;
    }
    float z[4];
#pragma unroll
    for (unsigned q = 0; q < 4; ++q) {
      float acc = 0.0f;
      if (h_prev) {
        for (unsigned k = 0; k < H; ++k)
          acc += h_prev[(size_t)b * H + k] * recurrent_kernel[k * G + q * H + j];
      }
      const float xb = DENSE      ? zx[(size_t)b * G + q * H + j]
                       : x < V    ? kernel[x * G + q * H + j] + bias[q * H + j]
                                  : NAN;
      z[q] = acc + xb;
    }
    const float gi = sigmoidf_(z[0]), gf = sigmoidf_(z[1]);
    const float gg = tanhf(z[2]), go = sigmoidf_(z[3]);
    float* gr = gates + (size_t)b * G;
    gr[j] = gi;
    gr[H + j] = gf;
    gr[2 * H + j] = gg;
    gr[3 * H + j] = go;
    const float cp = c_prev ? c_prev[idx] : 0.0f;
    const float cn = gf * cp + gi * gg;
    c[idx] = cn;
    h[idx] = go * tanhf(cn);
  }
}

extern "C" __global__ void lstm_cell_fwd_f32(const unsigned long long* __restrict__ corpus_words,
                                             unsigned words_per_row,
                                             const unsigned* __restrict__ starts,
                                             unsigned t,
                                             const float* __restrict__ kernel,
                                             const float* __restrict__ recurrent_kernel,
                                             const float* __restrict__ bias,
                                             unsigned B, unsigned H, unsigned V,
                                             const float* __restrict__ h_prev,  // nullable
                                             const float* __restrict__ c_prev,  // nullable
                                             float* __restrict__ gates,
                                             float* __restrict__ c,
                                             float* __restrict__ h,
                                             unsigned* __restrict__ cls) {
  lstm_cell_fwd<false>(corpus_words, words_per_row, starts, t, kernel, nullptr,
                       recurrent_kernel, bias, B, H, V, h_prev, c_prev, gates, c, h, cls);
}

// One step forward of a layer with a dense input: zx [B, 4H] is step t of
// Z_x (bias included). Otherwise as lstm_cell_fwd_f32; no cls.
extern "C" __global__ void lstm_cell_dense_fwd_f32(const float* __restrict__ zx,
                                                   const float* __restrict__ recurrent_kernel,
                                                   unsigned B, unsigned H,
                                                   const float* __restrict__ h_prev,  // nullable
                                                   const float* __restrict__ c_prev,  // nullable
                                                   float* __restrict__ gates,
                                                   float* __restrict__ c,
                                                   float* __restrict__ h) {
  lstm_cell_fwd<true>(nullptr, 0, nullptr, 0, nullptr, zx, recurrent_kernel, nullptr, B, H, 0,
                      h_prev, c_prev, gates, c, h, nullptr);
}

// One step backward through the cell. dc_next null means zero (t = T-1);
// dc_next and dc_prev may be the same buffer (each thread reads its element
// before writing it). c_prev null means zeros (t = 0, no initial state).
// dy null: dh_t = dh (the window form); else dh_t = dh + dy, the gradient
// arriving at this step from outside the recurrence (the sequence form; the
// CPU's order). Overwrites dz [B, 4H] and dc_prev [B, H].
extern "C" __global__ void lstm_cell_bwd_f32(const float* __restrict__ gates,
                                             const float* __restrict__ c,
                                             const float* __restrict__ c_prev,  // nullable
                                             const float* __restrict__ dh,
                                             const float* __restrict__ dy,  // nullable
                                             const float* dc_next,  // nullable, may alias dc_prev
                                             unsigned B, unsigned H,
                                             float* __restrict__ dz,
                                             float* dc_prev) {
  const size_t n = (size_t)B * H, stride = (size_t)gridDim.x * blockDim.x;
  const size_t G = 4 * (size_t)H;
  for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += stride) {
    const unsigned b = (unsigned)(idx / H), j = (unsigned)(idx % H);
    const float* gr = gates + (size_t)b * G;
    const float gi = gr[j], gf = gr[H + j], gg = gr[2 * H + j], go = gr[3 * H + j];
    const float tc = tanhf(c[idx]);
    const float cp = c_prev ? c_prev[idx] : 0.0f;
    const float dht = dy ? dh[idx] + dy[idx] : dh[idx];
    const float dc = (dc_next ? dc_next[idx] : 0.0f) + dht * go * (1.0f - tc * tc);
    float* dzr = dz + (size_t)b * G;
    dzr[j] = dc * gg * (gi * (1.0f - gi));
    dzr[H + j] = dc * cp * (gf * (1.0f - gf));
    dzr[2 * H + j] = dc * gi * (1.0f - gg * gg);
    dzr[3 * H + j] = dht * tc * (go * (1.0f - go));
    dc_prev[idx] = dc * gf;
  }
}

// dh_prev[b, k] = sum_q dz[b, q] * recurrent_kernel[k, q], q = 0..4H-1 in
// order. One thread per (b, k), grid-stride over B*H. Overwrites dh_prev.
extern "C" __global__ void lstm_dh_bwd_f32(const float* __restrict__ dz,
                                           const float* __restrict__ recurrent_kernel,
                                           unsigned B, unsigned H,
                                           float* __restrict__ dh_prev) {
  const size_t n = (size_t)B * H, stride = (size_t)gridDim.x * blockDim.x;
  const size_t G = 4 * (size_t)H;
  for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += stride) {
    const unsigned b = (unsigned)(idx / H), k = (unsigned)(idx % H);
    const float* dzr = dz + (size_t)b * G;
    const float* rk = recurrent_kernel + (size_t)k * G;
    float acc = 0.0f;
    for (size_t q = 0; q < G; ++q) acc += dzr[q] * rk[q];
    dh_prev[idx] = acc;
  }
}

// All three LSTM weight gradients from the saved h, cls and dz of all T
// steps. One thread per output, grid-stride over 4H*H + 4H*V + 4H:
//   i < 4HH                : d_recurrent_kernel[i]  (k = i / 4H, q = i % 4H)
//   4HH <= i < 4HH + 4HV   : d_kernel[i - 4HH]      (v = .. / 4H, q = .. % 4H)
//   then                   : d_bias[q]
// Each sums over (t, b) in the order t*B + b. OVERWRITES all three. h0
// [B, H] is h_{-1} (null: zeros, step 0 adds nothing to d_recurrent_kernel).
extern "C" __global__ void lstm_wgrad_bwd_f32(const float* __restrict__ h,
                                              const float* __restrict__ h0,  // nullable
                                              const unsigned* __restrict__ cls,
                                              const float* __restrict__ dz,
                                              unsigned T, unsigned B, unsigned H, unsigned V,
                                              float* __restrict__ d_kernel,
                                              float* __restrict__ d_recurrent_kernel,
                                              float* __restrict__ d_bias) {
  const size_t G = 4 * (size_t)H;
  const size_t n_rk = G * H, n_k = G * V, n = n_rk + n_k + G;
  const size_t steps = (size_t)T * B;
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    float acc = 0.0f;
    if (i < n_rk) {
      const size_t k = i / G, q = i % G;
      if (h0)
        for (size_t s = 0; s < B; ++s) acc += h0[s * H + k] * dz[s * G + q];
      // h_{-1} = 0 without h0: step 0 adds nothing.
      for (size_t s = B; s < steps; ++s) acc += h[(s - B) * H + k] * dz[s * G + q];
      d_recurrent_kernel[i] = acc;
    } else if (i < n_rk + n_k) {
      const size_t e = i - n_rk;
      const unsigned v = (unsigned)(e / G);
      const size_t q = e % G;
      for (size_t s = 0; s < steps; ++s)
        if (cls[s] == v) acc += dz[s * G + q];
      d_kernel[e] = acc;
    } else {
      const size_t q = i - n_rk - n_k;
      for (size_t s = 0; s < steps; ++s) acc += dz[s * G + q];
      d_bias[q] = acc;
    }
  }
}
