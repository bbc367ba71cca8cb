// Integer instruction family: add/sub/mul/mad/div/rem/shifts/logic/min/max/popc/clz/brev, signed and unsigned, 32 and 64 bit.
extern "C" __global__ void int_ops(const int* a, const int* b, int* out32, long long* out64, unsigned n) {
  unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  int x = a[i], y = b[i];
  unsigned ux = (unsigned)x, uy = (unsigned)y;
  int* o = out32 + i * 16;
  o[0] = x + y;
  o[1] = x - y;
  o[2] = x * y;
  o[3] = __mulhi(x, y);
  o[4] = y != 0 ? x / y : 0;
  o[5] = y != 0 ? x % y : 0;
  o[6] = uy != 0 ? (int)(ux / uy) : 0;
  o[7] = uy != 0 ? (int)(ux % uy) : 0;
  o[8] = (x << (y & 31)) ^ (x >> (y & 31)) ^ (int)(ux >> (uy & 31));
  o[9] = (x & y) | (~x & 0x0f0f);
  o[10] = min(x, y) + max(ux, uy);
  o[11] = abs(x) - (-y);
  o[12] = __popc(x) + __clz(y) * 64 + (int)(__brev(ux) & 0xffff0000);
  o[13] = x < y ? 1 : (x == y ? 2 : 3);
  o[14] = ux < uy ? 5 : 7;
  o[15] = __umulhi(ux, uy);
  long long* q = out64 + i * 4;
  q[0] = (long long)x * (long long)y;
  q[1] = (long long)x * 1000003LL + (long long)y;
  q[2] = (unsigned long long)ux * (unsigned long long)uy;
  q[3] = (((long long)x << 20) / ((long long)(y | 1))) ^
         (long long)((((unsigned long long)ux) << 20) % (((unsigned long long)uy) | 1ULL));  // rem.u64
}
