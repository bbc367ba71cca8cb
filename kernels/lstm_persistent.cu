// The persistent LSTM recurrence: ONE launch per direction per batch, looping
// over all T steps inside the kernel with the recurrent weights held on chip
// for the whole sequence. Same math, layouts and saved state as the per-step
// kernels in lstm.cu (read its header first); those stay the reference these
// are checked against (bit for bit in the forward, see below).
//
// Why this shape (DESIGN §5, §8): the job is latency-bound, 60 + 60 dependent
// steps per batch. Batch rows are independent in the recurrence, so a block
// owns `rows` (1..4) batch rows and the WHOLE recurrent_kernel, and never
// talks to another block: a step costs two __syncthreads, no cluster barrier,
// no grid barrier, no global-memory round trip on the critical path. fp32
// recurrent_kernel is 4H*H*4 bytes = 256 KiB at H = 128, more than the 227
// KiB of shared memory a block may have, so it is split: the first `ms`
// rows (forward) / the first `ms` columns of each gate (backward) live in
// shared memory and the last KREG in registers of the thread that uses them
// (KREG floats per thread, 4H threads: 112 KiB of registers at H = 128). The
// alternatives — splitting the weights across a thread-block cluster and
// exchanging h through distributed shared memory, or across co-resident
// blocks with a grid barrier — put an inter-SM synchronisation (cluster
// barrier: hundreds of ns; grid barrier over global atomics: ~1 µs) on every
// one of the 120 steps; with B = 128 the batch already fills 128 SMs with
// one row each, so nothing is gained by splitting a row's work. (Chosen by
// that structure; the GPU measurement is scripts/gpu-check.sh's.)
//
// Launch: blockDim.x = 4H (a multiple of 32, at most 512: H % 8 == 0,
// H <= 128), gridDim.x = ceil(B / rows), dynamic shared memory as
// src/gpu/lstm/persistent.rs computes it. ms = max(H - KREG, 0), a multiple
// of 4 (H % 8 == 0 and KREG % 4 == 0).
//
// Forward, thread col = q*H + j owns gate column col: it accumulates
// z[col] = sum_k h[k] * R[k, col] for each of its block's rows, in k order
// 0..H-1 exactly as lstm_cell_fwd_f32 does (rows k < ms from shared memory,
// then k >= ms from its registers), adds kernel[x, col] + bias[col] the same
// way, applies the gate's activation and writes gates[t, b, col]; after a
// barrier, thread j < H updates c and h of unit j (c in a register for the
// whole sequence). Same operations in the same order as the per-step
// kernel, so the results are the same bits (tests/lstm_persistent.rs checks
// it).
//
// Backward, thread (p, k), p = tid / H, k = tid % H: after threads j < H
// have computed dz[t, b, 4 gates of j] (exactly lstm_cell_bwd_f32's
// arithmetic, dc carried in a register), thread (p, k) sums
// dz[p*H + m] * R[k, p*H + m] over m (m < ms from shared memory, laid out
// transposed so a warp reads consecutive k, then m >= ms from registers);
// after a barrier thread k adds the four partial sums into dh_{t-1}[k]
// (((p0 + p1) + p2) + p3). lstm_dh_bwd_f32 sums in this order too, so the
// backward gives the per-step kernels' bits (tests/lstm_persistent.rs).
//
// Two forms, one template flag (SEQ), so the window form's code is exactly
// what it was before the sequence form existed (same PTX):
// - window form (`lstm_persistent[_h128]_{fwd,bwd}_f32`, the notebook's):
//   h_{-1} = c_{-1} = 0; the backward starts from dh_last = dh_{T-1} (one
//   loss at the last step) and writes only dz.
// - sequence form (`lstm_persistent[_h128]_seq_{fwd,bwd}_f32`: stream
//   training's loss at every step, a layer under another): the forward
//   starts from h0, c0 [B, H] (null: zeros; h0 is loaded into the shared
//   h_{t-1} before the first step, c0 into the cell registers); the
//   backward adds dy[t] [T, B, H] to dh_t at every step (dh_t = dh_t^rec +
//   dy[t], the CPU's order; dy is loaded a step ahead like the saved gates
//   at H = 128), starts from dh / dc = dh_T / dc_T and c_{-1} = c0, and
//   OVERWRITES dh / dc with dh_{-1} / dc_{-1} (one more partial sum at t = 0;
//   each element read at the start and written at the end by the same
//   thread, so dh / dc are in-out without a race). The final state of both
//   forms is step T-1 of h and c (no copy in the kernel).

