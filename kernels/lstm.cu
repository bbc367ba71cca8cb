// The LSTM cell, one time step per launch, forward and backward (BPTT), and
// the weight gradients: the device twin of src/cpu forward::recurrence and
// backward::{recurrence_backward, weight_grads}. They run the recurrence
// where the persistent kernels (lstm_persistent.cu) do not fit (H > 128),
// and both give the same bits, checked against each other and against the
// CPU.
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
// - The recurrent products run as small tiled GEMMs with the cell fused in
//   (forward) and the four per-gate partial sums (backward): a block of
//   LS_THREADS threads owns LS_UNITS units (one per lane) of LS_BLOCK_ROWS
//   batch rows (LS_ROWS per warp-row group, per thread); each chunk of
//   LS_KC reduction indices of h_{t-1} / dz and of recurrent_kernel is
//   staged in shared memory (the next chunk fetched into registers while
//   this one is multiplied), so every weight is read from memory once per
//   block and reused over the block's rows. Grid x = ceil(H / LS_UNITS),
//   y = ceil(B / LS_BLOCK_ROWS); exactly LS_THREADS threads (2026-12-06:
//   the first GPU run found the one-thread-per-output form 4-10x slower
//   than cuDNN at H = 256, lstm_dh_bwd_f32 reading recurrent_kernel rows
//   4H floats apart in consecutive threads).
// - Two rows a thread, four warps a block, not four rows and two warps: at
//   H = 256, B = 128 the grid is 128 blocks, about one per SM, and a step
//   is as long as one warp's instruction stream. Four warps keep all four
//   schedulers of the SM issuing, each warp with 8 multiply-adds and 5
//   shared loads per staged index (forward) instead of 16 and 5, and half
//   the staging each: about 1.6x shorter, for about 20% more instructions
//   in all (which counts only where many blocks share an SM, H >= 1024).
// - The summation orders are the persistent kernels' (lstm_persistent.cu),
//   so both paths give the same bits: forward, z = (sum over k = 0..H-1 in
//   order of h_{t-1}[k] * R[k, col]) + input term; backward, four partial
//   sums p = 0..3 over m = 0..H-1 in order of dz[p*H + m] * R[k, p*H + m],
//   added ((p0 + p1) + p2) + p3.
// - Every output is OVERWRITTEN; nothing accumulates across launches except
//   the state the caller threads through (h_prev, c_prev, dc).
// - The weight gradients are one kernel after the recurrence with one thread
//   per output element summing over (t, b) in the CPU's order k = t*B + b:
//   deterministic and race-free, no atomics (d_kernel is a gather by class
//   over the saved cls, not a scatter). It is the reference: the trainer
//   runs the split, tiled kernels/wgrad.cu, checked against it.
// - Full-precision expf / tanhf (no fast math).

#include "common.cuh"

// Tiling of the per-step recurrent products (see Decisions above).
#define LS_UNITS 32        // units per block, one per lane
#define LS_ROWS 2          // batch rows per thread (one float2 of staged rows)
#define LS_GROUPS 4        // warps per block, each its own LS_ROWS rows
#define LS_THREADS 128     // blockDim.x = LS_UNITS * LS_GROUPS
#define LS_BLOCK_ROWS 8    // batch rows per block = LS_ROWS * LS_GROUPS
#define LS_KC 32           // reduction indices staged per chunk
// Row strides (floats) of the staged rows' operand: a multiple of 4 (16-byte
// rows, so a thread's float2 of rows is aligned) that is not a multiple of
// 32, so the transposing store (consecutive threads, consecutive k / m)
// spreads over 8 banks instead of 4 (forward, 8 rows) or 1 (backward, 4 x 8
// rows).
#define LS_XF_STRIDE 12    // forward: LS_BLOCK_ROWS + 4
#define LS_XB_STRIDE 36    // backward: 4 * LS_BLOCK_ROWS + 4
// The backward's staged weights, ws[mm * LS_WB_STRIDE + q * LS_WB_Q + u]:
// both strides odd mod 32 (137 = 9, 33 = 1), so the transposing stores of
// either load form (consecutive lanes: consecutive mm, or consecutive
// float4s of a row across the four gates) hit 32 distinct banks.
#define LS_WB_Q 33         // LS_UNITS + 1
#define LS_WB_STRIDE 137   // >= 4 * LS_WB_Q, 9 mod 32
static_assert(LS_THREADS == LS_UNITS * LS_GROUPS && LS_BLOCK_ROWS == LS_ROWS * LS_GROUPS,
              "the tile's derived sizes");
