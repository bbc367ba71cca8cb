// The fused head: dense + softmax + categorical cross-entropy, forward and
// backward, the device twin of src/cpu forward::head and the top of backward.
//
// Per batch row b (scale = 1/B gives the batch mean, as Keras reports it):
//   logits  = h[b] @ dense_kernel + dense_bias                      [V]
//   log_z   = max + log(sum_v exp(logits_v - max))     (stable log-softmax)
//   loss_b  = log_z - logits[y_b];      p = exp(logits - log_z)
//   dlogits = (p - onehot(y_b)) * scale                             [V]
//   dh[b]   = dlogits @ dense_kernel^T                              [H]
// Over the batch (second kernel, fixed order over b, no atomics):
//   d_dense_kernel = h^T @ dlogits                                  [H, V]
//   d_dense_bias   = sum_b dlogits[b]                               [V]
//
// The rows are whatever the launcher makes them: the window form's B last
// steps (h = h[T-1]), or all B*L steps of a stream batch (h = the whole
// t-major [L, B, H] buffer as L*B rows, row t*B + b; dh then is dy [L, B, H]
// for the recurrence's sequence-form backward, scale = 1 / (B*L)).
//
// Layouts (row-major, Keras): h [B, H] (b*H + k), dense_kernel [H, V]
// (k*V + v), dense_bias [V], targets [B] u32 class indices, probs / dlogits
// [B, V] (b*V + v), dh [B, H].
//
// Decisions:
// - head_fwd_bwd_f32: one block per row; the row's h and logits and the
//   reductions' scratch live in dynamic shared memory ((H + V + 32) floats)
//   and the kernel declares no static shared memory, so the launcher's
//   request is the block's whole footprint: the driver refuses static +
//   dynamic above the opt-in limit, and a budget that forgot a static
//   array would pass the fit check and fail the launch. probs, dlogits and dh are
//   OVERWRITTEN (probs may be null: then it is not written). loss_sum
//   ACCUMULATES scale * loss_b with one atomicAdd per row: the caller zeroes
//   it when it wants a fresh sum (after one launch it holds the batch mean).
//   A target >= V makes that row's loss NaN (no out-of-bounds read), which
//   the trainer reports as a non-finite loss. head_rows_fwd_bwd_f32 is the
//   same kernel writing row b's scale * loss_b to row_loss[b] (OVERWRITTEN)
//   instead: with thousands of rows an atomicAdd order would make the loss
//   differ in its last bits from run to run; loss_rows_sum_f32 then adds
//   the rows in a fixed order.
// - head_wgrad_bwd_f32: the weight gradients are a reduction over the batch;
//   a separate kernel with one thread per output element summing b = 0..B-1
//   in order is deterministic and obviously race-free, unlike per-row
//   atomicAdds. It OVERWRITES d_dense_kernel and d_dense_bias (the head is
//   their only contributor).
// - Full-precision expf / logf (no fast math); block size a multiple of 32.

#include "common.cuh"

// ROW_LOSS = false: head_fwd_bwd_f32 (loss_out is the accumulated sum);
// true: head_rows_fwd_bwd_f32 (loss_out [B] gets each row's scaled loss).
template <bool ROW_LOSS>
__device__ __forceinline__ void head_fwd_bwd(const float* __restrict__ h,
                                             const float* __restrict__ dense_kernel,
                                             const float* __restrict__ dense_bias,
                                             const unsigned* __restrict__ targets, unsigned B,
                                             unsigned H, unsigned V,
                                             float* __restrict__ probs,  // nullable
                                             float* __restrict__ dlogits,
                                             float* __restrict__ dh,
                                             float* __restrict__ loss_out, float scale) {
  extern __shared__ float smem[];
  float* hs = smem;                // [H]
  float* logits = smem + H;        // [V], later dlogits
  float* scratch = logits + V;     // [32] block reductions
  const unsigned b = blockIdx.x;
  if (b >= B) return;  // uniform per block: safe before the barriers
  const unsigned tid = threadIdx.x, nthreads = blockDim.x;

  for (unsigned k = tid; k < H; k += nthreads) hs[k] = h[(size_t)b * H + k];
  __syncthreads();

  float local_max = -INFINITY;
  for (unsigned v = tid; v < V; v += nthreads) {
    float acc = dense_bias[v];
    for (unsigned k = 0; k < H; ++k) acc += hs[k] * dense_kernel[(size_t)k * V + v];
    logits[v] = acc;
    local_max = fmaxf(local_max, acc);
  }
  const float max = block_reduce_max(local_max, scratch);

  float local_sum = 0.0f;
  for (unsigned v = tid; v < V; v += nthreads) local_sum += expf(logits[v] - max);
  const float log_z = max + logf(block_reduce_sum(local_sum, scratch));

  const unsigned y = targets[b];
  if (tid == 0) {
    const float loss = y < V ? log_z - logits[y] : NAN;
    if (ROW_LOSS)
      loss_out[b] = scale * loss;
    else
      atomicAdd(loss_out, scale * loss);
  }
  __syncthreads();  // logits[y] is read above before being overwritten below

  for (unsigned v = tid; v < V; v += nthreads) {
    const float p = expf(logits[v] - log_z);
    if (probs) probs[(size_t)b * V + v] = p;
    const float d = (v == y ? p - 1.0f : p) * scale;
    logits[v] = d;
    dlogits[(size_t)b * V + v] = d;
  }
  __syncthreads();

  // dh[b, k] = sum_v dlogits[v] * dense_kernel[k, v]: one warp per k, lanes over v.
  const unsigned lane = tid & 31u, warp = tid >> 5, nwarps = nthreads >> 5;
  for (unsigned k = warp; k < H; k += nwarps) {
    float acc = 0.0f;
    for (unsigned v = lane; v < V; v += 32) acc += logits[v] * dense_kernel[(size_t)k * V + v];
    acc = warp_reduce_sum(acc);
    if (lane == 0) dh[(size_t)b * H + k] = acc;
  }
}

