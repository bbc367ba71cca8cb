#!/usr/bin/env python3
"""The PyTorch side of `cargo bench --bench lstm_op`: torch.nn.LSTM forward
+ backward on the very tensors charlstm-cuda's ops::Lstm ran, on the device
it ran on (the metadata's `device`: cpu, or cuda, where nn.LSTM runs cuDNN
in strict fp32, TF32 off), timed in the same run, and checked against the
op's results.

Reads safetensors files the bench wrote, one a case (f32):
  x [T, B, In]       the input, dense (a one-hot case has one-hot rows here:
                     nn.LSTM has no class-index input)
  dy [T, B, H]       the gradient at every step of the top layer's output
  kernel_l{k}, recurrent_kernel_l{k}, bias_l{k}   Keras layout, per layer
  ours_y, ours_dkernel_l{k}, ours_drecurrent_kernel_l{k}, ours_dbias_l{k},
  ours_dx (dense cases)                           the op's results
and the case in its metadata (layers, hidden, dense, threads, reps, and
device: cpu when absent).

Weights go in by the mapping docs/lstm-op.md states: weight_ih_l{k} =
kernel^T, weight_hh_l{k} = recurrent_kernel^T (gate order i, f, g, o is
Keras' i, f, c, o), bias_ih_l{k} = bias, bias_hh_l{k} = 0; so the gradient
of bias_ih is the op's bias gradient.

Timed: one warm-up, then the median of `reps` runs of forward (y, (h_n,
c_n) = lstm(x)) + backward (y.backward(dy)), x.requires_grad only when the
case is dense (the op returns dx only then); on cuda each run from a
synchronised start to torch.cuda.synchronize() after the backward.
Threads: torch.set_num_threads(threads), one inter-op thread.

Prints one JSON array, an object per case in the order given: median_s,
runs_s, max_rel_diff (per tensor, the largest absolute difference to the
op's y or gradient over that tensor's largest absolute value), the torch
version, the device and the thread count. All cases in one process: on a
GPU machine a Python start with torch and CUDA costs seconds.

Usage: python3 scripts/bench_lstm_op.py CASE.safetensors [CASE.safetensors ...]
"""

import json
import statistics
import sys
import time

try:
    import torch
    from safetensors import safe_open
except ImportError as e:
    sys.exit(f"bench_lstm_op.py needs PyTorch and safetensors ({e}): bash scripts/setup-interop.sh")


def case(path):
    """Times and checks the case in `path`; returns its JSON object."""
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
        t = {k: f.get_tensor(k) for k in f.keys()}
    layers, hidden = int(meta["layers"]), int(meta["hidden"])
    dense, threads, reps = meta["dense"] == "true", int(meta["threads"]), int(meta["reps"])
    device = meta.get("device", "cpu")
    if device == "cuda":
        if not torch.cuda.is_available():
            sys.exit("bench_lstm_op.py: the case ran on cuda, and this torch sees no GPU")
        # Strict fp32, as the op computes: no TF32 in cuDNN's or cuBLAS's products.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        sync = torch.cuda.synchronize
    elif device == "cpu":
        sync = lambda: None  # noqa: E731
    else:
        sys.exit(f"bench_lstm_op.py: unknown device {device!r} in {path}")
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set in this process
    t = {k: v.to(device) for k, v in t.items()}
    x = t["x"]
    lstm = torch.nn.LSTM(x.shape[2], hidden, num_layers=layers).to(device)
    with torch.no_grad():
        for k in range(layers):
            getattr(lstm, f"weight_ih_l{k}").copy_(t[f"kernel_l{k}"].T)
            getattr(lstm, f"weight_hh_l{k}").copy_(t[f"recurrent_kernel_l{k}"].T)
            getattr(lstm, f"bias_ih_l{k}").copy_(t[f"bias_l{k}"])
            getattr(lstm, f"bias_hh_l{k}").zero_()
    dy = t["dy"]

    def step():
        lstm.zero_grad(set_to_none=True)
        xi = x.detach().clone().requires_grad_(dense)
        y, _ = lstm(xi)
        y.backward(dy)
        return xi, y

    step()
    runs = []
    for _ in range(reps):
        sync()
        start = time.perf_counter()
        xi, y = step()
        sync()
        runs.append(time.perf_counter() - start)

    def diff(a, b):
        return float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))

    diffs = {"y": diff(y.detach(), t["ours_y"])}
    for k in range(layers):
        diffs[f"kernel_l{k}"] = diff(getattr(lstm, f"weight_ih_l{k}").grad.T, t[f"ours_dkernel_l{k}"])
        diffs[f"recurrent_kernel_l{k}"] = diff(
            getattr(lstm, f"weight_hh_l{k}").grad.T, t[f"ours_drecurrent_kernel_l{k}"]
        )
        diffs[f"bias_l{k}"] = diff(getattr(lstm, f"bias_ih_l{k}").grad, t[f"ours_dbias_l{k}"])
    if dense:
        diffs["dx"] = diff(xi.grad, t["ours_dx"])
    return {
        "median_s": statistics.median(runs),
        "runs_s": runs,
        "max_rel_diff": diffs,
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
    }


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: bench_lstm_op.py CASE.safetensors [CASE.safetensors ...]")
    print(json.dumps([case(p) for p in sys.argv[1:]]))


if __name__ == "__main__":
    main()