#include "common.cuh"

// Rows (forward) / columns per gate (backward) of recurrent_kernel kept in
// registers by each thread: at H = 128, 56 of its 128 weights, so a step
// loads 72 weights from shared memory per thread instead of 128. 56 is the
// most that leaves the backward (which also carries the next step's saved
// state in registers) without spills at 128 registers (ptxas, sm_90).
#define KREG 56
// Most batch rows one block carries (the backward's prefetch registers).
#define MAX_ROWS 4

// H compile-time (HT > 0: the Keras job's 128) or a launch argument (HT =
// 0). A constant H lets ptxas fold every shared-memory offset into the
// load instruction: about 2.25 instructions per weight instead of 4.5
// (SASS of the inner loop, sm_90).
//
// SEQ (the sequence form, lstm_persistent*_seq_fwd_f32): h_{-1}, c_{-1} come
// from h0, c0 [B, H] (null: zeros, as in the window form). The window form
// (SEQ = false) is compiled exactly as before the sequence form existed.
//
// DENSE (lstm_persistent*_seq_dense_fwd_f32, a layer above the first; SEQ
// only): the input term of step t, row b, column col is zx[(t*B + b)*4H +
// col] (Z_x = X @ kernel + bias, kernels/gemm.cu) instead of the gathered
// kernel row plus bias; no corpus is read, no cls written, and xs is not
// used. The one-hot forms are compiled as before the dense one existed.
template <unsigned HT, bool SEQ, bool DENSE = false>
__device__ __forceinline__ void lstm_fwd_persistent(
    const unsigned long long* __restrict__ corpus_words, unsigned words_per_row,
    const unsigned* __restrict__ starts, const float* __restrict__ kernel,
    const float* __restrict__ zx,
    const float* __restrict__ recurrent_kernel, const float* __restrict__ bias, unsigned B,
    unsigned T, unsigned H_arg, unsigned V, unsigned rows, unsigned ms_arg,
    const float* __restrict__ h0, const float* __restrict__ c0,
    float* __restrict__ gates, float* __restrict__ c, float* __restrict__ h,
    unsigned* __restrict__ cls) {
  const unsigned H = HT ? HT : H_arg;
  const unsigned ms = HT ? (HT > KREG ? HT - KREG : 0) : ms_arg;
  extern __shared__ float smem[];
  const unsigned G = 4 * H, col = threadIdx.x;
  const unsigned b0 = blockIdx.x * rows;
  const unsigned nrows = min(rows, B - b0);
  float* rs = smem;                             // [ms][G]
  float* hs = rs + (size_t)ms * G;              // [rows][H]   h_{t-1}
  float* gs = hs + rows * H;                    // [rows][G]   activated gates
  unsigned* xs = (unsigned*)(gs + rows * G);    // [T][rows]   input classes

  for (unsigned i = col; i < ms * G; i += G) rs[i] = recurrent_kernel[i];
  float wreg[KREG];
#pragma unroll
  for (unsigned i = 0; i < KREG; ++i)
    wreg[i] = ms + i < H ? recurrent_kernel[(size_t)(ms + i) * G + col] : 0.0f;
  const float bcol = DENSE ? 0.0f : bias[col];
  // Every step's classes up front, so no corpus read is on a step's path.
  for (unsigned i = col; !DENSE && i < T * nrows; i += G) {
    const unsigned t = i / nrows, r = i % nrows;
    const size_t row = (size_t)starts[b0 + r] + t;
    const unsigned x = onehot_class(corpus_words + row * words_per_row, words_per_row, V);
    xs[t * rows + r] = x;
    cls[(size_t)t * B + b0 + r] = x;
  }
  float creg[MAX_ROWS];  // thread j < H: c of unit j, per row
#pragma unroll
  for (unsigned r = 0; r < MAX_ROWS; ++r) creg[r] = 0.0f;
  // The sequence form's initial state: thread j < H loads unit j of each
  // row (h_{-1} into hs, which the first step reads after the barrier).
  const bool has_h0 = SEQ && h0 != nullptr;
  if (SEQ && col < H) {
#pragma unroll
    for (unsigned r = 0; r < MAX_ROWS; ++r) {
      if (r < nrows) {
        const size_t o = (size_t)(b0 + r) * H + col;
        if (has_h0) hs[r * H + col] = h0[o];
        if (c0 != nullptr) creg[r] = c0[o];
      }
    }
  }
  __syncthreads();

  const unsigned q = col / H;
  for (unsigned t = 0; t < T; ++t) {
    for (unsigned r = 0; r < nrows; ++r) {
      const unsigned xr = DENSE ? 0u : xs[t * rows + r];
      // Issued before the sum, whose ~H FMAs hide its latency.
      const float xk = DENSE ? zx[((size_t)t * B + b0 + r) * G + col]
                       : xr < V ? kernel[(size_t)xr * G + col] : 0.0f;
      float acc = 0.0f;
      // h_{-1} = 0 (no h0): lstm_cell_fwd_f32 skips the sum at t = 0 too.
      if (t > 0 || has_h0) {
        const float* hr = hs + r * H;
#pragma unroll(HT ? 32 : 4)
        for (unsigned k = 0; k < ms; k += 4) {
          const float4 hv = *(const float4*)(hr + k);
          acc += hv.x * rs[(size_t)k * G + col];
          acc += hv.y * rs[(size_t)(k + 1) * G + col];
          acc += hv.z * rs[(size_t)(k + 2) * G + col];
          acc += hv.w * rs[(size_t)(k + 3) * G + col];
        }
#pragma unroll
        for (unsigned i = 0; i < KREG; i += 4) {
          if (ms + i < H) {
            const float4 hv = *(const float4*)(hr + ms + i);
            acc += hv.x * wreg[i];
            acc += hv.y * wreg[i + 1];
            acc += hv.z * wreg[i + 2];
            acc += hv.w * wreg[i + 3];
          }
        }
      }
      const float xb = DENSE ? xk : xr < V ? xk + bcol : NAN;
      const float z = acc + xb;
      const float a = q == 2 ? tanhf(z) : sigmoidf_(z);
      gs[r * G + col] = a;
      gates[((size_t)t * B + b0 + r) * G + col] = a;
    }
    __syncthreads();
    if (col < H) {
#pragma unroll
      for (unsigned r = 0; r < MAX_ROWS; ++r) {
        if (r < nrows) {
          const float* g = gs + r * G;
          const float gi = g[col], gf = g[H + col], gg = g[2 * H + col], go = g[3 * H + col];
          const float cn = gf * creg[r] + gi * gg;
          creg[r] = cn;
          const float hn = go * tanhf(cn);
          const size_t o = ((size_t)t * B + b0 + r) * H + col;
          c[o] = cn;
          h[o] = hn;
          hs[r * H + col] = hn;
        }
      }
    }
    __syncthreads();
  }
}

