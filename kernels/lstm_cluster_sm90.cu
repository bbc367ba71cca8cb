// The forward recurrence above H = 128 as ONE launch: a thread-block cluster
// of LC_BLOCKS blocks per group of batch rows, the recurrent weights split
// between the blocks' shared memory, h exchanged through distributed shared
// memory each step (kernels/cluster.cuh). Same math, layouts, saved state
// and bits as the per-step forward (lstm.cu's lstm_cell_fwd_f32 and
// lstm_cell_dense_fwd_f32, T launches; read its header first), which stays
// the reference (tests/lstm_cluster.rs). Hopper only (compute_90 PTX); the
// launcher runs it only when asked (LstmPath::Cluster) until a GPU has run it.
//
// Why: above H = 128 recurrent_kernel (4H * H * 4 bytes: 1 MiB at H = 256)
// does not fit one block, so the persistent kernels (lstm_persistent.cu)
// cannot run and each step was a launch. Split over a cluster of 8 it is
// 2H^2 bytes a block (128 KiB at H = 256), on chip for all T steps.
//
// Cluster c carries batch rows b0 = c * rows .. b0 + nrows - 1. Block rank r
// owns units j = r*U .. r*U + U - 1 (U = H / LC_BLOCKS), all four gates of
// them, so the cell update stays in the block: its 4U gate columns
// (local column lc = q*U + u is global column q*H + r*U + u) and their
// recurrent_kernel columns [H][4U] in shared memory.
//
// Step t: thread (g, lc), g = tid / 4U a row group, sums
// z[b, col] = sum_k h_{t-1}[b, k] * R[k, col] over k = 0..H-1 in order from
// 0.0f (lstm_cell_fwd's order, so the same bits) for its group's rows,
// adds the input term (the gathered kernel row plus bias, or zx), activates
// and writes gates; after __syncthreads thread (b, u) updates c (kept in a
// register for the whole sequence) and h of unit r*U + u, writes c, h and
// stores h into the NEXT h buffer of every block of the cluster; a cluster
// barrier ends the step. h alternates between two buffers, so a block
// writes step t's h while others may still read step t-1's: one barrier a
// step. A cluster barrier after the setup keeps every block's shared memory
// from being written before that block runs; the last step writes no
// remote h, so no block can exit while another still writes into it.
//
// Launch: grid LC_BLOCKS * ceil(B / rows) along x (clusters along x, of
// LC_BLOCKS: __cluster_dims__), block RG * 4U threads (src/gpu/lstm/
// cluster.rs: RG = max(1, LC_THREADS / 4U)), dynamic shared memory
// 4 * (H * 4U + 2 * RP * H + rows * 4U + T * rows) bytes, RP = RG *
// rows_per_group(rows, RG) (the row buffers padded to whole row groups). H
// a multiple of 64 (4U whole warps), rows <= LC_MAX_ROWS, rows * U <=
// LC_CELLS * threads.
//
// Forms, by argument (one build): zx non-null is a dense layer (input term
// zx[(t*B + b)*4H + col], no corpus read, no cls); else classes from the
// corpus (cls written by rank 0). h0 / c0 (nullable, [B, H]): the initial
// state; with h0 null the sum is skipped at t = 0 (h_{-1} = 0), as the
// per-step kernel skips it with h_prev null.

#include "cluster.cuh"
#include "common.cuh"

#define LC_BLOCKS 8
#define LC_THREADS 256
#define LC_MAX_ROWS 8
// Cells (row, unit pairs) per thread at most: rows * U <= LC_CELLS * threads.
#define LC_CELLS 4

// Rows a row group sums (1, 2, 4 or 8: a compile-time count, so the sum's
// inner loop has no per-row test): the least power of two that covers
// `rows` in `groups` groups. Row buffers hold groups * that many rows, the
// ones past the cluster's last row zero (summed, never used).
__device__ __forceinline__ unsigned rows_per_group(unsigned rows, unsigned groups) {
  const unsigned need = (rows + groups - 1) / groups;
  return need <= 1 ? 1 : need <= 2 ? 2 : need <= 4 ? 4 : 8;
}

