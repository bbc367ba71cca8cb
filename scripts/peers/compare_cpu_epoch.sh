#!/usr/bin/env bash
# One epoch of the Keras job on the CPU, three ways, one after another on an
# otherwise idle machine: PyTorch, Keras/TensorFlow, charlstm-cuda.
#
#   scripts/peers/compare_cpu_epoch.sh CORPUS [VENV] [--steps N]
#
# VENV: the peers' venv (default .venv-peers, made by scripts/peers/setup.sh).
# --steps N: N batches each and N characters per temperature instead of an
# epoch and 400 (a smoke run: CI runs it with 2).
# CHARLSTM_BIN: a release binary to run instead of building one (CI's, whose
# library carries the test build's features, so a plain build would redo it).
set -euo pipefail
usage="usage: $0 CORPUS [VENV] [--steps N]"
root="$(cd "$(dirname "$0")/../.." && pwd)"
corpus="" venv="$root/.venv-peers" steps=""
while [ $# -gt 0 ]; do
  case "$1" in
    --steps)
      [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || { echo "--steps ${2:-}: pass a whole number of batches, at least 1; $usage" >&2; exit 2; }
      steps="$2"
      shift 2
      ;;
    -*) echo "$1: unknown option; $usage" >&2; exit 2 ;;
    *)
      if [ -z "$corpus" ]; then corpus="$1"; else venv="$1"; fi
      shift
      ;;
  esac
done
[ -n "$corpus" ] || { echo "$usage" >&2; exit 2; }
[ -f "$corpus" ] || { echo "$corpus: no such file; pass the text to train on; $usage" >&2; exit 2; }
[ -x "$venv/bin/python" ] || {
  echo "$venv: no Python there; make the peers' venv with \`bash scripts/peers/setup.sh $venv\`" >&2
  exit 2
}
peer_args=() ours_args=()
if [ -n "$steps" ]; then
  peer_args=(--steps "$steps")
  ours_args=(--steps-per-epoch "$steps" --gen-length "$steps")
fi
bin="${CHARLSTM_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --manifest-path "$root/Cargo.toml" >&2
  bin="${CARGO_TARGET_DIR:-$root/target}/release/charlstm-cuda"
fi
[ -x "$bin" ] || { echo "CHARLSTM_BIN=$bin: not an executable; unset it to build one" >&2; exit 2; }
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for s in pytorch_cpu_epoch keras_epoch; do
  PYTHONUNBUFFERED=1 "$venv/bin/python" "$root/scripts/peers/$s.py" "$corpus" "${peer_args[@]}" | grep '^{'
done
"$bin" train --corpus "$corpus" --epochs 1 --device cpu --quiet \
  --out "$out" "${ours_args[@]}" >/dev/null
python3 - "$out/metrics.jsonl" <<'PY'
import json, sys
d = json.loads(open(sys.argv[1]).readline())
print(json.dumps({"framework": "charlstm-cuda (cpu)", "fit_seconds": round(d["seconds"], 3),
                  "ms_per_batch": round(1000 * d["seconds"] / d["batches"], 3),
                  "final_loss": d["loss"], "sample_seconds": round(d["sample_seconds"], 3)}))
PY
