#!/usr/bin/env python3
"""The PyTorch side of stream-mode training on the CPU (issue 18), for
`cargo run --release --example stream_bench`, which times charlstm-cuda's
stream step on the same batches in the same run and prints the ratio.

The same loop as `train --mode stream`: B streams of the training text
(the first int(N * (1 - val_fraction)) characters, cut as Keras cuts),
S = that // B characters each; batch k is characters [b*S + k*L, b*S +
k*L + L) of every stream b (offset 0, the first epoch's batches with r = 0)
and their next characters as targets. nn.LSTM(V, H) over one-hot input
[L, B, V], its state carried from batch to batch and detached (truncated
BPTT), nn.Linear(H, V), the mean cross-entropy over all B*L targets,
RMSprop(lr 0.01, alpha 0.9, eps 1e-7: Keras' and our rho and epsilon; the
same update, ms = rho*ms + (1-rho)*g^2, p -= lr*g/(sqrt(ms)+eps)), fp32.

Each batch is timed alone (time.perf_counter around forward, loss,
backward and step; the loss is read with .item() every step, as ours is),
after --warmup untimed batches. Prints one JSON object: the median and
mean seconds per batch, the batches, the first and last loss, torch's
version and threads.

Usage: python3 scripts/bench_stream.py --corpus nietzsche.txt [--batch 128]
       [--seq-len 60] [--hidden 128] [--batches 20] [--warmup 2]
       [--val-fraction 0.1] [--threads N]

With CHARLSTM_LOCKSTEP=1 each batch (the untimed ones too) waits for a
line on stdin and prints "step <seconds>" when done, as the example does
then: scripts/lockstep.py alternates the two batch by batch.
"""

import argparse
import json
import os
import statistics
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:
    sys.exit(f"bench_stream.py needs PyTorch ({e}): pip install torch")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seq-len", type=int, default=60)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=0, help="0: torch's default")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    with open(a.corpus, encoding="utf-8") as f:
        text = f.read().lower()
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.long)
    train_rows = int(len(ids) * (1.0 - a.val_fraction))
    B, L, H, V = a.batch, a.seq_len, a.hidden, len(vocab)
    S = train_rows // B
    per_epoch = (S - L) // L
    total = a.warmup + a.batches
    if per_epoch < total:
        sys.exit(f"streams of {S} characters hold {per_epoch} batches of {L}; asked for {total}")
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(V, H)
    head = torch.nn.Linear(H, V)
    params = list(lstm.parameters()) + list(head.parameters())
    opt = torch.optim.RMSprop(params, lr=0.01, alpha=0.9, eps=1e-7)
    base = torch.arange(B) * S
    steps = torch.arange(L + 1).unsqueeze(1)
    state = None
    times, losses = [], []
    lockstep = os.environ.get("CHARLSTM_LOCKSTEP") == "1"
    for k in range(total):
        rows = ids[base.unsqueeze(0) + k * L + steps]  # [L + 1, B]
        if lockstep and not sys.stdin.readline():
            break
        started = time.perf_counter()
        x = F.one_hot(rows[:-1], V).float()
        y = rows[1:]
        out, (h, c) = lstm(x, state)
        logits = head(out)
        loss = F.cross_entropy(logits.reshape(L * B, V), y.reshape(L * B))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        value = loss.item()
        state = (h.detach(), c.detach())
        took = time.perf_counter() - started
        if lockstep:
            print(f"step {took:.6f}", flush=True)
        if k >= a.warmup:
            times.append(took)
            losses.append(value)
    if not times:
        sys.exit(f"bench_stream.py: stdin closed before a timed batch (the first {a.warmup} are untimed); "
                 "scripts/lockstep.py drives CHARLSTM_LOCKSTEP=1")
    print(json.dumps({
        "batch_s_median": statistics.median(times),
        "batch_s_mean": statistics.fmean(times),
        "batches": len(times),
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "batch": B, "seq_len": L, "hidden": H, "vocab": V,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
