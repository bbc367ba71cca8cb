// Warp collectives: shfl.sync bfly/down/up/idx, vote.sync any/all/ballot, bar.warp.sync.
extern "C" __global__ void warp_ops(const float* a, float* out, unsigned* votes) {
  unsigned t = threadIdx.x, lane = t & 31;
  float v = a[t];
  float s = v;
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  float d = __shfl_down_sync(0xffffffffu, v, 3);
  float u = __shfl_up_sync(0xffffffffu, v, 5);
  float x = __shfl_sync(0xffffffffu, v, (lane * 7) & 31);
  __syncwarp();
  out[4 * t] = s;
  out[4 * t + 1] = d;
  out[4 * t + 2] = u;
  out[4 * t + 3] = x;
  unsigned b = __ballot_sync(0xffffffffu, v > 0.0f);
  int any = __any_sync(0xffffffffu, v > 100.0f);
  int all = __all_sync(0xffffffffu, v > -100.0f);
  votes[3 * t] = b;
  votes[3 * t + 1] = any;
  votes[3 * t + 2] = all;
}