static_assert(LS_ROWS == 2, "a thread's rows are one float2 of the staged rows");
static_assert(LS_UNITS == 32, "one unit per lane");
static_assert(LS_WB_Q > LS_UNITS && LS_WB_STRIDE >= 4 * LS_WB_Q, "the backward's weight rows");
static_assert(LS_XF_STRIDE >= LS_BLOCK_ROWS && LS_XF_STRIDE % 4 == 0 &&
                  LS_XB_STRIDE >= 4 * LS_BLOCK_ROWS && LS_XB_STRIDE % 4 == 0,
              "a staged row holds the block's rows, 16-byte aligned");

// Staged values per thread and chunk: the rows' operand ([LS_BLOCK_ROWS] x
// LS_KC, times 4 gates in the backward) and the recurrent_kernel tile
// (LS_KC x 4 gates x LS_UNITS).
#define LS_X_FWD (LS_BLOCK_ROWS * LS_KC / LS_THREADS)
#define LS_X_BWD (4 * LS_BLOCK_ROWS * LS_KC / LS_THREADS)
#define LS_W (4 * LS_UNITS * LS_KC / LS_THREADS)

// The chunk loop of both tiled kernels: chunk c's values are fetched into
// registers (fetch(k0)) while chunk c-1 is multiplied, stored to shared
// memory between two barriers (store()), then multiplied (step(kk) for
// each staged index, in order, the last chunk cut at H).
template <class Fetch, class Store, class Step>
__device__ __forceinline__ void staged_chunks(unsigned H, Fetch fetch, Store store, Step step) {
  fetch(0u);
  for (unsigned k0 = 0; k0 < H; k0 += LS_KC) {
    __syncthreads();  // every thread is done reading the previous chunk
    store();
    __syncthreads();
    if (k0 + LS_KC < H) fetch(k0 + LS_KC);  // in flight during the FMAs below
    if (H - k0 >= LS_KC) {
#pragma unroll
      for (unsigned kk = 0; kk < LS_KC; ++kk) step(kk);
    } else {
      for (unsigned kk = 0; kk < H - k0; ++kk) step(kk);
    }
  }
}

// dst[0..4) = the four lanes of v (a float4 weight load into prefetch registers).
__device__ __forceinline__ void unpack4(float* dst, float4 v) {
  dst[0] = v.x;
  dst[1] = v.y;
  dst[2] = v.z;
  dst[3] = v.w;
}

// One step forward. h_prev / c_prev null means zeros (t = 0). Thread (b, j)
// writes gates[b, q*H + j] for q = 0..3, c[b, j], h[b, j]; thread (b, 0) also
// writes cls[b]. DENSE (lstm_cell_dense_fwd_f32, a layer above the first):
// the input term is zx[b, q*H + j] (step t of the precomputed
// Z_x = X @ kernel + bias [T, B, 4H], kernels/gemm.cu) instead of the
// gathered kernel row plus bias, and nothing is decoded (no corpus, no cls).
//
// Block (blockIdx.x, blockIdx.y): units j0 = blockIdx.x * LS_UNITS + lane,
// rows b0 = blockIdx.y * LS_BLOCK_ROWS + group * LS_ROWS + r. Chunk k0:
// xs[kk][row] = h_{t-1}[b0 + row, k0 + kk], ws[kk][q*LS_UNITS + u] =
// R[k0 + kk, q*H + j0 + u] (xs's rows padded to LS_XF_STRIDE); a thread's
// element e of either is laid out so consecutive threads read consecutive
// global addresses (e is ws's own index). Out-of-range elements stage as
// zero and are never multiplied: the inner loop stops at H. Where H is a
// multiple of LS_KC (every tile and chunk whole) and recurrent_kernel is
// 16-byte aligned, the weight tile is loaded as float4s (4x fewer load
// instructions, no bounds checks): same values, same bits.
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
  __shared__ __align__(16) float xs[LS_KC][LS_XF_STRIDE];
  __shared__ __align__(16) float ws[LS_KC * 4 * LS_UNITS];
  const size_t G = 4 * (size_t)H;
  const unsigned tid = threadIdx.x, lane = tid % LS_UNITS, grp = tid / LS_UNITS;
  const unsigned j0 = blockIdx.x * LS_UNITS, rb = blockIdx.y * LS_BLOCK_ROWS;
  const unsigned j = j0 + lane;
  float acc[LS_ROWS][4];
