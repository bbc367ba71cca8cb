#!/usr/bin/env python3
"""One epoch of Deep Learning with Python §8.1 (char-level LSTM on a text), in
Keras 3 on TensorFlow-CPU: the peer that charlstm-cuda's CPU epoch time is
measured against.

The notebook's code, in spirit line for line: lower-cased text, maxlen 60,
step 3, bool one-hot tensors, LSTM(128) + Dense softmax, RMSprop(0.01),
fit(batch_size=128, epochs=1), then 400 sampled chars at temperatures
0.2/0.5/1.0/1.2 with one model.predict per char.

    python scripts/peers/keras_epoch.py /work/shared/corpus/nietzsche.txt [--steps N]

--steps N trains on the first N*128 windows only (a smoke test), and samples
N chars per temperature instead of 400.
Prints one JSON line at the end (progress goes to stderr): fit_seconds is the
whole epoch including the first batch (which carries one-off set-up cost:
graph tracing in Keras), ms_per_batch = fit_seconds / batches, and
steady_ms_per_batch times batches 2..N only.
"""

import argparse
import json
import os
import random
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # a CPU peer, even on a GPU host
os.environ["KERAS_BACKEND"] = "tensorflow"

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402
from keras import layers  # noqa: E402

MAXLEN = 60
STEP = 3
BATCH = 128
HIDDEN = 128
TEMPERATURES = (0.2, 0.5, 1.0, 1.2)
GENERATE = 400


def sample(preds, temperature=1.0):
    """The notebook's sampling: re-weight by temperature, one multinomial draw."""
    preds = np.asarray(preds).astype("float64")
    preds = np.log(preds) / temperature
    exp_preds = np.exp(preds)
    preds = exp_preds / np.sum(exp_preds)
    probas = np.random.multinomial(1, preds, 1)
    return np.argmax(probas)


class BatchClock(keras.callbacks.Callback):
    """Wall time at the end of every batch. The first batch also traces and
    compiles the train step (seconds), so steady-state ms/batch is measured
    from the end of batch 1 on."""

    def __init__(self):
        super().__init__()
        self.ends = []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(time.perf_counter())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", help="UTF-8 text file, e.g. nietzsche.txt")
    ap.add_argument("--steps", type=int, default=None, help="train on N batches only (smoke test)")
    ap.add_argument("--threads", type=int, default=None, help="TF intra/inter-op threads (default: TF's choice)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(args.seed)

    with open(args.corpus, encoding="utf-8") as f:
        text = f.read().lower()
    print("Corpus length:", len(text), file=sys.stderr)

    sentences, next_chars = [], []
    for i in range(0, len(text) - MAXLEN, STEP):
        sentences.append(text[i : i + MAXLEN])
        next_chars.append(text[i + MAXLEN])
    print("Number of sequences:", len(sentences), file=sys.stderr)
    chars = sorted(list(set(text)))
    char_indices = dict((char, chars.index(char)) for char in chars)
    if args.steps is not None:
        # A prefix of the windows: the smoke test skips most of the vectorising too.
        sentences = sentences[: args.steps * BATCH]
        next_chars = next_chars[: args.steps * BATCH]

    x = np.zeros((len(sentences), MAXLEN, len(chars)), dtype=bool)
    y = np.zeros((len(sentences), len(chars)), dtype=bool)
    for i, sentence in enumerate(sentences):
        for t, char in enumerate(sentence):
            x[i, t, char_indices[char]] = 1
        y[i, char_indices[next_chars[i]]] = 1

    model = keras.Sequential(
        [
            keras.Input(shape=(MAXLEN, len(chars))),
            layers.LSTM(HIDDEN),
            layers.Dense(len(chars), activation="softmax"),
        ]
    )
    model.compile(loss="categorical_crossentropy", optimizer=keras.optimizers.RMSprop(learning_rate=0.01))

    # fit shuffles every epoch (shuffle=True by default), like the notebook.
    # The reported loss is Keras' running mean over the epoch's batches.
    clock = BatchClock()
    fit_t0 = time.perf_counter()
    history = model.fit(x, y, batch_size=BATCH, epochs=1, verbose=2 if args.steps is None else 0, callbacks=[clock])
    fit_seconds = time.perf_counter() - fit_t0
    batches = -(-len(x) // BATCH)
    assert len(clock.ends) == batches
    steady = (clock.ends[-1] - clock.ends[0]) / (batches - 1) if batches > 1 else float("nan")
    final_loss = float(history.history["loss"][-1])

    # The notebook's generation: a random seed window, one predict per char.
    n_gen = GENERATE if args.steps is None else args.steps
    start_index = random.randint(0, len(text) - MAXLEN - 1)
    sample_t0 = time.perf_counter()
    for temperature in TEMPERATURES:
        generated_text = text[start_index : start_index + MAXLEN]
        out = []
        for _ in range(n_gen):
            sampled = np.zeros((1, MAXLEN, len(chars)))
            for t, char in enumerate(generated_text):
                sampled[0, t, char_indices[char]] = 1.0
            preds = model.predict(sampled, verbose=0)[0]
            next_char = chars[sample(preds, temperature)]
            generated_text = generated_text[1:] + next_char
            out.append(next_char)
        print(f"--- temperature {temperature}: {''.join(out)!r}", file=sys.stderr)
    sample_seconds = time.perf_counter() - sample_t0

    print(
        json.dumps(
            {
                "framework": "keras",
                "version": f"keras {keras.__version__} / tensorflow {tf.__version__}",
                "fit_seconds": round(fit_seconds, 3),
                "batches": batches,
                "ms_per_batch": round(1000 * fit_seconds / batches, 3),
                "first_batch_seconds": round(clock.ends[0] - fit_t0, 3),
                "steady_ms_per_batch": round(1000 * steady, 3),
                "final_loss": final_loss,
                "sample_seconds": round(sample_seconds, 3),
                "sampled_chars": n_gen * len(TEMPERATURES),
                "windows": len(x),
            }
        )
    )


if __name__ == "__main__":
    main()
