#!/usr/bin/env python3
"""The PyTorch side of `charlstm-cuda bench`: the same model, shapes and
optimizer (LSTM(128) + Linear softmax, batch 128, windows of 60, RMSprop
lr 0.01 rho 0.9 eps 1e-7; --layers N stacks N layers, nn.LSTM's
num_layers, with --dropout between them as in `bench --layers N
--dropout P`) in `nn.LSTM`, which runs cuDNN's LSTM on a GPU,
timed with CUDA events, so the ratio to this crate is measured on the same
GPU in one run (scripts/gpu-check.sh runs both).

Variants: every (precision x loop) asked for with --variants, each on a
model of the same initialisation:
  precision  fp32: strict IEEE fp32 (torch.backends.cudnn.allow_tf32 and
             torch.backends.cuda.matmul.allow_tf32 off; PyTorch's default
             lets cuDNN use TF32), the contract charlstm-cuda's kernels keep;
             tf32: both on, reported beside it.
  loop       eager: one Python train step per batch;
             graph: that same train step captured once as a CUDA graph
             (torch.cuda.CUDAGraph: forward, loss, backward, RMSprop with
             capturable=True) and replayed per batch, the batch's window
             starts copied into the captured input first.
A variant that cannot run (capture refused, say) records its error and the
others carry on; on the CPU the graph and TF32 variants are recorded as not
applicable.

Prints one JSON object. Its top-level numbers are the headline, the bar
charlstm-cuda is compared with: strict fp32, the faster loop (whole epochs
with --full-epoch, else the epoch estimates), named by "precision", "loop"
and "allow_tf32": train_step_s (median), step_latency_us (train_step_s /
(2 maxlen): one of the maxlen forward + maxlen backward dependent recurrent
steps, against the 1 us budget, step_budget_us), epoch_slice_s,
epoch_estimate_s, last_loss; with --full-epoch also epoch_s and epoch_loss
(one whole shuffled epoch, Keras' running mean). "variants" lists every
variant with the same keys, or "error" / "not_applicable" saying why it has
none. generate_s (4 temperatures x 400 chars, window mode like the notebook,
sampled on the device) is one measurement, eager, strict fp32. The job's
shapes (vocab, hidden, layers, dropout, batch, maxlen, step,
batches_per_epoch, gen_length, temperatures) come along: `charlstm-cuda bench --pytorch FILE` refuses a file
of another job.

Inputs are one-hot windows built on the device from the corpus indices (rows
of an identity matrix gathered by the windows' characters: one kernel, and
capturable). The loss is read back (.item()) only at the end of a timed
region, so PyTorch is not charged a host sync per step; charlstm-cuda does
read its loss every step.

Usage: python3 scripts/bench_pytorch.py [--corpus nietzsche.txt] [--device cuda]
       [--steps 10] [--slice-batches 20] [--full-epoch] [--out pt.json]
       [--hidden 128] [--layers 1] [--dropout 0]
       [--variants fp32-eager,fp32-graph,tf32-eager,tf32-graph]
Runs on the CPU too (--device cpu; no cuDNN then, and the row says so).
"""

import argparse
import json
import statistics
import sys
import time
import warnings

try:
    import torch
except ImportError as e:
    sys.exit(f"bench_pytorch.py needs PyTorch ({e}): pip install torch (its CUDA build on a GPU "
             "machine; scripts/setup-interop.sh makes a CPU one in .venv-interop/)")


TEMPERATURES = [0.2, 0.5, 1.0, 1.2]
STEP_BUDGET_US = 1.0
PRECISIONS = ("fp32", "tf32")
LOOPS = ("eager", "graph")
ALL_VARIANTS = [f"{p}-{l}" for p in PRECISIONS for l in LOOPS]
WARMUP_STEPS = 3


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
    def __init__(self, vocab, hidden, layers=1, dropout=0.0):
        super().__init__()
        self.lstm = torch.nn.LSTM(vocab, hidden, num_layers=layers, dropout=dropout,
                                  batch_first=True)
        self.dense = torch.nn.Linear(hidden, vocab)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.dense(out[:, -1, :])  # logits of the next character


class Timer:
    """Seconds between two points on the device's clock (CUDA events on the
    current stream, where eager steps and graph replays run), or the host
    clock on the CPU."""

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