// SEQ (the sequence form, lstm_persistent*_seq_bwd_f32): a gradient dy[t]
// [T, B, H] arrives at every step and is added to the recurrent dh_t
// (dh_t = dh_t^rec + dy[t], the CPU's order); dh / dc [B, H] hold dh_T /
// dc_T on entry (null: zeros) and are OVERWRITTEN with dh_{-1} / dc_{-1}
// (the initial state's gradient: one more sum at t = 0) when not null;
// c_{-1} comes from c0 (null: zeros). The window form (SEQ = false: dh_last
// is dh_{T-1}, c_{-1} = 0, nothing but dz written) is compiled exactly as
// before the sequence form existed.
template <unsigned HT, bool SEQ>
__device__ __forceinline__ void lstm_bwd_persistent(
    const float* __restrict__ gates, const float* __restrict__ c,
    const float* __restrict__ dh_last, const float* __restrict__ recurrent_kernel, unsigned B,
    unsigned T, unsigned H_arg, unsigned rows, unsigned ms_arg, const float* __restrict__ c0,
    const float* __restrict__ dy, float* dh, float* dc, float* __restrict__ dz) {
  const unsigned H = HT ? HT : H_arg;
  const unsigned ms = HT ? (HT > KREG ? HT - KREG : 0) : ms_arg;
  extern __shared__ float smem[];
  const unsigned G = 4 * H, tid = threadIdx.x;
  const unsigned p = tid / H, k = tid % H;
  const unsigned b0 = blockIdx.x * rows;
  const unsigned nrows = min(rows, B - b0);
  // rt[(p*ms + m)*HP + k] = R[k, p*H + m]; the row stride HP = H + 1 makes
  // the transposing stores below conflict-free (the reads are anyway).
  const unsigned HP = H + 1;
  float* rt = smem;                          // [4][ms][HP]
  float* dhs = rt + (size_t)4 * ms * HP;     // [rows][H]   dh_t (16-byte aligned: ms % 4 == 0)
  float* dzs = dhs + rows * H;               // [rows][G]
  float* part = dzs + rows * G;              // [rows][4][H] partial sums of dh_{t-1}

  // Coalesced global reads (consecutive threads, consecutive columns).
  for (unsigned i = tid; i < H * G; i += G) {
    const unsigned kk = i / G, cc = i % G, pp = cc / H, m = cc % H;
    if (m < ms) rt[(size_t)(pp * ms + m) * HP + kk] = recurrent_kernel[i];
  }
  float wreg[KREG];
#pragma unroll
  for (unsigned i = 0; i < KREG; ++i)
    wreg[i] = ms + i < H ? recurrent_kernel[(size_t)k * G + p * H + ms + i] : 0.0f;

  // Threads j < H carry unit j: dc, and the saved gates and cells of the
  // NEXT step to run, loaded one step ahead so the loads' latency hides
  // behind the current step's sum.
  // The sequence form also carries the next step's dy; c_{-1} (c0) is
  // loaded when it becomes the next step's c_{t-1} (a register array for
  // it spills the generic-H build).
  float dcreg[MAX_ROWS], ni[MAX_ROWS], nf[MAX_ROWS], ng[MAX_ROWS], no[MAX_ROWS];
  float nc[MAX_ROWS], ncp[MAX_ROWS], ndy[MAX_ROWS];
  // dy is loaded a step ahead at H = 128 only: in the generic-H build the
  // extra registers would spill, so it loads dy where it is used.
  constexpr bool DY_AHEAD = SEQ && HT != 0;
  const unsigned j = tid;
  const auto c_first = [&](unsigned r) {  // c_{-1} of row r, unit j
    return SEQ && c0 != nullptr ? c0[(size_t)(b0 + r) * H + j] : 0.0f;
  };
  if (tid < H) {
#pragma unroll
    for (unsigned r = 0; r < MAX_ROWS; ++r) {
      dcreg[r] = 0.0f;
      if (r < nrows) {
        const size_t o = (size_t)(b0 + r) * H + j;
        if (SEQ) {
          dhs[r * H + j] = dh != nullptr ? dh[o] : 0.0f;
          if (dc != nullptr) dcreg[r] = dc[o];
        } else {
          dhs[r * H + j] = dh_last[o];
        }
        const size_t bg = (size_t)(T - 1) * B + b0 + r;
        const float* gr = gates + bg * G;
        ni[r] = gr[j];
        nf[r] = gr[H + j];
        ng[r] = gr[2 * H + j];
        no[r] = gr[3 * H + j];
        nc[r] = c[bg * H + j];
        ncp[r] = T > 1 ? c[(bg - B) * H + j] : c_first(r);
        if (DY_AHEAD) ndy[r] = dy[bg * H + j];
      }
    }
  }
  // No barrier needed here: thread j < H alone reads dhs[., j], which it wrote.

  for (unsigned t = T; t-- > 0;) {
    if (tid < H) {
#pragma unroll
      for (unsigned r = 0; r < MAX_ROWS; ++r) {
        if (r < nrows) {
          const size_t bg = (size_t)t * B + b0 + r;
          const float gi = ni[r], gf = nf[r], gg = ng[r], go = no[r];
          const float tc = tanhf(nc[r]);
          const float cp = ncp[r];
          const float dyt = !SEQ ? 0.0f : DY_AHEAD ? ndy[r] : dy[bg * H + j];
          const float dht = SEQ ? dhs[r * H + j] + dyt : dhs[r * H + j];
          const float dc = dcreg[r] + dht * go * (1.0f - tc * tc);
          const float zi = dc * gg * (gi * (1.0f - gi));
          const float zf = dc * cp * (gf * (1.0f - gf));
          const float zg = dc * gi * (1.0f - gg * gg);
          const float zo = dht * tc * (go * (1.0f - go));
          float* dzr = dz + bg * G;
          dzr[j] = zi;
          dzr[H + j] = zf;
          dzr[2 * H + j] = zg;
          dzr[3 * H + j] = zo;
          float* ds = dzs + r * G;
          ds[j] = zi;
          ds[H + j] = zf;
          ds[2 * H + j] = zg;
          ds[3 * H + j] = zo;
          dcreg[r] = dc * gf;
          if (t > 0) {
            const float* gr = gates + (bg - B) * G;
            ni[r] = gr[j];
            nf[r] = gr[H + j];
            ng[r] = gr[2 * H + j];
            no[r] = gr[3 * H + j];
            nc[r] = cp;
            ncp[r] = t > 1 ? c[(bg - 2 * (size_t)B) * H + j] : c_first(r);
            if (DY_AHEAD) ndy[r] = dy[(bg - B) * H + j];
          }
        }
      }
    }
    // dh_{-1} is needed only as the sequence form's dh output.
    const bool last = t == 0;
    if (last && !(SEQ && dh != nullptr)) break;
    __syncthreads();
    for (unsigned r = 0; r < nrows; ++r) {
      const float* dr = dzs + r * G + p * H;
      const float* rp = rt + (size_t)p * ms * HP + k;
      float acc = 0.0f;
#pragma unroll(HT ? 32 : 4)
      for (unsigned m = 0; m < ms; m += 4) {
        const float4 d = *(const float4*)(dr + m);
        acc += d.x * rp[(size_t)m * HP];
        acc += d.y * rp[(size_t)(m + 1) * HP];
        acc += d.z * rp[(size_t)(m + 2) * HP];
        acc += d.w * rp[(size_t)(m + 3) * HP];
      }
#pragma unroll
      for (unsigned i = 0; i < KREG; i += 4) {
        if (ms + i < H) {
          const float4 d = *(const float4*)(dr + ms + i);
          acc += d.x * wreg[i];
          acc += d.y * wreg[i + 1];
          acc += d.z * wreg[i + 2];
          acc += d.w * wreg[i + 3];
        }
      }
      part[(r * 4 + p) * H + k] = acc;
    }
    __syncthreads();
    if (tid < H) {
      for (unsigned r = 0; r < nrows; ++r) {
        const float* pr = part + r * 4 * H + tid;
        const float sum = ((pr[0] + pr[H]) + pr[2 * H]) + pr[3 * H];
        if (SEQ && last)
          dh[(size_t)(b0 + r) * H + tid] = sum;  // the thread that read dh[., tid]
        else
          dhs[r * H + tid] = sum;
      }
    }
    if (SEQ && last) break;
    // The next step's first phase reads dhs[., j] in thread j, which wrote
    // it, and writes dzs, which every thread finished reading before the
    // barrier above; part is next written after the next step's barrier.
  }
  if (SEQ && dc != nullptr && tid < H) {
    // Unrolled over MAX_ROWS, as every access to the per-row arrays: a
    // variable index would move them to local memory.
#pragma unroll
    for (unsigned r = 0; r < MAX_ROWS; ++r)
      if (r < nrows) dc[(size_t)(b0 + r) * H + tid] = dcreg[r];
  }
}