#pragma unroll
  for (int r = 0; r < LS_ROWS; ++r)
#pragma unroll
    for (int q = 0; q < 4; ++q) acc[r][q] = 0.0f;

  if (h_prev) {
    const bool vec = H % LS_KC == 0 && ((size_t)recurrent_kernel & 15) == 0;
    float px[LS_X_FWD], pw[LS_W];
    auto fetch = [&](unsigned k0) {
#pragma unroll
      for (int i = 0; i < LS_X_FWD; ++i) {
        const unsigned e = tid + i * LS_THREADS, row = e / LS_KC, k = k0 + e % LS_KC;
        const unsigned b = rb + row;
        px[i] = b < B && k < H ? h_prev[(size_t)b * H + k] : 0.0f;
      }
      if (vec) {
        // float4 v of the tile: row v / 8 = kk * 4 + q, units 4 * (v % 8) ..
#pragma unroll
        for (int i = 0; i < LS_W / 4; ++i) {
          const unsigned v = tid + i * LS_THREADS, row = v / (LS_UNITS / 4);
          unpack4(pw + 4 * i, *(const float4*)(recurrent_kernel + (size_t)(k0 + row / 4) * G +
                                               row % 4 * H + j0 + v % (LS_UNITS / 4) * 4));
        }
        return;
      }
#pragma unroll
      for (int i = 0; i < LS_W; ++i) {
        const unsigned e = tid + i * LS_THREADS, u = e % LS_UNITS;
        const unsigned q = e / LS_UNITS % 4, k = k0 + e / (4 * LS_UNITS);
        pw[i] = k < H && j0 + u < H ? recurrent_kernel[(size_t)k * G + q * H + j0 + u] : 0.0f;
      }
    };
    auto step = [&](unsigned kk) {
      const float2 hv = *(const float2*)&xs[kk][grp * LS_ROWS];
      const float hr[LS_ROWS] = {hv.x, hv.y};
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const float w = ws[(kk * 4 + q) * LS_UNITS + lane];
#pragma unroll
        for (int r = 0; r < LS_ROWS; ++r) acc[r][q] += hr[r] * w;
      }
    };
    auto store = [&]() {
#pragma unroll
      for (int i = 0; i < LS_X_FWD; ++i) {
        const unsigned e = tid + i * LS_THREADS;
        xs[e % LS_KC][e / LS_KC] = px[i];
      }
      if (vec) {
#pragma unroll
        for (int i = 0; i < LS_W / 4; ++i)
          ((float4*)ws)[tid + i * LS_THREADS] =
              make_float4(pw[4 * i], pw[4 * i + 1], pw[4 * i + 2], pw[4 * i + 3]);
      } else {
#pragma unroll
        for (int i = 0; i < LS_W; ++i) ws[tid + i * LS_THREADS] = pw[i];
      }
    };
    staged_chunks(H, fetch, store, step);
  }

