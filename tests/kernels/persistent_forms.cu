// Instruction forms the persistent LSTM, weight-gradient and step kernels
// added (max.u32, min.u64, not.b64, setp.le.u32, setp.eq.b32, xor.pred,
// not.pred), written as inline PTX so each form is exactly the one named;
// tests/lstm_persistent.rs checks every result against Rust.
extern "C" __global__ void persistent_forms(const unsigned* __restrict__ a,
                                            const unsigned long long* __restrict__ w,
                                            unsigned* __restrict__ out32,
                                            unsigned long long* __restrict__ out64, unsigned n) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const unsigned x = a[2 * i], y = a[2 * i + 1];
  const unsigned long long p = w[2 * i], q = w[2 * i + 1];
  unsigned mx, le, eq, xo, nx;
  unsigned long long mn, nt;
  asm("max.u32 %0, %1, %2;" : "=r"(mx) : "r"(x), "r"(y));
  asm("min.u64 %0, %1, %2;" : "=l"(mn) : "l"(p), "l"(q));
  asm("not.b64 %0, %1;" : "=l"(nt) : "l"(p));
  asm("{\n\t"
      ".reg .pred %%fa, %%fb, %%fc, %%fd;\n\t"
      "setp.le.u32 %%fa, %4, %5;\n\t"
      "setp.eq.b32 %%fb, %4, %6;\n\t"
      "xor.pred %%fc, %%fa, %%fb;\n\t"
      "not.pred %%fd, %%fc;\n\t"
      "selp.u32 %0, 1, 0, %%fa;\n\t"
      "selp.u32 %1, 1, 0, %%fb;\n\t"
      "selp.u32 %2, 1, 0, %%fc;\n\t"
      "selp.u32 %3, 1, 0, %%fd;\n\t"
      "}"
      : "=r"(le), "=r"(eq), "=r"(xo), "=r"(nx)
      : "r"(x), "r"(y), "r"(x & 0xffu));
  out32[5 * i] = mx;
  out32[5 * i + 1] = le;
  out32[5 * i + 2] = eq;
  out32[5 * i + 3] = xo;
  out32[5 * i + 4] = nx;
  out64[2 * i] = mn;
  out64[2 * i + 1] = nt;
}