// The entry points: any H (a launch argument) and H = 128 (compile time),
// each in the window form and the sequence form (SEQ, `_seq_`).
// Forward: see the header. The launcher passes ms = max(H - KREG, 0).
#define LSTM_FWD_PARAMS                                                                        \
  const unsigned long long *__restrict__ corpus_words, unsigned words_per_row,                 \
      const unsigned *__restrict__ starts, const float *__restrict__ kernel,                   \
      const float *__restrict__ recurrent_kernel, const float *__restrict__ bias, unsigned B,  \
      unsigned T, unsigned H, unsigned V, unsigned rows, unsigned ms,                          \
      float *__restrict__ gates, float *__restrict__ c, float *__restrict__ h,                 \
      unsigned *__restrict__ cls
#define LSTM_FWD_ARGS(H0, C0) \
  corpus_words, words_per_row, starts, kernel, nullptr, recurrent_kernel, bias, B, T, H, V, rows, ms, H0, C0, gates, c, h, cls

extern "C" __global__ void __launch_bounds__(512, 1) lstm_persistent_fwd_f32(LSTM_FWD_PARAMS) {
  lstm_fwd_persistent<0, false>(LSTM_FWD_ARGS(nullptr, nullptr));
}

extern "C" __global__ void __launch_bounds__(512, 1)
    lstm_persistent_h128_fwd_f32(LSTM_FWD_PARAMS) {
  lstm_fwd_persistent<128, false>(LSTM_FWD_ARGS(nullptr, nullptr));
}