extern "C" __global__ void head_fwd_bwd_f32(const float* __restrict__ h,
                                            const float* __restrict__ dense_kernel,
                                            const float* __restrict__ dense_bias,
                                            const unsigned* __restrict__ targets,
                                            unsigned B, unsigned H, unsigned V,
                                            float* __restrict__ probs,  // nullable
                                            float* __restrict__ dlogits,
                                            float* __restrict__ dh,
                                            float* __restrict__ loss_sum,
                                            float scale) {
  head_fwd_bwd<false>(h, dense_kernel, dense_bias, targets, B, H, V, probs, dlogits, dh,
                      loss_sum, scale);
}

// The same per row, but row b's scale * loss_b OVERWRITES row_loss[b]
// instead of being added to a sum, so the sum (loss_rows_sum_f32) has a
// fixed order: the stream step's B*L rows.
extern "C" __global__ void head_rows_fwd_bwd_f32(const float* __restrict__ h,
                                                 const float* __restrict__ dense_kernel,
                                                 const float* __restrict__ dense_bias,
                                                 const unsigned* __restrict__ targets,
                                                 unsigned B, unsigned H, unsigned V,
                                                 float* __restrict__ probs,  // nullable
                                                 float* __restrict__ dlogits,
                                                 float* __restrict__ dh,
                                                 float* __restrict__ row_loss,
                                                 float scale) {
  head_fwd_bwd<true>(h, dense_kernel, dense_bias, targets, B, H, V, probs, dlogits, dh,
                     row_loss, scale);
}

// One thread per output: i < H*V -> d_dense_kernel[i] (k = i / V, v = i % V),
// H*V <= i < H*V + V -> d_dense_bias[i - H*V]. Grid-stride over H*V + V.
extern "C" __global__ void head_wgrad_bwd_f32(const float* __restrict__ h,
                                              const float* __restrict__ dlogits,
                                              unsigned B, unsigned H, unsigned V,
                                              float* __restrict__ d_dense_kernel,
                                              float* __restrict__ d_dense_bias) {
  const size_t hv = (size_t)H * V, n = hv + V;
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    if (i < hv) {
      const unsigned k = (unsigned)(i / V), v = (unsigned)(i % V);
      float acc = 0.0f;
      for (unsigned b = 0; b < B; ++b) acc += h[(size_t)b * H + k] * dlogits[(size_t)b * V + v];
      d_dense_kernel[i] = acc;
    } else {
      const unsigned v = (unsigned)(i - hv);
      float acc = 0.0f;
      for (unsigned b = 0; b < B; ++b) acc += dlogits[(size_t)b * V + v];
      d_dense_bias[v] = acc;
    }
  }
}

// *loss = sum of row_loss[0..n). ONE block of LOSS_SUM_THREADS threads:
// thread i sums rows i, i + LOSS_SUM_THREADS, ... in order, then a fixed
// tree (block_reduce_sum) adds the threads' sums, so the same rows give the
// same bits on every run. OVERWRITES *loss.
#define LOSS_SUM_THREADS 256
extern "C" __global__ void loss_rows_sum_f32(const float* __restrict__ row_loss, unsigned n,
                                             float* __restrict__ loss) {
  __shared__ float scratch[32];
  float acc = 0.0f;
  for (unsigned i = threadIdx.x; i < n; i += LOSS_SUM_THREADS) acc += row_loss[i];
  const float total = block_reduce_sum(acc, scratch);
  if (threadIdx.x == 0) *loss = total;
}
