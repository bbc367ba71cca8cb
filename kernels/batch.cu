// One training batch on the device, around the model: its window starts,
// its targets and its loss. The first and last make a training step
// replayable as one CUDA graph (src/gpu/engine.rs, `GpuEngine`): a captured
// graph repeats the same launches with the same arguments every time, so
// whatever changes from one step to the next must live in device memory and
// be advanced by the graph itself.
//
//   batch_select_u32     at the head of the step: the next B window starts
//                        of the epoch order, at a device-side cursor, into
//                        the fixed starts buffer the step's kernels read;
//                        advances the cursor by B.
//   batch_targets_u32    the B targets, decoded from the packed corpus at
//                        those starts, so a batch on the device is its starts.
//   loss_log_append_f32  at the tail: appends the step's loss sum to a
//                        device loss log, so the host reads many steps'
//                        losses back in one copy instead of one per step.
//   batch_stream_targets_u32  a stream batch's B*L targets (the next
//                        character of every step of every stream).
//   stream_state_carry_f32    after a stream step: the final (h, c) of the
//                        batch into the carried state the next batch
//                        starts from.
//   op_classes_onehot_u32     the LSTM op's class indices (src/gpu/op.rs)
//                        into the packed one-hot rows and row starts its
//                        layer 0 reads as a corpus, so indices already on
//                        the device never go through the host.
//
// All are exact (no arithmetic on floats), so a replayed step sees
// bit for bit what an uncaptured one does.

#include "common.cuh"

// starts[i] = order[*cursor + i] for i < n, then *cursor += n.
//
// ONE block (the launcher, src/gpu/batch.rs, launches exactly one): every
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

// The targets of one batch, decoded from the packed one-hot corpus:
// targets[b] = class of corpus row starts[b] + T (the character after the
// window), or V if that row has no bit below V (the head then reports a NaN
// loss). One thread per row, grid-stride over B. OVERWRITES targets. This
// keeps a batch on the device down to its B window starts.
extern "C" __global__ void batch_targets_u32(const unsigned long long* __restrict__ corpus_words,
                                             unsigned words_per_row,
                                            const unsigned* __restrict__ starts,
                                            unsigned T, unsigned B, unsigned V,
                                            unsigned* __restrict__ targets) {
  const unsigned stride = gridDim.x * blockDim.x;
  for (unsigned b = blockIdx.x * blockDim.x + threadIdx.x; b < B; b += stride) {
    const size_t row = (size_t)starts[b] + T;
    targets[b] = onehot_class(corpus_words + row * words_per_row, words_per_row, V);
  }
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

// The targets of a stream batch (B streams, L steps), t-major like the
// head's rows: targets[t*B + b] = class of corpus row starts[b] + t + 1 (the
// character after step t's input), or V if that row has no bit below V.
// Grid-stride over L*B. OVERWRITES targets [L*B]. The host guarantees every
// starts[b] + L is a corpus row.
extern "C" __global__ void batch_stream_targets_u32(
    const unsigned long long* __restrict__ corpus_words, unsigned words_per_row,
    const unsigned* __restrict__ starts, unsigned L, unsigned B, unsigned V,
    unsigned* __restrict__ targets) {
  const size_t n = (size_t)L * B, stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    const size_t t = i / B, b = i % B;
    const size_t row = (size_t)starts[b] + t + 1;
    targets[i] = onehot_class(corpus_words + row * words_per_row, words_per_row, V);
  }
}

// The carried state after a stream step: state[0..n) = h_last and
// state[n..2n) = c_last, n = B*H (h_last, c_last: step L-1 of the batch's
// saved h and c; state: the [2, B, H] buffer the next batch's forward reads
// as h0, c0 and its backward as c0, so it is written only after that
// backward). Grid-stride over n. OVERWRITES state.
extern "C" __global__ void stream_state_carry_f32(const float* __restrict__ h_last,
                                                  const float* __restrict__ c_last, unsigned n,
                                                  float* __restrict__ state) {
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    state[i] = h_last[i];
    state[(size_t)n + i] = c_last[i];
  }
}

// The LSTM op's class indices as its one-hot layer 0 reads them
// (src/gpu/op.rs, `LstmDevice::forward_classes*`): classes [T, B], index
// k = t*B + b, becomes row b*T + t of words [B*T, words_per_row] (bit
// classes[k] % 64 of word classes[k] / 64 set, every other bit of the row
// clear: `corpus::onehot`'s packing), and starts[b] = b*T, so batch row b's
// window is its T rows. An index >= In sets no bit; for each such index
// *bad_count += 1 and *first_bad = min(*first_bad, k), which the host sets
// to 0 and 0xffffffff before the launch and reads before the recurrence
// runs. One thread a word, grid-stride in the order of words (so a warp's
// stores are contiguous; the reads of classes are T*B u32s, a fraction of
// the words), then over B for starts. OVERWRITES words and starts.
extern "C" __global__ void op_classes_onehot_u32(const unsigned* __restrict__ classes,
                                                 unsigned T, unsigned B, unsigned In,
                                                 unsigned words_per_row,
                                                 unsigned long long* __restrict__ words,
                                                 unsigned* __restrict__ starts,
                                                 unsigned* __restrict__ bad_count,
                                                 unsigned* __restrict__ first_bad) {
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  const size_t n = (size_t)T * B * words_per_row;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    const size_t row = i / words_per_row;
    const unsigned w = (unsigned)(i % words_per_row);
    const unsigned b = (unsigned)(row / T), t = (unsigned)(row % T);
    const unsigned k = t * B + b;
    const unsigned c = classes[k];
    unsigned long long word = 0;
    if (c < In) {
      if (c / 64 == w) word = 1ull << (c % 64);
    } else if (w == 0) {
      atomicAdd(bad_count, 1u);
      atomicMin(first_bad, k);
    }
    words[i] = word;
  }
  for (size_t b = (size_t)blockIdx.x * blockDim.x + threadIdx.x; b < B; b += stride)
    starts[b] = (unsigned)b * T;
}