// The sequence form's forward: as the window form from the initial state
// h0, c0 [B, H] (either may be null: zeros). The final state (h_T, c_T) is
// step T-1 of h and c, as in the window form.
#define LSTM_SEQ_FWD_PARAMS                                                                    \
  const unsigned long long *__restrict__ corpus_words, unsigned words_per_row,                 \
      const unsigned *__restrict__ starts, const float *__restrict__ kernel,                   \
      const float *__restrict__ recurrent_kernel, const float *__restrict__ bias, unsigned B,  \
      unsigned T, unsigned H, unsigned V, unsigned rows, unsigned ms,                          \
      const float *__restrict__ h0, const float *__restrict__ c0, float *__restrict__ gates,   \
      float *__restrict__ c, float *__restrict__ h, unsigned *__restrict__ cls

extern "C" __global__ void __launch_bounds__(512, 1)
    lstm_persistent_seq_fwd_f32(LSTM_SEQ_FWD_PARAMS) {
  lstm_fwd_persistent<0, true>(LSTM_FWD_ARGS(h0, c0));
}

extern "C" __global__ void __launch_bounds__(512, 1)
    lstm_persistent_h128_seq_fwd_f32(LSTM_SEQ_FWD_PARAMS) {
  lstm_fwd_persistent<128, true>(LSTM_FWD_ARGS(h0, c0));
}

