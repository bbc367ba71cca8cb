#!/usr/bin/env python3
"""The PyTorch side of the stream-mode comparison (issue 18): char-rnn's
training loop in `nn.LSTM`, the same job as `charlstm-cuda train --mode
stream`: B contiguous streams over the lower-cased corpus, each batch the
next L characters of every stream, one-hot input, LSTM(H) + Linear, the
mean cross-entropy over all B*L next-character targets, the state carried
from batch to batch (detached: truncated BPTT), RMSprop lr 0.01 rho 0.9
eps 1e-7 (Keras' and charlstm-cuda's; torch's `alpha` is rho).

Streams as charlstm-cuda cuts them (src/corpus/streams.rs): stream length
S = floor(chars / B), stream b's batch k starts at b*S + k*L (offset 0:
the per-epoch offset only moves where the batches start), batches per
epoch floor((S - L) / L).

Times `--batches` training batches after `--warmup` untimed ones on the
host clock and prints one JSON object: batch_s (median seconds per batch),
batches_per_epoch, epoch_estimate_s (batch_s x batches_per_epoch), the last
batch's loss, torch's version and thread count. CPU only: the comparison
the issue asks for is on this machine's CPU.

Usage: python3 scripts/bench_stream.py --corpus nietzsche.txt
       [--batch 128] [--seq-len 60] [--hidden 128] [--batches 20]
       [--warmup 3] [--threads N]
"""

import argparse
import json
import statistics
import sys
import time

try:
    import torch
except ImportError as e:
    sys.exit(f"bench_stream.py needs PyTorch ({e}): scripts/setup-interop.sh makes a CPU one "
             "in .venv-interop/")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", required=True, help="the text file (lower-cased, as the notebook does)")
    ap.add_argument("--batch", type=int, default=128, help="B, the number of streams")
    ap.add_argument("--seq-len", type=int, default=60, help="L, steps per batch")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--batches", type=int, default=20, help="timed batches")
    ap.add_argument("--warmup", type=int, default=3, help="untimed batches first")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)

    with open(a.corpus, encoding="utf-8") as f:
        text = f.read().lower()
    chars = sorted(set(text))
    v = len(chars)
    index = {c: i for i, c in enumerate(chars)}
    classes = torch.tensor([index[c] for c in text], dtype=torch.long)
    b, L = a.batch, a.seq_len
    s = len(classes) // b
    per_epoch = (s - L) // L
    if per_epoch < 1:
        sys.exit(f"a stream of {s} characters holds no batch of {L} steps; use a shorter --seq-len "
                 "or fewer streams")
    streams = classes[: b * s].view(b, s)
    eye = torch.eye(v)

    torch.manual_seed(42)
    lstm = torch.nn.LSTM(v, a.hidden)  # time-major [L, B, V], as our op
    dense = torch.nn.Linear(a.hidden, v)
    params = list(lstm.parameters()) + list(dense.parameters())
    opt = torch.optim.RMSprop(params, lr=0.01, alpha=0.9, eps=1e-7)
    loss_fn = torch.nn.CrossEntropyLoss()
    state = None
    times, loss = [], None
    for k in range(a.warmup + a.batches):
        kk = k % per_epoch
        if kk == 0:
            state = None  # a new epoch starts from zero, as ours does
        t0 = time.perf_counter()
        chunk = streams[:, kk * L : kk * L + L + 1]  # [B, L + 1]
        x = eye.index_select(0, chunk[:, :L].t().reshape(-1)).view(L, b, v)
        y = chunk[:, 1:].t().reshape(-1)
        out, (h, c) = lstm(x, state)
        logits = dense(out.reshape(L * b, a.hidden))
        loss = loss_fn(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state = (h.detach(), c.detach())
        loss_value = loss.item()
        if k >= a.warmup:
            times.append(time.perf_counter() - t0)
    batch_s = statistics.median(times)
    print(json.dumps({
        "reference": f"PyTorch {torch.__version__} nn.LSTM on the CPU",
        "threads": torch.get_num_threads(),
        "vocab": v, "hidden": a.hidden, "batch": b, "seq_len": L,
        "batches_per_epoch": per_epoch,
        "batch_s": batch_s,
        "epoch_estimate_s": batch_s * per_epoch,
        "timed_batches": len(times),
        "last_loss": loss_value,
    }))


if __name__ == "__main__":
    main()