#pragma unroll
  for (int r = 0; r < LS_ROWS; ++r) {
    const unsigned b = rb + grp * LS_ROWS + r;
    if (b >= B || j >= H) continue;
    const size_t idx = (size_t)b * H + j;
    unsigned x = 0;
    if (!DENSE) {
      const size_t row = (size_t)starts[b] + t;
      x = onehot_class(corpus_words + row * words_per_row, words_per_row, V);
      if (j == 0) cls[b] = x;
    }
    float z[4];
#pragma unroll
    for (unsigned q = 0; q < 4; ++q) {
      const float xb = DENSE      ? zx[(size_t)b * G + q * H + j]
                       : x < V    ? kernel[x * G + q * H + j] + bias[q * H + j]
                                  : NAN;
      z[q] = acc[r][q] + xb;
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

// The cell backward of element (b, j) = idx of one step, given dh_t (dy
// added) and dc_{t+1}: writes dz[b, 4 gates of j] and dc_prev[idx]. One
// body for lstm_cell_bwd_f32 and the fused lstm_dh_cell_bwd_f32, so both
// give the same bits.
__device__ __forceinline__ void cell_bwd_at(const float* __restrict__ gates,
                                            const float* __restrict__ c,
                                            const float* __restrict__ c_prev, float dht,
                                            float dc_next, unsigned b, unsigned j, unsigned H,
                                            float* __restrict__ dz, float* dc_prev) {
  const size_t G = 4 * (size_t)H, idx = (size_t)b * H + j;
  const float* gr = gates + (size_t)b * G;
  const CellGrads g = lstm_cell_grads(gr[j], gr[H + j], gr[2 * H + j], gr[3 * H + j], c[idx],
                                      c_prev ? c_prev[idx] : 0.0f, dht, dc_next);
  float* dzr = dz + (size_t)b * G;
  dzr[j] = g.zi;
  dzr[H + j] = g.zf;
  dzr[2 * H + j] = g.zg;
  dzr[3 * H + j] = g.zo;
  dc_prev[idx] = g.dc_prev;
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
  for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += stride) {
    const unsigned b = (unsigned)(idx / H), j = (unsigned)(idx % H);
    const float dht = dy ? dh[idx] + dy[idx] : dh[idx];
    cell_bwd_at(gates, c, c_prev, dht, dc_next ? dc_next[idx] : 0.0f, b, j, H, dz, dc_prev);
  }
}

// dh_prev[b, k] = ((p_0 + p_1) + p_2) + p_3 with p_q = sum over m = 0..H-1
// in order of dz[b, q*H + m] * recurrent_kernel[k, q*H + m]: the persistent
// backward's order. Tiled as the forward: lane = unit k, LS_ROWS rows a
// thread; chunk m0 stages xs[mm][q*LS_BLOCK_ROWS + row] = dz[b0 + row,
// q*H + m0 + mm] (rows padded to LS_XB_STRIDE) and ws[mm*LS_WB_STRIDE +
// q*LS_WB_Q + u] = R[k0 + u, q*H + m0 + mm], the weights as float4s where
// the forward loads them so. Overwrites dh_prev.
//
// FUSED (lstm_dh_cell_bwd_f32, steps t = T-1 .. 1 of the per-step
// backward): instead of writing dh_{t-1}, the thread that summed element
// (b, k) of it runs step t-1's cell backward on it at once (cell_bwd_at,
// the same bits as lstm_cell_bwd_f32): dh = dh_{t-1} (+ dy[b, k] of step
// t-1 when dy is set), dc read and overwritten in place (dc_t in, dc_{t-1}
// out, element (b, k) by its one thread), dz_prev [B, 4H] = dz of step
// t-1, gates / c / c_prev step t-1's (c_prev null at t-1 = 0 without c0).
// Every element a thread reads outside the tile's reduction is its own,
// so blocks need nothing from each other within a launch; the next launch
// reads dz_prev whole. A backward step is then one launch, not two.
template <bool FUSED>
__device__ __forceinline__ void lstm_dh_bwd(const float* __restrict__ dz,
                                            const float* __restrict__ recurrent_kernel,
                                            unsigned B, unsigned H, float* __restrict__ dh_prev,
                                            const float* __restrict__ gates,
                                            const float* __restrict__ c,
                                            const float* __restrict__ c_prev,
                                            const float* __restrict__ dy, float* dc,
                                            float* __restrict__ dz_prev) {
  __shared__ __align__(16) float xs[LS_KC][LS_XB_STRIDE];  // [mm][q * LS_BLOCK_ROWS + row]
  __shared__ float ws[LS_KC * LS_WB_STRIDE];
  const size_t G = 4 * (size_t)H;
  const unsigned tid = threadIdx.x, lane = tid % LS_UNITS, grp = tid / LS_UNITS;
  const unsigned k0 = blockIdx.x * LS_UNITS, rb = blockIdx.y * LS_BLOCK_ROWS;
  const unsigned k = k0 + lane;
  float acc[LS_ROWS][4];
#pragma unroll
  for (int r = 0; r < LS_ROWS; ++r)
#pragma unroll
    for (int q = 0; q < 4; ++q) acc[r][q] = 0.0f;

  // Element e of a chunk: (row or unit) = e / (4 * LS_KC), q = e / LS_KC % 4,
  // mm = e % LS_KC, so consecutive threads read consecutive m.
  const bool vec = H % LS_KC == 0 && ((size_t)recurrent_kernel & 15) == 0;
  float px[LS_X_BWD], pw[LS_W];
  auto fetch = [&](unsigned m0) {
#pragma unroll
    for (int i = 0; i < LS_X_BWD; ++i) {
      const unsigned e = tid + i * LS_THREADS, b = rb + e / (4 * LS_KC);
      const unsigned q = e / LS_KC % 4, m = m0 + e % LS_KC;
      px[i] = b < B && m < H ? dz[(size_t)b * G + q * H + m] : 0.0f;
    }
    if (vec) {
      // float4 v: m = m0 + 4 * (v % 8) .., gate q = v / 8 % 4, unit v / 32.
#pragma unroll
      for (int i = 0; i < LS_W / 4; ++i) {
        const unsigned v = tid + i * LS_THREADS, rest = v / (LS_KC / 4);
        unpack4(pw + 4 * i, *(const float4*)(recurrent_kernel + (size_t)(k0 + rest / 4) * G +
                                             rest % 4 * H + m0 + v % (LS_KC / 4) * 4));
      }
      return;
    }
#pragma unroll
    for (int i = 0; i < LS_W; ++i) {
      const unsigned e = tid + i * LS_THREADS, u = k0 + e / (4 * LS_KC);
      const unsigned q = e / LS_KC % 4, m = m0 + e % LS_KC;
      pw[i] = u < H && m < H ? recurrent_kernel[(size_t)u * G + q * H + m] : 0.0f;
    }
  };
  auto step = [&](unsigned mm) {
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const float2 dv = *(const float2*)&xs[mm][q * LS_BLOCK_ROWS + grp * LS_ROWS];
      const float d[LS_ROWS] = {dv.x, dv.y};
      const float w = ws[mm * LS_WB_STRIDE + q * LS_WB_Q + lane];
#pragma unroll
      for (int r = 0; r < LS_ROWS; ++r) acc[r][q] += d[r] * w;
    }
  };
  auto store = [&]() {
#pragma unroll
    for (int i = 0; i < LS_X_BWD; ++i) {
      const unsigned e = tid + i * LS_THREADS;
      xs[e % LS_KC][e / LS_KC % 4 * LS_BLOCK_ROWS + e / (4 * LS_KC)] = px[i];
    }
    if (vec) {
#pragma unroll
      for (int i = 0; i < LS_W / 4; ++i) {
        const unsigned v = tid + i * LS_THREADS, rest = v / (LS_KC / 4);
        float* wr = ws + v % (LS_KC / 4) * 4 * LS_WB_STRIDE + rest % 4 * LS_WB_Q + rest / 4;
#pragma unroll
        for (int c = 0; c < 4; ++c) wr[c * LS_WB_STRIDE] = pw[4 * i + c];
      }
    } else {
#pragma unroll
      for (int i = 0; i < LS_W; ++i) {
        const unsigned e = tid + i * LS_THREADS;
        ws[e % LS_KC * LS_WB_STRIDE + e / LS_KC % 4 * LS_WB_Q + e / (4 * LS_KC)] = pw[i];
      }
    }
  };
  staged_chunks(H, fetch, store, step);
#pragma unroll
  for (int r = 0; r < LS_ROWS; ++r) {
    const unsigned b = rb + grp * LS_ROWS + r;
    if (b >= B || k >= H) continue;
    const size_t idx = (size_t)b * H + k;
    const float dh = ((acc[r][0] + acc[r][1]) + acc[r][2]) + acc[r][3];
    if (!FUSED) {
      dh_prev[idx] = dh;
      continue;
    }
    const float dht = dy ? dh + dy[idx] : dh;
    cell_bwd_at(gates, c, c_prev, dht, dc[idx], b, k, H, dz_prev, dc);
  }
}

