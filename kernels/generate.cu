// Generation: the whole sampling loop in one launch, the device twin of the
// CPU generators, drawing the same Philox numbers: window mode is
// `IndexGenerator::generate` (src/sample/generator.rs) over the CPU
// reference's `predict`, stateful mode `stateful::generate_stateful`
// (src/stateful.rs).
//
// Window mode (generate_fwd_*, the notebook's): sequence j (one per
// strategy) starts from the seed tail (the last min(len, maxlen) seed
// indices, length L). For k = 0 .. N-1:
//   window  = the last T = min(L + k, maxlen) indices of tail ++ out[j, 0..k]
//   h       = LSTM over the window from zero state (no state is carried
//             from one character to the next)
//   p       = softmax(h @ dense_kernel + dense_bias)                    f32
//   u       = Philox(seed).uniform_f32(Purpose::Sample, stream + j, k)
//   out[j,k]= draw(p, strategy_j, u), appended to the window
// Stateful mode (generate_stateful_*, char-rnn's): seed_tail is the whole
// seed (any L >= 1, maxlen plays no part):
//   (h, c)  = LSTM over the seed from zero state              L steps, once
//   for k = 0 .. N-1:  p, u, out[j,k] as above from h;
//                      (h, c) = LSTM(out[j,k], h, c)          one step (not after the last)
// L + N - 1 steps in all where window mode takes up to N * maxlen.
//
// Both with the LSTM step z = h @ recurrent_kernel + (kernel[x_t] + bias), gate
// order i, f, c(g), o, and the softmax as src/cpu forward::head computes it:
// log_z = max + log(sum exp(l - max)), p = exp(l - log_z). The draw is
// strategy::draw exactly, in f64: Temperature(T) reweights
// w_v = exp(log(p_v) / T) (0 for p_v <= 0; the max-shifted form if every
// weight underflows), normalises w_v / sum, and walks the cumulative sum left
// to right for the first index whose running sum exceeds u, never returning an
// index of zero weight; Greedy is the first largest p; Uniform floor(u * V)
// clamped to V - 1.
//
// Layouts (row-major, Keras): kernel [V, 4H], recurrent_kernel [H, 4H], bias
// [4H], dense_kernel [H, V], dense_bias [V]; seed_tail [L] u32 class indices
// (window: 1 <= L <= maxlen; stateful: the whole seed, read from global
// memory once per index);
// strategy [S] f64, one code per sequence: T > 0 a temperature, 0 greedy,
// -1 (any value < 0) uniform; out [S, N] u32 class indices (j*N + k).
//
// Decisions:
// - One block per sequence (grid.x = S): the sequences are independent, and
//   the characters of one are a dependent chain (each step needs the whole
//   previous h, each draw the whole softmax), so a block loops over all
//   steps and characters with block barriers in between; a grid-wide
//   barrier per step would cost more than the step. The launcher sizes the
//   block to cover 4H (and V) threads. All four temperatures are one launch.
// - One template for both modes: the LSTM step (lstm_step), the head +
//   softmax + draw (head_draw) and the weights on chip are shared; only the
//   loop that feeds the steps differs. Stateful carries (h, c) in shared
//   memory from one character to the next, which is why it fits the same
//   one-block-per-sequence shape.
// - Threads over the 4H pre-activations for the recurrent product (each reads
//   one column of recurrent_kernel, coalesced across the warp), then threads
//   over the H units for the state update: two barriers per time step.
// - All state lives in dynamic shared memory (launcher: 8V + 4(6H + V +
//   R + 32) bytes, R = maxlen in window mode, 1 stateful): scratch [32] f32
//   (block reductions) | h [H] | c [H] | gates [4H] | w [V] f64 | p [V] f32 |
//   ring [R] u32 (stateful: the last drawn index, the next step's input).
//   No static shared memory: the launcher's request is the block's whole
//   footprint, which is what the driver checks against the opt-in limit.
//   The window is a ring of the last maxlen indices: index number n of
//   tail ++ out sits in ring[n % maxlen], so appending the newest character
//   overwrites the one that just left the window.
// - recurrent_kernel is held on chip for the whole launch, as in the
//   persistent training kernels (lstm_persistent.cu): its first `ms` rows in
//   shared memory after the state above, the next `kr` (<= KREG_GEN) in
//   registers of the thread owning that column (only when the block covers
//   all 4H columns, one each), any rest read from global memory (a model
//   too large for shared memory). The launcher picks ms and kr. At H = 128
//   that is 72 rows in shared memory (144 KiB) and 56 in registers: a step
//   reads no weight from L2, where reading all 256 KiB from L2 per step per
//   block bounded the kernel. The sum still runs over k = 0..H-1 in order,
//   so the bits are those of the all-global version. dense_kernel stays in
//   global memory (read once per character). Window mode costs T steps per
//   character (24,000 dependent steps for 400 characters at maxlen 60), the
//   price of matching the notebook's predictions exactly; stateful mode one
//   (459 steps for the same 400 characters after a 60-character seed).
// - The f64 weights exp(log p / T) are computed in parallel; their sum, the
//   normalisation and the cumulative walk (draw_index in common.cuh, shared
//   with a test kernel that checks it against strategy::draw) run on thread
//   0 alone, because the CPU's order of that f64 sum is what makes the two
//   draw the same index.
// - The parameters are five pointers, like the other kernels; the launcher
//   slices them out of the flat ParamLayout buffer (src/model/params.rs), so
//   the layout is written down in one place only.
// - Invalid input is the launcher's to reject (empty seed, index >= V, a
//   temperature that is not finite and > 0). Non-finite parameters are not
//   detected here (the CPU reports BadPrediction); the draw then follows
//   strategy::draw's rules for degenerate probabilities and never reads out
//   of bounds.
// - Full-precision expf / tanhf / logf and f64 log / exp (no fast math). The
//   probabilities differ from the CPU's in the last bits (the CPU's f32
//   activations are ~2 ulp polynomials and its GEMM sums in another order),
//   so the two pick different characters only when u lies within rounding of
//   a cumulative boundary (or two probabilities tie, for greedy).

