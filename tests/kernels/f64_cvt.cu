// f64 arithmetic and conversions between f64, f32, f16, bf16 and integers with rounding.
// (cuda_fp16.h needs headers the PyPI nvcc lacks, so f16/bf16 conversions are inline PTX.)
extern "C" __global__ void f64_ops(const double* a, const double* b, double* out, unsigned n) {
  unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  double x = a[i], y = b[i];
  double* o = out + i * 5;
  o[0] = x + y;
  o[1] = x * y;
  o[2] = fma(x, y, 0.25);
  o[3] = x / y;
  o[4] = sqrt(fabs(x));
}
extern "C" __global__ void cvt_ops(const float* a, unsigned short* h, unsigned short* bf, float* back, int* ints, double* d, unsigned n) {
  unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float x = a[i];
  unsigned short hx, bx;
  float hb, bb;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(hx) : "f"(x));
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(bx) : "f"(x));
  asm("cvt.f32.f16 %0, %1;" : "=f"(hb) : "h"(hx));
  asm("cvt.f32.bf16 %0, %1;" : "=f"(bb) : "h"(bx));
  h[i] = hx;
  bf[i] = bx;
  back[2 * i] = hb;
  back[2 * i + 1] = bb;
  ints[3 * i] = __float2int_rn(x);
  ints[3 * i + 1] = __float2int_rz(x);
  ints[3 * i + 2] = (int)floorf(x);
  d[i] = (double)x * 3.0;
}
// Explicitly rounded f64 products (__dmul_rn: mul.rn.f64, never fused into
// an FMA) and the f64 -> f32 narrowing (cvt.rn.f32.f64), as
// grad_norm_clip_f32 uses them.
extern "C" __global__ void f64_rn_ops(const double* a, const double* b, double* out, float* narrowed,
                                      unsigned n) {
  unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const double x = a[i], y = b[i];
  out[2 * i] = __dmul_rn(x, y);
  out[2 * i + 1] = __dadd_rn(__dmul_rn(x, x), y);
  narrowed[i] = (float)__ddiv_rn(x, y);
}
