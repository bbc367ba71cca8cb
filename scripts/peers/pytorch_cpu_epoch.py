#!/usr/bin/env python3
"""One epoch of the Deep Learning with Python §8.1 char-LSTM job in PyTorch on
the CPU: the second peer for charlstm-cuda's CPU epoch time.

Same job as keras_epoch.py: lower-cased text, maxlen 60, step 3, one-hot
input, LSTM(128) (batch_first) + Linear + softmax cross-entropy,
RMSprop(lr=0.01, alpha=0.9, eps=1e-7), batch 128 shuffled, one epoch; then
400 sampled chars at temperatures 0.2/0.5/1.0/1.2, one forward per char.

    python scripts/peers/pytorch_cpu_epoch.py /work/shared/corpus/nietzsche.txt [--steps N]

Differences from Keras that do not change the cost: nn.LSTM has two bias
vectors (b_ih + b_hh) and gate order i,f,g,o (same as Keras' i,f,c,o);
PyTorch's RMSprop adds eps outside the square root, like DESIGN §1.
Prints one JSON line at the end (progress goes to stderr): fit_seconds is the
whole epoch including the first batch (which carries one-off set-up cost:
graph tracing in Keras), ms_per_batch = fit_seconds / batches, and
steady_ms_per_batch times batches 2..N only.
"""

import argparse
import json
import random
import sys
import time

import numpy as np
import torch
from torch import nn

MAXLEN = 60
STEP = 3
BATCH = 128
HIDDEN = 128
TEMPERATURES = (0.2, 0.5, 1.0, 1.2)
GENERATE = 400


class CharLstm(nn.Module):
    def __init__(self, vocab, hidden):
        super().__init__()
        self.lstm = nn.LSTM(vocab, hidden, batch_first=True)
        self.dense = nn.Linear(hidden, vocab)

    def forward(self, x):
        # Only the last hidden state feeds the head, like Keras' return_sequences=False.
        _, (h, _) = self.lstm(x)
        return self.dense(h[-1])  # logits; softmax lives in the loss / sampler


def sample(preds, temperature=1.0):
    """The notebook's sampling: re-weight by temperature, one multinomial draw."""
    preds = np.asarray(preds).astype("float64")
    preds = np.log(preds) / temperature
    exp_preds = np.exp(preds)
    preds = exp_preds / np.sum(exp_preds)
    probas = np.random.multinomial(1, preds, 1)
    return np.argmax(probas)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", help="UTF-8 text file, e.g. nietzsche.txt")
    ap.add_argument("--steps", type=int, default=None, help="train on N batches only (smoke test)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    random.seed(args.seed)

    with open(args.corpus, encoding="utf-8") as f:
        text = f.read().lower()
    sentences, next_chars = [], []
    for i in range(0, len(text) - MAXLEN, STEP):
        sentences.append(text[i : i + MAXLEN])
        next_chars.append(text[i + MAXLEN])
    chars = sorted(set(text))
    char_indices = {c: i for i, c in enumerate(chars)}
    if args.steps is not None:
        sentences = sentences[: args.steps * BATCH]
        next_chars = next_chars[: args.steps * BATCH]
    print(f"corpus {len(text)} chars, {len(sentences)} windows, vocab {len(chars)}", file=sys.stderr)

    # The notebook's bool one-hot tensor; each batch is cast to float32 on the
    # fly (a float32 copy of the whole tensor would be ~2.7 GB for Nietzsche).
    x = np.zeros((len(sentences), MAXLEN, len(chars)), dtype=bool)
    for i, sentence in enumerate(sentences):
        for t, char in enumerate(sentence):
            x[i, t, char_indices[char]] = 1
    x = torch.from_numpy(x)
    y = torch.tensor([char_indices[c] for c in next_chars], dtype=torch.long)

    model = CharLstm(len(chars), HIDDEN)
    loss_fn = nn.CrossEntropyLoss()  # mean over the batch, from logits
    opt = torch.optim.RMSprop(model.parameters(), lr=0.01, alpha=0.9, eps=1e-7)

    n = len(x)
    batches = -(-n // BATCH)
    model.train()
    fit_t0 = time.perf_counter()
    perm = torch.randperm(n)
    running = 0.0
    for b in range(batches):
        idx = perm[b * BATCH : (b + 1) * BATCH]
        xb = x[idx].float()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), y[idx])
        loss.backward()
        opt.step()
        running += loss.item()
        if b == 0:
            first_end = time.perf_counter()
    end = time.perf_counter()
    steady = (end - first_end) / (batches - 1) if batches > 1 else float("nan")
    fit_seconds = end - fit_t0
    final_loss = running / batches  # running mean over the epoch, as Keras reports

    model.eval()
    n_gen = GENERATE if args.steps is None else args.steps
    start_index = random.randint(0, len(text) - MAXLEN - 1)
    sample_t0 = time.perf_counter()
    with torch.no_grad():
        for temperature in TEMPERATURES:
            generated_text = text[start_index : start_index + MAXLEN]
            out = []
            for _ in range(n_gen):
                sampled = torch.zeros((1, MAXLEN, len(chars)))
                for t, char in enumerate(generated_text):
                    sampled[0, t, char_indices[char]] = 1.0
                preds = torch.softmax(model(sampled), dim=-1)[0].numpy()
                next_char = chars[sample(preds, temperature)]
                generated_text = generated_text[1:] + next_char
                out.append(next_char)
            print(f"--- temperature {temperature}: {''.join(out)!r}", file=sys.stderr)
    sample_seconds = time.perf_counter() - sample_t0

    print(
        json.dumps(
            {
                "framework": "pytorch",
                "version": f"torch {torch.__version__}",
                "threads": torch.get_num_threads(),
                "fit_seconds": round(fit_seconds, 3),
                "batches": batches,
                "ms_per_batch": round(1000 * fit_seconds / batches, 3),
                "first_batch_seconds": round(first_end - fit_t0, 3),
                "steady_ms_per_batch": round(1000 * steady, 3),
                "final_loss": final_loss,
                "sample_seconds": round(sample_seconds, 3),
                "sampled_chars": n_gen * len(TEMPERATURES),
                "windows": n,
            }
        )
    )


if __name__ == "__main__":
    main()
