// A loop-heavy kernel for measuring the simulator's instructions per second.
extern "C" __global__ void bench_loop(unsigned* out, unsigned iters) {
  unsigned x = threadIdx.x + blockIdx.x * 977u;
  for (unsigned i = 0; i < iters; i++) {
    x = x * 1664525u + 1013904223u;
    x ^= x >> 13;
  }
  out[blockIdx.x * blockDim.x + threadIdx.x] = x;
}
