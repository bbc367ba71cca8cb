// Calls to non-inlined device functions (`call` to `.func`): scalar
// arguments and a return value, a void function writing through a pointer,
// and a function that itself calls another. Results are checked in Rust:
// out[3 * i]     = mix(a[i], i)           = a[i] * 3 + (i ^ 5)
// out[3 * i + 1] = twice(m) = mix(m, 0) - 5 + m + 1 = 4 * m + 1 (wrapping)
// out[3 * i + 2] = i + 100, stored by store_plus
__device__ __noinline__ unsigned mix(unsigned x, unsigned i) { return x * 3u + (i ^ 5u); }

__device__ __noinline__ unsigned twice(unsigned x) { return mix(x, 0u) - 5u - x + 2u * x + 1u; }

__device__ __noinline__ void store_plus(unsigned* p, unsigned v, unsigned k) { *p = v + k; }

extern "C" __global__ void calls(const unsigned* a, unsigned* out, unsigned n) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const unsigned m = mix(a[i], i);
  out[3 * i] = m;
  out[3 * i + 1] = twice(m);
  store_plus(out + 3 * i + 2, i, 100u);
}
