// f16/bf16 arithmetic through inline PTX (cuda_fp16.h is not usable with the
// PyPI nvcc): every scalar and packed (x2) form the simulator implements that
// sm_80 accepts, each result stored as raw bits and checked bit-exactly in
// Rust against the `half` crate (round to nearest even). Element i of a, b, c
// holds f16 bits for the f16 forms and bf16 bits for the bf16 forms; packed
// forms take (a[i], b[i]) as (low, high) halves. out[i * HALF_OPS + k] is the
// k-th result below; the packed ones are stored as two halves.
#define HALF_OPS 48

#define BIN(ptx, x, y) ({ unsigned short r_; asm(ptx " %0, %1, %2;" : "=h"(r_) : "h"(x), "h"(y)); r_; })
#define UN(ptx, x) ({ unsigned short r_; asm(ptx " %0, %1;" : "=h"(r_) : "h"(x)); r_; })
#define TRI(ptx, x, y, z) ({ unsigned short r_; asm(ptx " %0, %1, %2, %3;" : "=h"(r_) : "h"(x), "h"(y), "h"(z)); r_; })
#define BIN2(ptx, x, y) ({ unsigned r_; asm(ptx " %0, %1, %2;" : "=r"(r_) : "r"(x), "r"(y)); r_; })
#define UN2(ptx, x) ({ unsigned r_; asm(ptx " %0, %1;" : "=r"(r_) : "r"(x)); r_; })
#define TRI2(ptx, x, y, z) ({ unsigned r_; asm(ptx " %0, %1, %2, %3;" : "=r"(r_) : "r"(x), "r"(y), "r"(z)); r_; })
#define SETP(ptx, x, y) ({ unsigned r_; asm("{ .reg .pred p_; " ptx " p_, %1, %2; selp.u32 %0, 1, 0, p_; }" : "=r"(r_) : "h"(x), "h"(y)); (unsigned short)r_; })

extern "C" __global__ void half_ops(const unsigned short* a, const unsigned short* b,
                                    const unsigned short* c, unsigned short* out, unsigned n) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const unsigned short x = a[i], y = b[i], z = c[i];
  const unsigned xy = x | ((unsigned)y << 16), yz = y | ((unsigned)z << 16),
                 zx = z | ((unsigned)x << 16);
  unsigned short* o = out + (size_t)i * HALF_OPS;
  unsigned w;
  // f16 scalar: 0..16
  o[0] = BIN("add.rn.f16", x, y);
  o[1] = BIN("sub.rn.f16", x, y);
  o[2] = BIN("mul.rn.f16", x, y);
  o[3] = BIN("add.rn.ftz.f16", x, y);
  o[4] = BIN("mul.rn.sat.f16", x, y);
  o[5] = TRI("fma.rn.f16", x, y, z);
  o[6] = TRI("fma.rn.ftz.sat.f16", x, y, z);
  o[7] = TRI("fma.rn.relu.f16", x, y, z);
  o[8] = UN("neg.f16", x);
  o[9] = UN("abs.f16", x);
  o[10] = BIN("min.f16", x, y);
  o[11] = BIN("max.f16", x, y);
  o[12] = SETP("setp.lt.f16", x, y);
  o[13] = SETP("setp.equ.f16", x, y);
  o[14] = UN("neg.ftz.f16", x);
  o[15] = BIN("min.ftz.f16", x, y);
  // bf16 scalar (sm_80 forms; add/sub/mul.bf16 need sm_90): 16..22, more f16 setp: 22..24
  o[16] = TRI("fma.rn.bf16", x, y, z);
  o[17] = TRI("fma.rn.relu.bf16", x, y, z);
  o[18] = UN("neg.bf16", x);
  o[19] = UN("abs.bf16", x);
  o[20] = BIN("min.bf16", x, y);
  o[21] = BIN("max.bf16", x, y);
  o[22] = SETP("setp.ge.ftz.f16", x, y);
  o[23] = SETP("setp.nan.f16", x, y);
  // f16x2: 24..38 (pairs)
  w = BIN2("add.rn.f16x2", xy, yz); o[24] = w; o[25] = w >> 16;
  w = BIN2("sub.rn.f16x2", xy, yz); o[26] = w; o[27] = w >> 16;
  w = BIN2("mul.rn.f16x2", xy, yz); o[28] = w; o[29] = w >> 16;
  w = TRI2("fma.rn.f16x2", xy, yz, zx); o[30] = w; o[31] = w >> 16;
  w = UN2("neg.f16x2", xy); o[32] = w; o[33] = w >> 16;
  w = BIN2("min.f16x2", xy, yz); o[34] = w; o[35] = w >> 16;
  w = BIN2("max.f16x2", xy, yz); o[36] = w; o[37] = w >> 16;
  // bf16x2: 38..48 (pairs)
  w = TRI2("fma.rn.bf16x2", xy, yz, zx); o[38] = w; o[39] = w >> 16;
  w = UN2("neg.bf16x2", xy); o[40] = w; o[41] = w >> 16;
  w = UN2("abs.bf16x2", xy); o[42] = w; o[43] = w >> 16;
  w = BIN2("min.bf16x2", xy, yz); o[44] = w; o[45] = w >> 16;
  w = BIN2("max.bf16x2", xy, yz); o[46] = w; o[47] = w >> 16;
}
