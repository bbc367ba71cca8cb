// f32 instruction family: add/sub/mul/fma/div.rn/sqrt.rn/min/max/abs/neg, approximate exp/log/tanh/rcp/rsqrt.
extern "C" __global__ void f32_exact(const float* a, const float* b, float* out, unsigned n) {
  unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float x = a[i], y = b[i];
  float* o = out + i * 10;
  o[0] = x + y;
  o[1] = x - y;
  o[2] = x * y;
  o[3] = fmaf(x, y, 1.5f);
  o[4] = x / y;
  o[5] = sqrtf(fabsf(x));
  o[6] = fminf(x, y);
  o[7] = fmaxf(x, y);
  o[8] = -fabsf(y);
  o[9] = (float)(int)x + (float)(unsigned)fabsf(y) + (x < y ? 1.0f : 0.0f);
}
extern "C" __global__ void f32_approx(const float* a, float* out, unsigned n) {
  unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float x = a[i];
  float* o = out + i * 6;
  o[0] = __expf(x);
  o[1] = __logf(fabsf(x) + 1.0f);
  o[2] = tanhf(x);
  o[3] = __fdividef(1.0f, x);
  o[4] = rsqrtf(fabsf(x) + 1.0f);
  o[5] = expf(x);
}