// acc[i] += sum over k = 0..n-1, in order, of x[i * xs + k] * w_k, for RPT
// rows of x (16-byte aligned, n a multiple of 4), where w_k .. w_{k+3} is
// the float4 w[k / 4 * ws]: one weight load serves four k and every row.
template <unsigned RPT>
__device__ __forceinline__ void dot_rows(const float* x, unsigned xs, const float4* w,
                                         unsigned ws, unsigned n, float* acc) {
#pragma unroll 4
  for (unsigned k = 0; k < n; k += 4, w += ws) {
    const float4 wv = *w;
#pragma unroll
    for (unsigned i = 0; i < RPT; ++i) {
      const float4 v = *(const float4*)(x + i * xs + k);
      acc[i] += v.x * wv.x;
      acc[i] += v.y * wv.y;
      acc[i] += v.z * wv.z;
      acc[i] += v.w * wv.w;
    }
  }
}

// dot_rows with the row count chosen at run time (rpt from rows_per_group).
__device__ __forceinline__ void dot_rows_n(unsigned rpt, const float* x, unsigned xs,
                                           const float4* w, unsigned ws, unsigned n,
                                           float* acc) {
  switch (rpt) {
    case 1: dot_rows<1>(x, xs, w, ws, n, acc); break;
    case 2: dot_rows<2>(x, xs, w, ws, n, acc); break;
    case 4: dot_rows<4>(x, xs, w, ws, n, acc); break;
    default: dot_rows<8>(x, xs, w, ws, n, acc); break;
  }
}

// HT > 0: H compiled in (the stack's 256), so every shared-memory offset
// folds into its load; HT = 0: H from the launch.
template <unsigned HT>
__device__ __forceinline__ void lstm_cluster_fwd(
    const unsigned long long* __restrict__ corpus_words, unsigned words_per_row,
    const unsigned* __restrict__ starts, const float* __restrict__ kernel,
    const float* __restrict__ bias, const float* __restrict__ zx,
    const float* __restrict__ recurrent_kernel, unsigned B, unsigned T, unsigned H_arg,
    unsigned V, unsigned rows, const float* __restrict__ h0, const float* __restrict__ c0,
    float* __restrict__ gates, float* __restrict__ c, float* __restrict__ h,
    unsigned* __restrict__ cls) {
  const unsigned H = HT ? HT : H_arg;
  extern __shared__ __align__(16) float smem[];
  const unsigned U = H / LC_BLOCKS, W = 4 * U, G = 4 * H;
  const unsigned tid = threadIdx.x, nt = blockDim.x;
  const unsigned rank = cluster_rank(), lc = tid % W, grp = tid / W, ngrp = nt / W;
  const unsigned q = lc / U, col = q * H + rank * U + lc % U;
  const unsigned b0 = blockIdx.x / LC_BLOCKS * rows;
  const unsigned nrows = min(rows, B - b0);
  const unsigned rpt = rows_per_group(rows, ngrp), rp = rpt * ngrp;
  const bool dense = zx != nullptr;
  float* rs = smem;                              // [H/4][W][4]  this block's columns of R
  float* hbuf = rs + (size_t)H * W;              // [2][rp][H]  h_{t-1}, h_t
  float* gs = hbuf + 2 * rp * H;                 // [rows][W]  activated gates
  unsigned* xs = (unsigned*)(gs + rows * W);     // [T][rows]  input classes

  // rs[(k/4 * W + l) * 4 + k%4] = R[k, column l]: a thread's four weights
  // of four consecutive k in one float4.
  for (unsigned i = tid; i < H * W; i += nt) {
    const unsigned k = i / W, l = i % W;
    rs[((k / 4) * W + l) * 4 + k % 4] =
        recurrent_kernel[(size_t)k * G + l / U * H + rank * U + l % U];
  }
  // Rows past the cluster's last are summed but never written: zero.
  for (unsigned i = nrows * H + tid; i < rp * H; i += nt) hbuf[i] = hbuf[rp * H + i] = 0.0f;
  if (h0 != nullptr)
    for (unsigned i = tid; i < nrows * H; i += nt) hbuf[i] = h0[(size_t)b0 * H + i];
  for (unsigned i = tid; !dense && i < T * nrows; i += nt) {
    const unsigned t = i / nrows, r = i % nrows;
    const size_t row = (size_t)starts[b0 + r] + t;
    const unsigned x = onehot_class(corpus_words + row * words_per_row, words_per_row, V);
    xs[t * rows + r] = x;
    if (rank == 0) cls[(size_t)t * B + b0 + r] = x;
  }
  // Thread tid carries cells (row, unit) p = tid + i * nt: c in a register.
  float creg[LC_CELLS];
#pragma unroll
  for (unsigned i = 0; i < LC_CELLS; ++i) {
    const unsigned p = tid + i * nt;
    creg[i] = c0 != nullptr && p < nrows * U ? c0[(size_t)(b0 + p / U) * H + rank * U + p % U]
                                             : 0.0f;
  }
  cluster_sync();

  for (unsigned t = 0; t < T; ++t) {
    const float* hp = hbuf + (t & 1) * rp * H;
    float* hn = hbuf + ((t + 1) & 1) * rp * H;
    // This thread's rows grp * rpt .. + rpt - 1.
    float acc[LC_MAX_ROWS];
#pragma unroll
    for (unsigned i = 0; i < LC_MAX_ROWS; ++i) acc[i] = 0.0f;
    if (t > 0 || h0 != nullptr) dot_rows_n(rpt, hp + grp * rpt * H, H, (const float4*)rs + lc, W, H, acc);
#pragma unroll
    for (unsigned i = 0; i < LC_MAX_ROWS; ++i) {
      const unsigned r = grp * rpt + i;
      if (i >= rpt || r >= nrows) continue;
      const size_t bg = (size_t)t * B + b0 + r;
      float xb;
      if (dense) {
        xb = zx[bg * G + col];
      } else {
        const unsigned x = xs[t * rows + r];
        xb = x < V ? kernel[(size_t)x * G + col] + bias[col] : NAN;
      }
      const float z = acc[i] + xb;
      const float a = q == 2 ? tanhf(z) : sigmoidf_(z);
      gs[r * W + lc] = a;
      gates[bg * G + col] = a;
    }
    __syncthreads();
    const bool last = t + 1 == T;
#pragma unroll
    for (unsigned i = 0; i < LC_CELLS; ++i) {
      const unsigned p = tid + i * nt;
      if (p >= nrows * U) continue;
      const unsigned r = p / U, u = p % U, j = rank * U + u;
      const float* g = gs + r * W;
      const float gi = g[u], gf = g[U + u], gg = g[2 * U + u], go = g[3 * U + u];
      const float cn = gf * creg[i] + gi * gg;
      creg[i] = cn;
      const float hv = go * tanhf(cn);
      const size_t o = ((size_t)t * B + b0 + r) * H + j;
      c[o] = cn;
      h[o] = hv;
      if (!last) {
        float* dst = hn + r * H + j;
        for (unsigned peer = 0; peer < LC_BLOCKS; ++peer) cluster_st(cluster_map(dst, peer), hv);
      }
    }
    if (!last) cluster_sync();
  }
}

