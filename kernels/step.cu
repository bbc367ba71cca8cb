// The two small kernels that make a training step replayable as one CUDA
// graph (src/gpu/engine.rs, `GpuEngine`): a captured graph repeats the same
// launches with the same arguments every time, so whatever changes from one
// step to the next must live in device memory and be advanced by the graph
// itself.
//
//   batch_select_u32     at the head of the step: the next B window starts
//                        of the epoch order, at a device-side cursor, into
//                        the fixed starts buffer the step's kernels read;
//                        advances the cursor by B.
//   loss_log_append_f32  at the tail: appends the step's loss sum to a
//                        device loss log, so the host reads many steps'
//                        losses back in one copy instead of one per step.
//
// Both are exact copies (no arithmetic on floats), so a replayed step sees
// bit for bit what an uncaptured one does.

// starts[i] = order[*cursor + i] for i < n, then *cursor += n.
//
// ONE block (the launcher, src/gpu/step.rs, launches exactly one): every
// thread reads the cursor, the barrier orders those reads before thread 0
// writes the new value, and a single block needs no grid-wide ordering.
// Grid-stride within the block covers any n. The host guarantees
// *cursor + n <= the order's length (it replays a step only for a batch it
// found in the order at that position).
extern "C" __global__ void batch_select_u32(const unsigned* __restrict__ order,
                                            unsigned* __restrict__ cursor, unsigned n,
                                            unsigned* __restrict__ starts) {
  const unsigned base = *cursor;
  for (unsigned i = threadIdx.x; i < n; i += blockDim.x) starts[i] = order[base + i];
  __syncthreads();
  if (threadIdx.x == 0) *cursor = base + n;
}

// log[*count] = *loss, then *count += 1; when the log is full (*count >=
// capacity) the value is dropped but the count still advances, so the host,
// which counts the steps it queued, sees the overflow instead of a silently
// overwritten entry. One thread (one block of one thread suffices: a single
// f32 is copied).
extern "C" __global__ void loss_log_append_f32(const float* __restrict__ loss,
                                               float* __restrict__ log,
                                               unsigned* __restrict__ count,
                                               unsigned capacity) {
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    const unsigned i = *count;
    if (i < capacity) log[i] = *loss;
    *count = i + 1;
  }
}
