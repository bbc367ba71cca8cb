#!/usr/bin/env python3
"""The PyTorch side of `charlstm-cuda bench`: the same model, shapes and
optimizer (LSTM(128) + Linear softmax, batch 128, windows of 60, RMSprop
lr 0.01 rho 0.9 eps 1e-7) in `nn.LSTM`, which runs cuDNN's LSTM on a GPU,
timed with CUDA events, so the ratio to this crate is measured on the same
GPU in one run (scripts/gpu-check.sh runs both).

Prints one JSON object with the keys of `charlstm-cuda bench`'s rows:
train_step_s (median), step_latency_us (train_step_s / (2 maxlen): one of
the maxlen forward + maxlen backward dependent recurrent steps, against the
1 us budget, step_budget_us), epoch_slice_s, epoch_estimate_s, generate_s
(4 temperatures x 400 chars, window mode like the notebook, sampled on the
device), last_loss; with --full-epoch also epoch_s and epoch_loss (one whole
shuffled epoch, Keras' running mean). The job's shapes (vocab, hidden,
batch, maxlen, step, batches_per_epoch, gen_length, temperatures) come
along: `charlstm-cuda bench --pytorch FILE` refuses a file of another job.

Inputs are one-hot windows built on the device from the corpus indices
(F.one_hot of a gather), the usual PyTorch port of the Keras example. The
loss is read back (.item()) only at the end of a timed region, so PyTorch is
not charged a host sync per step; charlstm-cuda does read its loss every
step.

Usage: python3 scripts/bench_pytorch.py [--corpus nietzsche.txt] [--device cuda]
       [--steps 10] [--slice-batches 20] [--full-epoch] [--out pt.json]
Runs on the CPU too (--device cpu; no cuDNN then, and the row says so).
"""

import argparse
import json
import statistics
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:
    sys.exit(f"bench_pytorch.py needs PyTorch ({e}): pip install torch (its CUDA build on a GPU "
             "machine; scripts/setup-interop.sh makes a CPU one in .venv-interop/)")


TEMPERATURES = [0.2, 0.5, 1.0, 1.2]
STEP_BUDGET_US = 1.0


def load_text(path, n_synthetic=600_901):
    if path:
        with open(path, encoding="utf-8") as f:
            # Python text mode turns CRLF into LF, as charlstm-cuda does.
            return f.read().lower(), path
    gen = torch.Generator().manual_seed(0)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 .,;:!?'\"()-\n=[]_&*+"
    idx = torch.randint(len(alphabet), (n_synthetic,), generator=gen)
    return "".join(alphabet[i] for i in idx.tolist()), "synthetic"


class CharLstm(torch.nn.Module):
    def __init__(self, vocab, hidden):
        super().__init__()
        self.lstm = torch.nn.LSTM(vocab, hidden, batch_first=True)
        self.dense = torch.nn.Linear(hidden, vocab)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.dense(out[:, -1, :])  # logits of the next character