// The backward recurrence, steps T-1 .. 0, as one launch on the same
// clusters (the forward's header, then this). Block rank r owns units
// k = r*U .. r*U + U - 1 in both halves of a step:
// - the cell backward of (row, unit) pairs (thread p = tid + i * nt, dc in
//   a register for the whole sequence; the saved gates, c_t, c_{t-1} and dy
//   of the NEXT step to run loaded a step ahead), exactly
//   lstm_cell_bwd_f32's arithmetic; it writes dz and stores the unit's four
//   dz values into the current dz buffer of every block of the cluster;
// - after a cluster barrier, dh_{t-1}[b, k] for its units from the whole
//   dz row: thread (g, q, kk), lc = q*U + kk, sums
//   dz[b, q*H + m] * R[k, q*H + m] over m = 0..H-1 in order (the
//   persistent kernel's partial sum q) for its group's rows; after
//   __syncthreads the pair's thread adds the four partial sums
//   ((p0 + p1) + p2) + p3, the persistent kernel's and lstm_dh_bwd_f32's
//   order, so dz and dh are the per-step kernels' bits.
// dz alternates between two buffers (one cluster barrier a step, as the
// forward's h). Shared memory: 4 * (4H * U + 2 * RP * 4H + RP * 4U) bytes
// (RP as in the forward).
//
// seq = 0, the window form: dh holds dh_{T-1} (from the head), dc_T = 0,
// c_{-1} = 0; writes dz only (dh, dc left as they were). seq = 1, the
// sequence form: dy [T, B, H] added to dh_t at every step (dh_t = dh_t^rec
// + dy[t]); dh / dc hold dh_T / dc_T (null: zeros) and are OVERWRITTEN
// with dh_{-1} / dc_{-1} where not null; c_{-1} from c0 (null: zeros).
template <unsigned HT>
__device__ __forceinline__ void lstm_cluster_bwd(
    const float* __restrict__ gates, const float* __restrict__ c, const float* __restrict__ c0,
    const float* __restrict__ dy, const float* __restrict__ recurrent_kernel, unsigned B,
    unsigned T, unsigned H_arg, unsigned rows, unsigned seq, float* dh, float* dc,
    float* __restrict__ dz) {
  const unsigned H = HT ? HT : H_arg;
  extern __shared__ __align__(16) float smem[];
  const unsigned U = H / LC_BLOCKS, W = 4 * U, G = 4 * H;
  const unsigned tid = threadIdx.x, nt = blockDim.x;
  const unsigned rank = cluster_rank(), lc = tid % W, grp = tid / W, ngrp = nt / W;
  const unsigned q = lc / U, kk = lc % U;
  const unsigned b0 = blockIdx.x / LC_BLOCKS * rows;
  const unsigned nrows = min(rows, B - b0);
  const unsigned rpt = rows_per_group(rows, ngrp), rp = rpt * ngrp;
  float* rt = smem;                          // [4H/4][U][4]  R[r*U + kk, col]: see below
  float* dzbuf = rt + (size_t)G * U;         // [2][rp][4H]  dz of the step, every unit
  float* part = dzbuf + 2 * rp * G;          // [rp][4][U]  partial sums of dh_{t-1}

  // rt[(cm/4 * U + kk) * 4 + cm%4] = R[r*U + kk, cm]: four consecutive
  // gate columns of unit kk in one float4 (H % 4 == 0: never across gates).
  for (unsigned i = tid; i < U * G; i += nt) {
    const unsigned k = i / G, cm = i % G;
    rt[((size_t)(cm / 4) * U + k) * 4 + cm % 4] =
        recurrent_kernel[(size_t)(rank * U + k) * G + cm];
  }
  // Rows past the cluster's last are summed but never written: zero.
  for (unsigned i = nrows * G + tid; i < rp * G; i += nt) dzbuf[i] = dzbuf[rp * G + i] = 0.0f;
  // The pairs' state: dc, dh_t, and the next step's saved gates, c_t,
  // c_{t-1} and dy.
  float dcreg[LC_CELLS], dhreg[LC_CELLS], ni[LC_CELLS], nf[LC_CELLS], ng[LC_CELLS];
  float no[LC_CELLS], nc[LC_CELLS], ncp[LC_CELLS], ndy[LC_CELLS];
  const auto c_first = [&](unsigned b, unsigned j) {  // c_{-1}
    return seq && c0 != nullptr ? c0[(size_t)b * H + j] : 0.0f;
  };
  const auto load = [&](unsigned i, unsigned t, unsigned b, unsigned j) {
    const size_t bg = (size_t)t * B + b;
    const float* gr = gates + bg * G;
    ni[i] = gr[j];
    nf[i] = gr[H + j];
    ng[i] = gr[2 * H + j];
    no[i] = gr[3 * H + j];
    nc[i] = c[bg * H + j];
    ncp[i] = t > 0 ? c[(bg - B) * H + j] : c_first(b, j);
    ndy[i] = seq ? dy[bg * H + j] : 0.0f;
  };
#pragma unroll
  for (unsigned i = 0; i < LC_CELLS; ++i) {
    const unsigned p = tid + i * nt;
    dcreg[i] = 0.0f;
    dhreg[i] = 0.0f;
    if (p < nrows * U) {
      const unsigned b = b0 + p / U, j = rank * U + p % U;
      const size_t o = (size_t)b * H + j;
      if (seq) {
        dhreg[i] = dh != nullptr ? dh[o] : 0.0f;
        if (dc != nullptr) dcreg[i] = dc[o];
      } else {
        dhreg[i] = dh[o];
      }
      load(i, T - 1, b, j);
    }
  }
  cluster_sync();

  for (unsigned t = T; t-- > 0;) {
    // dh_{-1} is needed only as the sequence form's dh output.
    const bool last = t == 0, more = !last || (seq && dh != nullptr);
    float* dzs = dzbuf + (t & 1) * rp * G;
#pragma unroll
    for (unsigned i = 0; i < LC_CELLS; ++i) {
      const unsigned p = tid + i * nt;
      if (p >= nrows * U) continue;
      const unsigned r = p / U, u = p % U, b = b0 + r, j = rank * U + u;
      const size_t bg = (size_t)t * B + b;
      const float dht = seq ? dhreg[i] + ndy[i] : dhreg[i];
      const CellGrads g = lstm_cell_grads(ni[i], nf[i], ng[i], no[i], nc[i], ncp[i], dht, dcreg[i]);
      float* dzr = dz + bg * G;
      dzr[j] = g.zi;
      dzr[H + j] = g.zf;
      dzr[2 * H + j] = g.zg;
      dzr[3 * H + j] = g.zo;
      dcreg[i] = g.dc_prev;
      if (more) {
        float* dst = dzs + r * G + j;
        for (unsigned peer = 0; peer < LC_BLOCKS; ++peer) {
          const unsigned a = cluster_map(dst, peer);
          cluster_st(a, g.zi);
          cluster_st(a + 4 * H, g.zf);
          cluster_st(a + 8 * H, g.zg);
          cluster_st(a + 12 * H, g.zo);
        }
      }
      if (!last) load(i, t - 1, b, j);
    }
    if (!more) break;
    cluster_sync();
    // This thread's rows grp * rpt .. + rpt - 1, gate q, unit kk.
    float acc[LC_MAX_ROWS];
#pragma unroll
    for (unsigned i = 0; i < LC_MAX_ROWS; ++i) acc[i] = 0.0f;
    dot_rows_n(rpt, dzs + grp * rpt * G + q * H, G, (const float4*)rt + q * H / 4 * U + kk, U,
               H, acc);
#pragma unroll
    for (unsigned i = 0; i < LC_MAX_ROWS; ++i) {
      const unsigned r = grp * rpt + i;
      if (i < rpt && r < nrows) part[(r * 4 + q) * U + kk] = acc[i];
    }
    __syncthreads();
#pragma unroll
    for (unsigned i = 0; i < LC_CELLS; ++i) {
      const unsigned p = tid + i * nt;
      if (p >= nrows * U) continue;
      const float* pr = part + (p / U) * 4 * U + p % U;
      const float sum = ((pr[0] + pr[U]) + pr[2 * U]) + pr[3 * U];
      if (last)
        dh[(size_t)(b0 + p / U) * H + rank * U + p % U] = sum;  // the thread that read it
      else
        dhreg[i] = sum;
    }
  }
  if (seq && dc != nullptr) {
#pragma unroll
    for (unsigned i = 0; i < LC_CELLS; ++i) {
      const unsigned p = tid + i * nt;
      if (p < nrows * U) dc[(size_t)(b0 + p / U) * H + rank * U + p % U] = dcreg[i];
    }
  }
}