// The sequence form's forward of a layer with a dense input: zx [T, B, 4H]
// the precomputed input term (bias included) instead of the corpus, the
// kernel and the bias; no cls. Same launch as the one-hot forms (the plan's
// forward shared memory, whose classes part this form leaves unused).
#define LSTM_DENSE_FWD_PARAMS                                                                 \
  const float *__restrict__ zx, const float *__restrict__ recurrent_kernel, unsigned B,       \
      unsigned T, unsigned H, unsigned rows, unsigned ms, const float *__restrict__ h0,       \
      const float *__restrict__ c0, float *__restrict__ gates, float *__restrict__ c,         \
      float *__restrict__ h
#define LSTM_DENSE_FWD_ARGS \
  nullptr, 0, nullptr, nullptr, zx, recurrent_kernel, nullptr, B, T, H, 0, rows, ms, h0, c0, gates, c, h, nullptr

extern "C" __global__ void __launch_bounds__(512, 1)
    lstm_persistent_seq_dense_fwd_f32(LSTM_DENSE_FWD_PARAMS) {
  lstm_fwd_persistent<0, true, true>(LSTM_DENSE_FWD_ARGS);
}

extern "C" __global__ void __launch_bounds__(512, 1)
    lstm_persistent_h128_seq_dense_fwd_f32(LSTM_DENSE_FWD_PARAMS) {
  lstm_fwd_persistent<128, true, true>(LSTM_DENSE_FWD_ARGS);
}

