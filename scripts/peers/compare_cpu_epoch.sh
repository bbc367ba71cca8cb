#!/usr/bin/env bash
# One epoch of the Keras job on the CPU, three ways, one after another on an
# otherwise idle machine: PyTorch, Keras/TensorFlow, charlstm-cuda.
# Usage: scripts/peers/compare_cpu_epoch.sh CORPUS [VENV]   (VENV: see README.md here)
set -euo pipefail
corpus="${1:?usage: $0 CORPUS [VENV]}"
venv="${2:-/work/venv-tf}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
cargo build --release --manifest-path "$root/Cargo.toml" >&2
out="$(mktemp -d)"
for s in pytorch_cpu_epoch keras_epoch; do
  PYTHONUNBUFFERED=1 "$venv/bin/python" "$root/scripts/peers/$s.py" "$corpus" | grep '^{'
done
"$root/target/release/charlstm-cuda" train --corpus "$corpus" --epochs 1 --device cpu --quiet --out "$out" >/dev/null
python3 - "$out/metrics.jsonl" <<'PY'
import json, sys
d = json.loads(open(sys.argv[1]).readline())
print(json.dumps({"framework": "charlstm-cuda (cpu)", "fit_seconds": round(d["seconds"], 3),
                  "ms_per_batch": round(1000 * d["seconds"] / d["batches"], 3),
                  "final_loss": d["loss"], "sample_seconds": round(d["sample_seconds"], 3)}))
PY