#include "common.cuh"

// Rows of recurrent_kernel per thread in registers, as the training
// kernels; blocks of at most 512 threads (V > 512 runs the strided loops)
// leave 128 registers, and 56 rows fit in them without spills (ptxas, sm_90).
#define KREG_GEN 56

// Where one block keeps its model state in shared memory (the header's
// layout); the window ring and the weight rows are the caller's.
struct GenState {
  float* scratch;  // [32] block reductions
  float* hs;       // [H]
  float* cs;       // [H]
  float* gates;    // [4H] activated i, f, g, o
  double* w;       // [V] temperature weights
  float* p;        // [V] logits, then probabilities
};

// Step t (counted from the zero state) of the block on input index x:
// (h, c) <- LSTM(x, h, c); at t = 0, h = c = 0 (the product is skipped,
// z = kernel[x] + bias).
// Two barriers; on return hs and cs hold the new state for every thread.
template <unsigned HT>
__device__ __forceinline__ void lstm_step(
    const GenState& st, const float* rs, const float (&wreg)[KREG_GEN],
    const float* __restrict__ kernel,
    const float* __restrict__ recurrent_kernel, const float* __restrict__ bias, unsigned H,
    unsigned ms, unsigned kr, unsigned x, unsigned t) {
  const unsigned tid = threadIdx.x, nt = blockDim.x;
  const unsigned G = 4 * H;
  const float* hs = st.hs;
  for (unsigned g = tid; g < G; g += nt) {
    float acc = 0.0f;
    if (t > 0) {
      // Column g: shared rows, register rows (g == tid: this thread's
      // own column), global rows, in row order.
      unsigned i = 0;
      const float* sc = rs + g;
      // Four rows per h load; the same sequential sum.
#pragma unroll(HT ? 32 : 1)
      for (; i + 4 <= ms; i += 4, sc += 4 * G) {
        const float4 hv = *(const float4*)(hs + i);
        acc += hv.x * sc[0];
        acc += hv.y * sc[G];
        acc += hv.z * sc[2 * G];
        acc += hv.w * sc[3 * G];
      }
      for (; i < ms; ++i, sc += G) acc += hs[i] * *sc;
      if (g == tid) {
        if (HT) {  // ms % 4 == 0: h four rows at a time
#pragma unroll
          for (unsigned r = 0; r < KREG_GEN; r += 4) {
            const float4 hv = *(const float4*)(hs + ms + r);
            acc += hv.x * wreg[r];
            acc += hv.y * wreg[r + 1];
            acc += hv.z * wreg[r + 2];
            acc += hv.w * wreg[r + 3];
          }
        } else {
#pragma unroll
          for (unsigned r = 0; r < KREG_GEN; ++r)
            if (r < kr) acc += hs[ms + r] * wreg[r];
        }
        i += kr;
      }
      const float* col = recurrent_kernel + (size_t)i * G + g;
      for (; i < H; ++i, col += G) acc += hs[i] * *col;
    }
    const float z = acc + (kernel[(size_t)x * G + g] + bias[g]);
    st.gates[g] = (g >= 2 * H && g < 3 * H) ? tanhf(z) : sigmoidf_(z);
  }
  __syncthreads();
  for (unsigned unit = tid; unit < H; unit += nt) {
    const float c_prev = t > 0 ? st.cs[unit] : 0.0f;
    const float c = st.gates[H + unit] * c_prev + st.gates[unit] * st.gates[2 * H + unit];
    st.cs[unit] = c;
    st.hs[unit] = st.gates[3 * H + unit] * tanhf(c);
  }
  __syncthreads();
}

