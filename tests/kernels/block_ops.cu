// Shared memory (static and dynamic) with __syncthreads, atomics on global and shared memory, vector loads.
extern "C" __global__ void block_sum(const float* a, float* out) {
  __shared__ float tile[256];
  unsigned t = threadIdx.x;
  tile[t] = a[blockIdx.x * blockDim.x + t];
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (t < s) tile[t] += tile[t + s];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = tile[0];
}
extern "C" __global__ void dyn_reverse(const float4* a, float4* out) {
  extern __shared__ float4 buf[];
  unsigned t = threadIdx.x, n = blockDim.x;
  buf[t] = a[t];
  __syncthreads();
  out[t] = buf[n - 1 - t];
}
extern "C" __global__ void atomics(const unsigned* a, unsigned* counters, float* fsum, unsigned long long* usum) {
  __shared__ unsigned local_max;
  unsigned t = threadIdx.x;
  if (t == 0) local_max = 0;
  __syncthreads();
  unsigned v = a[blockIdx.x * blockDim.x + t];
  atomicMax(&local_max, v);
  atomicAdd(&counters[0], v);
  atomicMin(&counters[1], v);
  atomicExch(&counters[2], 7u);
  atomicCAS(&counters[3], 0u, blockIdx.x + 1);
  atomicAdd(fsum, (float)(v & 15));
  atomicAdd(usum, (unsigned long long)v << 20);
  __syncthreads();
  if (t == 0) atomicMax(&counters[4], local_max);
}
// Thread 0 writes shared memory after 1 + `before` barriers; every thread
// reads it after `after` more. A race exactly when `after` is 0, however
// many barriers came first: the simulator keeps 16 bits of a barrier epoch
// and must neither take one 65,536 barriers old for the current one nor
// lose the current one when it sweeps every 32,768.
extern "C" __global__ void barriers_then_share(float* out, unsigned before, unsigned after) {
  __shared__ float x;
  if (threadIdx.x == 0) x = 0.0f;
  __syncthreads();
  for (unsigned i = 0; i < before; ++i) __syncthreads();
  if (threadIdx.x == 0) x = 1.0f + (float)before;
  for (unsigned i = 0; i < after; ++i) __syncthreads();
  out[threadIdx.x] = x;
}