extern "C" __global__ void lstm_dh_bwd_f32(const float* __restrict__ dz,
                                           const float* __restrict__ recurrent_kernel,
                                           unsigned B, unsigned H,
                                           float* __restrict__ dh_prev) {
  lstm_dh_bwd<false>(dz, recurrent_kernel, B, H, dh_prev, nullptr, nullptr, nullptr, nullptr,
                     nullptr, nullptr);
}

// Step t of the per-step backward for t >= 1 (see FUSED above): dz = step
// t's dz [B, 4H]; gates, c, c_prev (nullable), dy (nullable) step t-1's;
// dc in-out [B, H]; overwrites dz_prev = step t-1's dz [B, 4H] and dc.
extern "C" __global__ void lstm_dh_cell_bwd_f32(const float* __restrict__ dz,
                                                const float* __restrict__ recurrent_kernel,
                                                unsigned B, unsigned H,
                                                const float* __restrict__ gates,
                                                const float* __restrict__ c,
                                                const float* __restrict__ c_prev,  // nullable
                                                const float* __restrict__ dy,      // nullable
                                                float* dc,
                                                float* __restrict__ dz_prev) {
  lstm_dh_bwd<true>(dz, recurrent_kernel, B, H, nullptr, gates, c, c_prev, dy, dc, dz_prev);
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
