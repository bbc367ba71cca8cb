// Thread-block clusters (sm_90): the few PTX instructions a kernel needs to
// share data between the blocks of a cluster through distributed shared
// memory, written once. Only sources compiled to compute_90 PTX (file names
// ending in _sm90, see build.rs) may include this. The simulator runs these
// exact forms (src/sim: `mapa.shared::cluster`, `ld/st.shared::cluster`,
// `barrier.cluster.arrive.release` / `wait.acquire`) with the same bounds
// and race checks as shared memory.
#pragma once

// This block's rank in its cluster, 0 .. cluster_blocks() - 1.
__device__ __forceinline__ unsigned cluster_rank() {
  unsigned r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
  return r;
}

// Blocks in the cluster.
__device__ __forceinline__ unsigned cluster_blocks() {
  unsigned n;
  asm volatile("mov.u32 %0, %%cluster_nctarank;" : "=r"(n));
  return n;
}

// Every thread of every block of the cluster: shared and global writes
// before it are visible to every thread of the cluster after it. Every
// thread must reach it (`.aligned`: whole warps), and a block whose shared
// memory others read must not exit before they are done (end with one).
__device__ __forceinline__ void cluster_sync() {
  asm volatile(
      "barrier.cluster.arrive.release.aligned;\n\t"
      "barrier.cluster.wait.acquire.aligned;" ::: "memory");
}

// The .shared::cluster address of `p` (this block's shared memory) in the
// block of rank `rank`.
__device__ __forceinline__ unsigned cluster_map(const void* p, unsigned rank) {
  unsigned a = (unsigned)__cvta_generic_to_shared(p), d;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(rank));
  return d;
}

__device__ __forceinline__ float cluster_ld(unsigned a) {
  float v;
  asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(a) : "memory");
  return v;
}

__device__ __forceinline__ void cluster_st(unsigned a, float v) {
  asm volatile("st.shared::cluster.f32 [%0], %1;" :: "r"(a), "f"(v) : "memory");
}