// The entry points: any H (a launch argument) and H = 256 (compiled in),
// forward and backward; see the headers above.
#define LC_FWD_PARAMS                                                                         \
  const unsigned long long *__restrict__ corpus_words, unsigned words_per_row,                \
      const unsigned *__restrict__ starts, const float *__restrict__ kernel,                  \
      const float *__restrict__ bias, const float *__restrict__ zx,                           \
      const float *__restrict__ recurrent_kernel, unsigned B, unsigned T, unsigned H,         \
      unsigned V, unsigned rows, const float *__restrict__ h0, const float *__restrict__ c0,  \
      float *__restrict__ gates, float *__restrict__ c, float *__restrict__ h,                \
      unsigned *__restrict__ cls
#define LC_FWD_ARGS                                                                      \
  corpus_words, words_per_row, starts, kernel, bias, zx, recurrent_kernel, B, T, H, V, rows, \
      h0, c0, gates, c, h, cls
#define LC_BWD_PARAMS                                                                          \
  const float *__restrict__ gates, const float *__restrict__ c, const float *__restrict__ c0,  \
      const float *__restrict__ dy, const float *__restrict__ recurrent_kernel, unsigned B,    \
      unsigned T, unsigned H, unsigned rows, unsigned seq, float *dh, float *dc,               \
      float *__restrict__ dz
