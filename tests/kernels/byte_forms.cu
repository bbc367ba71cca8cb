// Byte and 16-bit forms, checked against Rust in tests/sim.rs and on a GPU
// by tests/sim_vs_hardware.rs.
//
// prmt_forms: prmt.b32 (the default mode) through __byte_perm (nvcc masks
// the selector to its byte indices) and raw, every selector nibble, the
// sign-replicating top bit included, on words with every byte's sign bit
// both ways.
extern "C" __global__ void prmt_forms(const unsigned* a, const unsigned* b, const unsigned* s,
                                      unsigned* out, unsigned n) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  unsigned raw;
  asm("prmt.b32 %0, %1, %2, %3;" : "=r"(raw) : "r"(a[i]), "r"(b[i]), "r"(s[i]));
  out[2 * i] = __byte_perm(a[i], b[i], s[i]);
  out[2 * i + 1] = raw;
}

// short_forms: cvt.u16.u32 (the low half), setp.eq.s16 / setp.ne.s16 on
// those halves (what nvcc makes of a switch over a few small values).
extern "C" __global__ void short_forms(const unsigned* a, const unsigned* b, unsigned* out,
                                       unsigned n) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  unsigned lo, eq, ne;
  asm("{\n\t.reg .u16 x, y;\n\t.reg .pred p, q;\n\t"
      "cvt.u16.u32 x, %3;\n\tcvt.u16.u32 y, %4;\n\t"
      "cvt.u32.u16 %0, x;\n\t"
      "setp.eq.s16 p, x, y;\n\tselp.u32 %1, 1, 0, p;\n\t"
      "setp.ne.s16 q, x, y;\n\tselp.u32 %2, 1, 0, q;\n\t}"
      : "=r"(lo), "=r"(eq), "=r"(ne)
      : "r"(a[i]), "r"(b[i]));
  out[3 * i] = lo;
  out[3 * i + 1] = eq;
  out[3 * i + 2] = ne;
}