// Character k of sequence j from the block's h: head, softmax, draw. The
// drawn index is thread 0's return value (the others get 0); the caller
// stores it where its mode keeps it and ends with a barrier.
__device__ __forceinline__ unsigned head_draw(
    const GenState& st, const float* __restrict__ dense_kernel,
    const float* __restrict__ dense_bias, unsigned H, unsigned V, double code,
    unsigned long long seed, unsigned seq_stream, unsigned k) {
  const unsigned tid = threadIdx.x, nt = blockDim.x;
  float* p = st.p;
  // Head: logits, stable softmax (as src/cpu forward::head).
  float local_max = -INFINITY;
  for (unsigned v = tid; v < V; v += nt) {
    float acc = 0.0f;
    const float* col = dense_kernel + v;
    for (unsigned i = 0; i < H; ++i, col += V) acc += st.hs[i] * *col;
    const float l = acc + dense_bias[v];
    p[v] = l;
    local_max = fmaxf(local_max, l);
  }
  const float max = block_reduce_max(local_max, st.scratch);
  float local_sum = 0.0f;
  for (unsigned v = tid; v < V; v += nt) local_sum += expf(p[v] - max);
  const float log_z = max + logf(block_reduce_sum(local_sum, st.scratch));
  for (unsigned v = tid; v < V; v += nt) {
    const float pv = expf(p[v] - log_z);
    p[v] = pv;
    if (code > 0.0) st.w[v] = temperature_weight(pv, code);
  }
  __syncthreads();

  if (tid != 0) return 0;
  const float u = philox_uniform_f32(seed, CHARLSTM_PURPOSE_SAMPLE, seq_stream, k);
  return draw_index(p, st.w, V, code, u);
}