#define LC_BWD_ARGS gates, c, c0, dy, recurrent_kernel, B, T, H, rows, seq, dh, dc, dz

extern "C" __global__ void __cluster_dims__(LC_BLOCKS, 1, 1) __launch_bounds__(LC_THREADS, 1)
    lstm_cluster_fwd_f32(LC_FWD_PARAMS) {
  lstm_cluster_fwd<0>(LC_FWD_ARGS);
}
extern "C" __global__ void __cluster_dims__(LC_BLOCKS, 1, 1) __launch_bounds__(LC_THREADS, 1)
    lstm_cluster_h256_fwd_f32(LC_FWD_PARAMS) {
  lstm_cluster_fwd<256>(LC_FWD_ARGS);
}
extern "C" __global__ void __cluster_dims__(LC_BLOCKS, 1, 1) __launch_bounds__(LC_THREADS, 1)
    lstm_cluster_bwd_f32(LC_BWD_PARAMS) {
  lstm_cluster_bwd<0>(LC_BWD_ARGS);
}
extern "C" __global__ void __cluster_dims__(LC_BLOCKS, 1, 1) __launch_bounds__(LC_THREADS, 1)
    lstm_cluster_h256_bwd_f32(LC_BWD_PARAMS) {
  lstm_cluster_bwd<256>(LC_BWD_ARGS);
}