def set_precision(tf32):
    """Sets cuDNN's and cuBLAS's fp32 math: TF32 allowed or strict IEEE fp32.
    The legacy flags (allow_tf32) first; where this torch also has the
    per-operator controls (fp32_precision, torch >= 2.9) they are set to the
    same, since a mix of the two that disagrees is an error when read. Returns
    the flags as read back."""
    mode = "tf32" if tf32 else "ieee"
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    controls = {
        "cudnn.rnn": getattr(cudnn, "rnn", None),
        "cudnn.conv": getattr(cudnn, "conv", None),
        "cuda.matmul": matmul,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy flags' deprecation notice
        cudnn.allow_tf32 = tf32
        matmul.allow_tf32 = tf32
        flags = {}
        for name, ctl in controls.items():
            if ctl is not None and hasattr(ctl, "fp32_precision"):
                ctl.fp32_precision = mode
                flags[f"{name}.fp32_precision"] = ctl.fp32_precision
        flags["cudnn.allow_tf32"] = bool(cudnn.allow_tf32)
        flags["cuda.matmul.allow_tf32"] = bool(matmul.allow_tf32)
    if (flags["cudnn.allow_tf32"], flags["cuda.matmul.allow_tf32"]) != (tf32, tf32):
        raise RuntimeError(f"asked for allow_tf32={tf32}, torch reads back {flags}")
    return flags


def error_text(e):
    text = f"{type(e).__name__}: {e}".strip()
    return text if len(text) <= 2000 else text[:2000] + " ..."


class Job:
    """The corpus on the device, the windows, and one train step."""

    def __init__(self, a, dev):
        self.a, self.dev = a, dev
        text, self.source = load_text(a.corpus)
        chars = sorted(set(text))
        self.v = len(chars)
        index = {c: i for i, c in enumerate(chars)}
        self.classes = torch.tensor([index[c] for c in text], dtype=torch.long, device=dev)
        self.starts_all = torch.arange(0, len(text) - a.maxlen, a.step, device=dev)
        self.b = a.batch_size
        self.batches_per_epoch = -(-len(self.starts_all) // self.b)
        self.offsets = torch.arange(a.maxlen, device=dev)
        self.eye = torch.eye(self.v, device=dev)
        # One order for the timed steps and slices, one for the whole epoch;
        # the same for every variant.
        gen = torch.Generator().manual_seed(42)
        n = len(self.starts_all)
        self.order = self.starts_all[torch.randperm(n, generator=gen).to(dev)]
        self.epoch_order = self.starts_all[torch.randperm(n, generator=gen).to(dev)]

    def nth(self, i):
        """Batch i of the timing order (wrapping round), always B windows."""
        n = len(self.order)
        s = (i * self.b) % n
        if s + self.b <= n:
            return self.order[s : s + self.b]
        return torch.cat([self.order[s:], self.order[: s + self.b - n]])

    def batch(self, starts):
        """One-hot windows (B, T, V) and next characters (B,) for window
        starts; gathers only (no host sync), so a CUDA graph can hold it."""
        chars = self.classes.index_select(0, (starts[:, None] + self.offsets).reshape(-1))
        x = self.eye.index_select(0, chars).view(len(starts), self.a.maxlen, self.v)
        return x, self.classes.index_select(0, starts + self.a.maxlen)

    def model(self, capturable):
        """A model of the one initialisation (seed 42), its RMSprop, and a
        copy of the initial weights for reset()."""
        torch.manual_seed(42)
        model = CharLstm(self.v, self.a.hidden, self.a.layers, self.a.dropout).to(self.dev)
        opt = torch.optim.RMSprop(model.parameters(), lr=0.01, alpha=0.9, eps=1e-7,
                                  capturable=capturable)
        init = [p.detach().clone() for p in model.parameters()]
        return model, opt, init

    def train_step_fn(self, model, opt):
        """The train step every loop runs: eager calls it per batch, graph
        captures it once and replays it. No host sync inside."""
        loss_fn = torch.nn.CrossEntropyLoss()

        def train_step(starts):
            x, y = self.batch(starts)
            opt.zero_grad(set_to_none=True)  # no device work: capture-safe
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            return loss

        return train_step


def reset(model, opt, init):
    """Back to the initial weights and a fresh optimizer state, in place (a
    captured graph keeps working on the same tensors)."""
    with torch.no_grad():
        for p, p0 in zip(model.parameters(), init):
            p.copy_(p0)
        for state in opt.state.values():
            for t in state.values():
                if torch.is_tensor(t):
                    t.zero_()


class EagerLoop:
    def __init__(self, train_step):
        self.train_step = train_step

    def __call__(self, starts):
        return self.train_step(starts)


class GraphLoop:
    """train_step captured once as a CUDA graph (the whole-network recipe of
    the torch.cuda.graphs notes): warm-up steps on a side stream, then capture
    on that same stream; each call copies the window starts into the captured
    input and replays on the current stream."""

    def __init__(self, train_step, example_starts, warmup=WARMUP_STEPS):
        self.train_step = train_step
        self.static_starts = example_starts.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(warmup):  # autograd, cuDNN and optimizer state set up off-capture
                train_step(self.static_starts)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, stream=stream):
            self.static_loss = train_step(self.static_starts)
        torch.cuda.current_stream().wait_stream(stream)

    def __call__(self, starts):
        if len(starts) != len(self.static_starts):
            # A short last batch of an epoch: not the captured shape.
            return self.train_step(starts)
        self.static_starts.copy_(starts)
        self.graph.replay()
        return self.static_loss


def run_variant(job, precision, loop_name, full_epoch):
    """One variant's numbers (the same keys as the headline)."""
    a, dev, b = job.a, job.dev, job.b
    flags = set_precision(precision == "tf32")
    model, opt, init = job.model(capturable=loop_name == "graph")
    train_step = job.train_step_fn(model, opt)
    if loop_name == "graph":
        loop = GraphLoop(train_step, job.nth(0))
    else:
        loop = EagerLoop(train_step)
    for i in range(WARMUP_STEPS):  # cuDNN plans, allocator, kernels; the graph's first replays
        loop(job.nth(i))
    steps = []
    for i in range(a.steps):
        with Timer(dev) as t:
            loop(job.nth(i + WARMUP_STEPS))
        steps.append(t.seconds)

    slice_n = min(a.slice_batches, job.batches_per_epoch)
    with Timer(dev) as t:
        for i in range(slice_n):
            loss = loop(job.nth(i))
    slice_s = t.seconds
    out = {
        "precision": precision,
        "loop": loop_name,
        "allow_tf32": precision == "tf32",
        "flags": flags,
        "train_step_s": statistics.median(steps),
        "step_latency_us": statistics.median(steps) * 1e6 / (2 * a.maxlen),
        "epoch_slice_s": slice_s,
        "slice_batches": slice_n,
        "epoch_estimate_s": slice_s / slice_n * job.batches_per_epoch,
        "last_loss": loss.item(),
    }
    if full_epoch:
        order = job.epoch_order
        rest = len(order) % b
        if rest:
            # The epoch's short last batch runs eagerly in every loop (a graph
            # holds one shape); set its shape up before the clock starts.
            train_step(order[-rest:])
        # A fresh model (the same initialisation), one shuffled epoch, Keras'
        # running mean of the loss.
        reset(model, opt, init)
        total = torch.zeros((), device=dev)
        with Timer(dev) as t:
            for i in range(job.batches_per_epoch):
                s = order[i * b : (i + 1) * b]
                total.add_(loop(s).detach(), alpha=len(s))
        out["epoch_s"] = t.seconds
        out["epoch_loss"] = (total / len(order)).item()
    return out, model


def generate(job, model):
    """The notebook's generation loop, all temperatures as one batch of
    windows, sampling on the device (no host sync per character); eager,
    strict fp32."""
    a, dev = job.a, job.dev
    set_precision(False)
    temps = torch.tensor(TEMPERATURES, device=dev)[:, None]
    window = job.classes[: a.maxlen].repeat(len(temps), 1)
    out = []
    model.eval()
    with torch.no_grad(), Timer(dev) as t:
        for _ in range(a.gen_length):
            x = job.eye.index_select(0, window.reshape(-1)).view(len(temps), a.maxlen, job.v)
            probs = torch.softmax(model(x), dim=-1)
            w = torch.exp(torch.log(probs.double()) / temps)
            nxt = torch.multinomial(w / w.sum(dim=-1, keepdim=True), 1)
            out.append(nxt)
            window = torch.cat([window[:, 1:], nxt], dim=1)
    model.train()
    return t.seconds


def not_applicable(dev, precision, loop_name):
    """Why a variant does not apply on this device, or None."""
    if dev.type == "cuda":
        return None
    if loop_name == "graph":
        return f"CUDA graphs need a CUDA device, this is {dev.type}"
    if precision == "tf32":
        return (f"TF32 is a CUDA tensor-core mode; on {dev.type} it would time the fp32 "
                "code again")
    return None


def parse_variants(text):
    names = ALL_VARIANTS if text == "all" else [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in names if v not in ALL_VARIANTS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"{', '.join(bad) or 'nothing'}: expected 'all' or a list of {', '.join(ALL_VARIANTS)}")
    if not any(v.startswith("fp32-") for v in names):
        raise argparse.ArgumentTypeError("the headline is strict fp32: include fp32-eager or fp32-graph")
    return [v for v in ALL_VARIANTS if v in names]  # eager before graph, fp32 before tf32


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
    ap.add_argument("--layers", type=int, default=1, help="stacked LSTM layers (num_layers)")
    ap.add_argument("--dropout", type=float, default=0.0,
                    help="dropout in [0, 1) between stacked layers")
    ap.add_argument("--maxlen", type=int, default=60)
    ap.add_argument("--step", type=int, default=3)
    ap.add_argument("--variants", type=parse_variants, default=ALL_VARIANTS,
                    help="'all' (the default) or a comma-separated subset of "
                         + ", ".join(ALL_VARIANTS) + "; at least one fp32")
    ap.add_argument("--out", help="also write the JSON to this file")
    a = ap.parse_args()
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit(f"bench_pytorch.py: --device {a.device} but torch {torch.__version__} sees no "
                 "CUDA GPU (a CPU-only build, or no driver); use --device cpu to time the CPU")
    if a.steps < 1 or a.slice_batches < 1:
        sys.exit("bench_pytorch.py: --steps and --slice-batches must be at least 1")
    if not 1 <= a.layers <= 16:
        sys.exit(f"bench_pytorch.py: --layers {a.layers}: use 1 to 16, as charlstm-cuda bench")
    if not 0.0 <= a.dropout < 1.0:
        sys.exit(f"bench_pytorch.py: --dropout {a.dropout}: use a probability in [0, 1)")

    dev = torch.device(a.device)
    # The graph loop's warm-up steps run a capturable RMSprop outside a
    # capture, on purpose (the capture recipe); torch warns about that.
    warnings.filterwarnings("ignore", message=".*capturable=True.*")
    if dev.type == "cuda" and dev.index is not None:
        torch.cuda.set_device(dev)
    job = Job(a, dev)
    tf32_note = None
    if dev.type == "cuda" and torch.cuda.get_device_capability(dev) < (8, 0):
        tf32_note = "this GPU has no TF32 (compute capability < 8.0): the same fp32 math"

    # Eager variants first, then generation, then the graphs: a capture that
    # goes wrong cannot take the eager numbers with it.
    results = {}
    gen_model = None

    def run(name):
        nonlocal gen_model
        precision, loop_name = name.split("-")
        why = not_applicable(dev, precision, loop_name)
        if why:
            results[name] = {"precision": precision, "loop": loop_name,
                             "allow_tf32": precision == "tf32", "not_applicable": why}
            return
        try:
            out, model = run_variant(job, precision, loop_name, a.full_epoch)
            if precision == "tf32" and tf32_note:
                out["note"] = tf32_note
            if name == "fp32-eager":
                gen_model = model
        except Exception as e:  # one variant failing must not lose the others
            out = {"precision": precision, "loop": loop_name,
                   "allow_tf32": precision == "tf32", "error": error_text(e)}
            first = out["error"].splitlines()[0] if out["error"] else ""
            print(f"bench_pytorch.py: {name} has no numbers: {first}", file=sys.stderr)
        results[name] = out

    for name in a.variants:
        if name.endswith("-eager"):
            run(name)
    if gen_model is None:
        gen_model = job.model(capturable=False)[0]
    generate_s = generate(job, gen_model)
    gen_model = None
    for name in a.variants:
        if name.endswith("-graph"):
            run(name)
    variants = [results[v] for v in a.variants]

    # The headline: strict fp32, the faster loop.
    measured = [v for v in variants if v["precision"] == "fp32" and "train_step_s" in v]
    if not measured:
        sys.exit("bench_pytorch.py: no strict fp32 variant ran: "
                 + "; ".join(f"{v['precision']}-{v['loop']}: {v.get('error') or v.get('not_applicable')}"
                             for v in variants))
    basis = "epoch_s" if all("epoch_s" in v for v in measured) else "epoch_estimate_s"
    head = min(measured, key=lambda v: v[basis])

    result = {
        "backend": "pytorch",
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version() if dev.type == "cuda" else None,
        "corpus": job.source,
        "vocab": job.v,
        "hidden": a.hidden,
        "layers": a.layers,
        "dropout": a.dropout,
        "batch": job.b,
        "maxlen": a.maxlen,
        "step": a.step,
        "batches_per_epoch": job.batches_per_epoch,
        "gen_length": a.gen_length,
        "temperatures": TEMPERATURES,
        "recurrent_steps_per_batch": 2 * a.maxlen,
        "step_budget_us": STEP_BUDGET_US,
        "precision": head["precision"],
        "loop": head["loop"],
        "allow_tf32": head["allow_tf32"],
        "loop_chosen_by": basis,
    }
    for key in ("train_step_s", "step_latency_us", "epoch_slice_s", "slice_batches",
                "epoch_estimate_s"):
        result[key] = head[key]
    result["generate_s"] = generate_s
    result["last_loss"] = head["last_loss"]
    if a.full_epoch:
        result["epoch_s"] = head["epoch_s"]
        result["epoch_loss"] = head["epoch_loss"]
    result["variants"] = variants
    text = json.dumps(result, indent=2)
    print(text)
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
