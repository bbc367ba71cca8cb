// Thread-block clusters (kernels/cluster.cuh), on the simulator and, through
// tests/sim_vs_hardware.rs, on a GPU: the cluster special registers, reading
// and writing another block's shared memory, generic `mapa`, and the
// cluster barrier; then planted bugs the simulator must name.
#include "cluster.cuh"

// Per block, thread 0: the cluster registers as the block sees them.
extern "C" __global__ void __cluster_dims__(4, 1, 1) cluster_regs(unsigned* out) {
  if (threadIdx.x != 0) return;
  unsigned v[7];
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(v[0]));
  asm volatile("mov.u32 %0, %%cluster_nctarank;" : "=r"(v[1]));
  asm volatile("mov.u32 %0, %%clusterid.x;" : "=r"(v[2]));
  asm volatile("mov.u32 %0, %%nclusterid.x;" : "=r"(v[3]));
  asm volatile("mov.u32 %0, %%cluster_ctaid.x;" : "=r"(v[4]));
  asm volatile("mov.u32 %0, %%cluster_nctaid.x;" : "=r"(v[5]));
  asm volatile(
      "{\n\t.reg .pred p;\n\tmov.pred p, %%is_explicit_cluster;\n\tselp.u32 %0, 1, 0, p;\n\t}"
      : "=r"(v[6]));
  for (int i = 0; i < 7; i++) out[blockIdx.x * 8 + i] = v[i];
  out[blockIdx.x * 8 + 7] = blockIdx.x;
}

// Block r reads block (r + 1) % n's slice through .shared::cluster, and
// block (r + n - 1) % n's through a generic address from `mapa.u64`.
// 64 threads a block; `in` and `out` hold 64 floats a block, out twice that.
extern "C" __global__ void __cluster_dims__(4, 1, 1) cluster_pull(const float* in, float* out) {
  __shared__ float buf[64];
  unsigned t = threadIdx.x, r = cluster_rank(), n = cluster_blocks();
  buf[t] = in[blockIdx.x * 64 + t];
  cluster_sync();
  float next = cluster_ld(cluster_map(&buf[t], (r + 1) % n));
  const float* prev;
  asm volatile("mapa.u64 %0, %1, %2;" : "=l"(prev) : "l"(&buf[t]), "r"((r + n - 1) % n));
  float before = *prev;
  cluster_sync();  // no block leaves while another may still read its buf
  out[blockIdx.x * 128 + t] = next;
  out[blockIdx.x * 128 + 64 + t] = before;
}

// All-gather: block r writes its 32 values into slot r of every block's
// inbox, then each block sums its inbox over the ranks in order (the
// exchange a cluster LSTM step makes with h). 32 threads a block.
extern "C" __global__ void __cluster_dims__(4, 1, 1) cluster_gather(const float* in, float* out) {
  __shared__ float inbox[4 * 32];
  unsigned t = threadIdx.x, r = cluster_rank(), n = cluster_blocks();
  float v = in[blockIdx.x * 32 + t];
  for (unsigned q = 0; q < n; q++) cluster_st(cluster_map(&inbox[r * 32 + t], q), v * (float)(q + 1));
  cluster_sync();
  float s = 0.0f;
  for (unsigned q = 0; q < n; q++) s += inbox[q * 32 + t];
  out[blockIdx.x * 32 + t] = s;
  cluster_sync();
}

// Planted: the all-gather without the barrier between the writes and the
// reads (a race on the inbox).
extern "C" __global__ void __cluster_dims__(2, 1, 1) bug_cluster_no_barrier(const float* in, float* out) {
  __shared__ float inbox[2 * 32];
  unsigned t = threadIdx.x, r = cluster_rank();
  inbox[t] = 0.0f;
  inbox[32 + t] = 0.0f;
  cluster_sync();
  for (unsigned q = 0; q < 2; q++) cluster_st(cluster_map(&inbox[r * 32 + t], q), in[t]);
  out[blockIdx.x * 32 + t] = inbox[(r ^ 1) * 32 + t];
  cluster_sync();
}

// Planted: `mapa` to a rank outside the cluster.
extern "C" __global__ void __cluster_dims__(2, 1, 1) bug_cluster_rank(float* out) {
  __shared__ float buf[32];
  buf[threadIdx.x] = 1.0f;
  cluster_sync();
  out[blockIdx.x * 32 + threadIdx.x] = cluster_ld(cluster_map(&buf[threadIdx.x], cluster_blocks()));
  cluster_sync();
}

// Planted: rank 0 leaves right after the first barrier while rank 1 still
// reads rank 0's shared memory (no closing barrier). `spin` keeps rank 1
// busy long enough that the simulator runs rank 0 to its end first.
extern "C" __global__ void __cluster_dims__(2, 1, 1) bug_cluster_early_exit(float* out, int spin) {
  __shared__ float buf[32];
  buf[threadIdx.x] = (float)threadIdx.x;
  cluster_sync();
  if (cluster_rank() == 0) return;
  float s = 0.0f;
  for (int i = 0; i < spin; i++) s += (float)i;
  out[threadIdx.x] = s + cluster_ld(cluster_map(&buf[threadIdx.x], 0));
}

// Planted: a wait with no arrive before it.
extern "C" __global__ void __cluster_dims__(2, 1, 1) bug_cluster_wait_only(float* out) {
  asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory");
  out[blockIdx.x * 32 + threadIdx.x] = 1.0f;
}
