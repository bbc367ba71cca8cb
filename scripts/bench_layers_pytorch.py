#!/usr/bin/env python3
"""The PyTorch side of examples/stacked_step.rs: training steps of
nn.LSTM(V, H, num_layers=N, dropout=p, batch_first=True) + nn.Linear(H, V)
with cross-entropy on the last step and RMSprop (lr 0.01, alpha 0.9, eps
1e-7), on the CPU, batch 128 of one-hot windows of 60 characters of the
built-in Nietzsche text (lower-cased), the loss read back every step as
charlstm-cuda does. Prints one JSON line.

Usage: python3 scripts/bench_layers_pytorch.py CORPUS.txt [layers 2] [hidden 256] [steps 10] [dropout 0]

With CHARLSTM_LOCKSTEP=1 each step (the untimed first one too) waits for a
line on stdin and prints "step <seconds>" when done, as the example does:
scripts/lockstep.py alternates the two step by step.
"""
import json
import os
import sys
import time

import torch

path = sys.argv[1]
layers, hidden, steps = (int(a) for a in (sys.argv[2:5] + ["2", "256", "10"][len(sys.argv[2:5]):]))
dropout = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
text = open(path, encoding="utf-8").read().lower()
chars = sorted(set(text))
index = {c: i for i, c in enumerate(chars)}
data = torch.tensor([index[c] for c in text])
v, maxlen, batch = len(chars), 60, 128
torch.manual_seed(1)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(v, hidden, num_layers=layers, dropout=dropout, batch_first=True)
        self.fc = torch.nn.Linear(hidden, v)

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.fc(y[:, -1])


net = Net()
net.train()
opt = torch.optim.RMSprop(net.parameters(), lr=0.01, alpha=0.9, eps=1e-7)
eye = torch.eye(v)
offsets = torch.arange(maxlen)
lockstep = os.environ.get("CHARLSTM_LOCKSTEP") == "1"
times = []
loss = None
for step in range(steps + 1):
    starts = torch.randint(0, len(data) - maxlen - 1, (batch,))
    if lockstep and not sys.stdin.readline():
        break
    t = time.perf_counter()
    x = eye[data[starts[:, None] + offsets]]
    y = data[starts + maxlen]
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(net(x), y)
    loss.backward()
    opt.step()
    last = loss.item()
    took = time.perf_counter() - t
    if lockstep:
        print(f"step {took:.6f}", flush=True)
    if step > 0:
        times.append(took)
if not times:
    sys.exit("bench_layers_pytorch.py: stdin closed before a timed step; scripts/lockstep.py drives CHARLSTM_LOCKSTEP=1")
times.sort()
print(json.dumps({
    "impl": "pytorch cpu", "torch": torch.__version__, "layers": layers, "hidden": hidden,
    "vocab": v, "batch": batch, "maxlen": maxlen, "dropout": dropout, "steps": len(times),
    "train_step_s_median": round(times[len(times) // 2], 4), "train_step_s_min": round(times[0], 4),
    "last_loss": round(last, 4), "threads": torch.get_num_threads(),
}))