// H compile-time (HT = 128, the Keras job, with ms = 72 and kr = 56: the
// launcher picks this build only then) or launch arguments (HT = 0). A
// constant H folds every shared-memory offset into the loads, as in
// lstm_persistent.cu. STATEFUL picks the loop over steps; the step, the
// head and the draw are the same code in both modes.
template <unsigned HT, bool STATEFUL>
__device__ __forceinline__ void generate_fwd(
    const float* __restrict__ kernel, const float* __restrict__ recurrent_kernel,
    const float* __restrict__ bias, const float* __restrict__ dense_kernel,
    const float* __restrict__ dense_bias, unsigned H_arg, unsigned V,
    const unsigned* __restrict__ seed_tail, unsigned L, unsigned maxlen,
    const double* __restrict__ strategy, unsigned S, unsigned N, unsigned long long seed,
    unsigned stream, unsigned ms_arg, unsigned kr_arg, unsigned* __restrict__ out) {
  const unsigned H = HT ? HT : H_arg;
  const unsigned ms = HT ? HT - KREG_GEN : ms_arg;
  const unsigned kr = HT ? KREG_GEN : kr_arg;
  // Stateful mode keeps no window: one slot for the last drawn index.
  const unsigned ring_len = STATEFUL ? 1 : maxlen;
  // The base is 16-byte aligned and scratch is 128 bytes, so h[i..i+4]
  // loads as a float4 for i % 4 == 0; 128 + 24H bytes before w keep it
  // 8-byte aligned. scratch first keeps every offset of the H = 128 build
  // a compile-time constant (one live pointer fewer in the loop).
  extern __shared__ double smem[];
  float* scratch = (float*)smem;        // [32] block reductions
  float* hs = scratch + 32;             // [H]
  float* cs = hs + H;                   // [H]
  float* gates = cs + H;                // [4H] activated i, f, g, o
  double* w = (double*)(gates + 4 * H); // [V]
  float* p = (float*)(w + V);           // [V] logits, then probabilities
  unsigned* ring = (unsigned*)(p + V);  // [maxlen] window, or [1] last drawn (stateful)
  // [ms][4H] rows 0..ms-1 of recurrent_kernel: ring + ring_len, written as
  // one byte offset from the base, with which ptxas fits the H = 128 window
  // build in 128 registers (from ring + ring_len it spilled 24 bytes).
  float* rs = (float*)((char*)smem + 4 * (32 + 6 * H) + 12 * V + 4 * ring_len);
  const GenState st{scratch, hs, cs, gates, w, p};

  const unsigned j = blockIdx.x;
  if (j >= S) return;  // uniform per block: safe before the barriers
  const unsigned tid = threadIdx.x, nt = blockDim.x;
  const unsigned G = 4 * H;
  const double code = strategy[j];
  const unsigned seq_stream = stream + j;  // wraps in u32, as the CPU's wrapping_add

  if (!STATEFUL)
    for (unsigned n = tid; n < L; n += nt) ring[n] = seed_tail[n];
  for (unsigned i = tid; i < ms * G; i += nt) rs[i] = recurrent_kernel[i];
  // kr > 0 only when nt >= G (the launcher): thread g < G owns column g.
  float wreg[KREG_GEN];
#pragma unroll
  for (unsigned r = 0; r < KREG_GEN; ++r)
    wreg[r] = r < kr && tid < G ? recurrent_kernel[(size_t)(ms + r) * G + tid] : 0.0f;
  __syncthreads();

  if (STATEFUL) {
    // Position n of seed ++ out: the seed's from global memory, then the
    // last drawn index. Once the seed is read (n >= L - 1), every step is
    // followed by a draw; the last draw needs no step after it.
    for (unsigned n = 0;; ++n) {
      const unsigned x = n < L ? seed_tail[n] : ring[0];
      lstm_step<HT>(st, rs, wreg, kernel, recurrent_kernel, bias, H, ms, kr, x, n);
      if (n + 1 < L) continue;
      const unsigned k = n + 1 - L;
      const unsigned next = head_draw(st, dense_kernel, dense_bias, H, V, code, seed, seq_stream, k);
      if (tid == 0) {
        out[(size_t)j * N + k] = next;
        ring[0] = next;  // the next step's input
      }
      __syncthreads();
      if (k + 1 == N) break;
    }
  } else {
    for (unsigned k = 0; k < N; ++k) {
      const unsigned T = min(L + k, maxlen);
      const unsigned first = L + k - T;  // number (in tail ++ out) of the window's first index
      for (unsigned t = 0; t < T; ++t)
        lstm_step<HT>(st, rs, wreg, kernel, recurrent_kernel, bias, H, ms, kr,
                      ring[(first + t) % maxlen], t);
      const unsigned next = head_draw(st, dense_kernel, dense_bias, H, V, code, seed, seq_stream, k);
      if (tid == 0) {
        out[(size_t)j * N + k] = next;
        ring[(L + k) % maxlen] = next;  // the index that just left the window, if full
      }
      __syncthreads();
    }
  }
}

#define GENERATE_PARAMS                                                                        \
  const float *__restrict__ kernel, const float *__restrict__ recurrent_kernel,                \
      const float *__restrict__ bias, const float *__restrict__ dense_kernel,                  \
      const float *__restrict__ dense_bias, unsigned H, unsigned V,                            \
      const unsigned *__restrict__ seed_tail, unsigned L, unsigned maxlen,                     \
      const double *__restrict__ strategy, unsigned S, unsigned N, unsigned long long seed,     \
      unsigned stream, unsigned ms, unsigned kr, unsigned *__restrict__ out
#define GENERATE_ARGS \
  kernel, recurrent_kernel, bias, dense_kernel, dense_bias, H, V, seed_tail, L, maxlen, strategy, S, N, seed, stream, ms, kr, out

extern "C" __global__ void __launch_bounds__(512, 1) generate_fwd_f32(GENERATE_PARAMS) {
  generate_fwd<0, false>(GENERATE_ARGS);
}

extern "C" __global__ void __launch_bounds__(512, 1) generate_fwd_h128_f32(GENERATE_PARAMS) {
  generate_fwd<128, false>(GENERATE_ARGS);
}

extern "C" __global__ void __launch_bounds__(512, 1) generate_stateful_f32(GENERATE_PARAMS) {
  generate_fwd<0, true>(GENERATE_ARGS);
}

extern "C" __global__ void __launch_bounds__(512, 1) generate_stateful_h128_f32(GENERATE_PARAMS) {
  generate_fwd<128, true>(GENERATE_ARGS);
}
