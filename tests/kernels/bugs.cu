// Planted bugs the simulator's checks must catch.
extern "C" __global__ void bug_off_by_one(float* y, unsigned n) {
  unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i <= n) y[i] = 1.0f;  // bug: <= instead of <
}
extern "C" __global__ void bug_missing_sync(float* out) {
  __shared__ float tile[64];
  unsigned t = threadIdx.x;
  tile[t] = (float)t;
  // bug: missing __syncthreads()
  out[t] = tile[63 - t];
}
extern "C" __global__ void bug_read_unwritten(const float* a, float* out) {
  unsigned t = threadIdx.x;
  out[t] = a[t] * 2.0f;
}
extern "C" __global__ void bug_wrong_mask(const float* a, float* out) {
  unsigned t = threadIdx.x;
  float v = a[t];
  v += __shfl_xor_sync(0xffffffffu, v, 1);  // bug: block has only 16 threads
  out[t] = v;
}
extern "C" __global__ void bug_misaligned(const float* a, float* out) {
  unsigned t = threadIdx.x;
  float4 v = reinterpret_cast<const float4*>(a + 1)[t];  // bug: a+1 is not 16-byte aligned
  out[t] = v.x + v.y + v.z + v.w;
}