// Backward through all T steps. dh_last [B, H] is dh_{T-1} (from the head);
// writes dz [T, B, 4H] (overwritten) for the weight-gradient kernels.
#define LSTM_BWD_PARAMS                                                                     \
  const float *__restrict__ gates, const float *__restrict__ c,                             \
      const float *__restrict__ dh_last, const float *__restrict__ recurrent_kernel,        \
      unsigned B, unsigned T, unsigned H, unsigned rows, unsigned ms, float *__restrict__ dz
#define LSTM_BWD_ARGS(C0, DY, DH, DC) \
  gates, c, dh_last, recurrent_kernel, B, T, H, rows, ms, C0, DY, DH, DC, dz

extern "C" __global__ void __launch_bounds__(512, 1) lstm_persistent_bwd_f32(LSTM_BWD_PARAMS) {
  lstm_bwd_persistent<0, false>(LSTM_BWD_ARGS(nullptr, nullptr, nullptr, nullptr));
}

extern "C" __global__ void __launch_bounds__(512, 1)
    lstm_persistent_h128_bwd_f32(LSTM_BWD_PARAMS) {
  lstm_bwd_persistent<128, false>(LSTM_BWD_ARGS(nullptr, nullptr, nullptr, nullptr));
}

// The sequence form's backward (see lstm_bwd_persistent): dy [T, B, H] the
// gradient at every step (not null), dh / dc [B, H] dh_T / dc_T in and
// dh_{-1} / dc_{-1} out (null: zero in, not written), c0 [B, H] c_{-1}
// (null: zeros). dz OVERWRITTEN.
#define LSTM_SEQ_BWD_PARAMS                                                                 \
  const float *__restrict__ gates, const float *__restrict__ c, const float *__restrict__ c0, \
      const float *__restrict__ dy, const float *__restrict__ recurrent_kernel, unsigned B,  \
      unsigned T, unsigned H, unsigned rows, unsigned ms, float *dh, float *dc,              \
      float *__restrict__ dz

extern "C" __global__ void __launch_bounds__(512, 1)
    lstm_persistent_seq_bwd_f32(LSTM_SEQ_BWD_PARAMS) {
  const float* dh_last = nullptr;  // the window form's input, not read
  lstm_bwd_persistent<0, true>(LSTM_BWD_ARGS(c0, dy, dh, dc));
}

extern "C" __global__ void __launch_bounds__(512, 1)
    lstm_persistent_h128_seq_bwd_f32(LSTM_SEQ_BWD_PARAMS) {
  const float* dh_last = nullptr;  // the window form's input, not read
  lstm_bwd_persistent<128, true>(LSTM_BWD_ARGS(c0, dy, dh, dc));
}