class Timer:
    """Seconds between two points on the device's clock (CUDA events), or
    the host clock on the CPU."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def __enter__(self):
        if self.cuda:
            self.start = torch.cuda.Event(enable_timing=True)
            self.end = torch.cuda.Event(enable_timing=True)
            self.start.record()
        else:
            self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self.end.record()
            self.end.synchronize()
            self.seconds = self.start.elapsed_time(self.end) / 1e3
        else:
            self.seconds = time.perf_counter() - self.t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", help="text file (default: synthetic, same size)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--slice-batches", type=int, default=20)
    ap.add_argument("--gen-length", type=int, default=400)
    ap.add_argument("--full-epoch", action="store_true")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--maxlen", type=int, default=60)
    ap.add_argument("--step", type=int, default=3)
    ap.add_argument("--out", help="also write the JSON to this file")
    a = ap.parse_args()
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit(f"bench_pytorch.py: --device {a.device} but torch {torch.__version__} sees no "
                 "CUDA GPU (a CPU-only build, or no driver); use --device cpu to time the CPU")

    dev = torch.device(a.device)
    torch.manual_seed(42)
    text, source = load_text(a.corpus)
    chars = sorted(set(text))
    v = len(chars)
    index = {c: i for i, c in enumerate(chars)}
    classes = torch.tensor([index[c] for c in text], dtype=torch.long, device=dev)
    starts_all = torch.arange(0, len(text) - a.maxlen, a.step, device=dev)
    batches_per_epoch = -(-len(starts_all) // a.batch_size)
    offsets = torch.arange(a.maxlen, device=dev)

    def batch(starts):
        x = F.one_hot(classes[starts[:, None] + offsets], v).float()
        return x, classes[starts + a.maxlen]

    model = CharLstm(v, a.hidden).to(dev)
    opt = torch.optim.RMSprop(model.parameters(), lr=0.01, alpha=0.9, eps=1e-7)
    loss_fn = torch.nn.CrossEntropyLoss()

    def train_step(starts):
        x, y = batch(starts)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    order = starts_all[torch.randperm(len(starts_all), device=dev)]
    b = a.batch_size

    def nth(i):
        s = (i * b) % len(order)
        return order[s : s + b]

    for i in range(3):  # warm-up: cuDNN plans, allocator, kernels
        train_step(nth(i))
    steps = []
    for i in range(a.steps):
        with Timer(dev) as t:
            train_step(nth(i + 3))
        steps.append(t.seconds)

    slice_n = min(a.slice_batches, batches_per_epoch)
    with Timer(dev) as t:
        for i in range(slice_n):
            loss = train_step(nth(i))
    slice_s = t.seconds
    last_loss = loss.item()

    # Generation: the notebook's loop, all temperatures as one batch of
    # windows, sampling on the device (no host sync per character).
    temps = torch.tensor(TEMPERATURES, device=dev)[:, None]
    window = classes[: a.maxlen].repeat(len(temps), 1)
    out = []
    model.eval()
    with torch.no_grad(), Timer(dev) as t:
        for _ in range(a.gen_length):
            probs = torch.softmax(model(F.one_hot(window, v).float()), dim=-1)
            w = torch.exp(torch.log(probs.double()) / temps)
            nxt = torch.multinomial(w / w.sum(dim=-1, keepdim=True), 1)
            out.append(nxt)
            window = torch.cat([window[:, 1:], nxt], dim=1)
    generate_s = t.seconds
    model.train()

    result = {
        "backend": "pytorch",
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version() if dev.type == "cuda" else None,
        "corpus": source,
        "vocab": v,
        "hidden": a.hidden,
        "batch": b,
        "maxlen": a.maxlen,
        "step": a.step,
        "batches_per_epoch": batches_per_epoch,
        "gen_length": a.gen_length,
        "temperatures": TEMPERATURES,
        "recurrent_steps_per_batch": 2 * a.maxlen,
        "step_budget_us": STEP_BUDGET_US,
        "train_step_s": statistics.median(steps),
        "step_latency_us": statistics.median(steps) * 1e6 / (2 * a.maxlen),
        "epoch_slice_s": slice_s,
        "slice_batches": slice_n,
        "epoch_estimate_s": slice_s / slice_n * batches_per_epoch,
        "generate_s": generate_s,
        "last_loss": last_loss,
    }
    if a.full_epoch:
        # A fresh model, one shuffled epoch, Keras' running mean of the loss.
        torch.manual_seed(42)
        model = CharLstm(v, a.hidden).to(dev)
        opt = torch.optim.RMSprop(model.parameters(), lr=0.01, alpha=0.9, eps=1e-7)
        order = starts_all[torch.randperm(len(starts_all), device=dev)]
        total = torch.zeros((), device=dev)
        with Timer(dev) as t:
            for i in range(batches_per_epoch):
                s = order[i * b : (i + 1) * b]
                total += train_step(s).detach() * len(s)
        result["epoch_s"] = t.seconds
        result["epoch_loss"] = (total / len(order)).item()
    text = json.dumps(result, indent=2)
    print(text)
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
