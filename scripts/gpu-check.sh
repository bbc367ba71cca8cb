#!/usr/bin/env bash
# The GPU check: run on a machine with an NVIDIA GPU, from a bundle made by
# scripts/gpu-bundle.sh (no Rust needed there). Four parts, each with a time
# limit so the whole stays under 10 minutes on an H200:
#   1. charlstm-cuda selftest --device cuda  (every kernel vs the CPU reference)
#   2. the GPU test suite: every bundled test binary, its tests named *cuda*
#   3. charlstm-cuda bench --device cuda,cpu (step, epoch slice, generation)
#      and scripts/bench_pytorch.py (nn.LSTM / cuDNN on the same GPU)
#   4. one whole epoch of `train --device cuda`, and PyTorch's whole epoch,
#      for the loss after one epoch and the epoch time side by side
# Writes everything to $OUT (default ./gpu-check-out): gpu-check.log, the
# JSON reports, and ends with a short table. Exit code 0 only if parts 1 and
# 2 passed.
#
#   bash gpu-check.sh [BUNDLE]          # BUNDLE defaults to this script's folder
#   GPU_CHECK_QUICK=1 bash gpu-check.sh # small bench sizes, no whole epochs
set -uo pipefail
BUNDLE=$(cd "${1:-$(dirname "$0")}" && pwd)
OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
LOG=$OUT/gpu-check.log
: >"$LOG"
BIN=$BUNDLE/charlstm-cuda
PY=${PYTHON:-python3}
CORPUS=$BUNDLE/nietzsche.txt
[[ -f $CORPUS ]] || CORPUS=
QUICK=${GPU_CHECK_QUICK:-}
if [[ -n $QUICK ]]; then STEPS=3 SLICE=5; else STEPS=50 SLICE=200; fi

say() { echo "$*" | tee -a "$LOG"; }
# run NAME LIMIT CMD...: runs CMD with a time limit, output to the log and
# $OUT/NAME.out; records pass/fail and seconds.
declare -A RESULT SECONDS_OF
run() {
  local name=$1 limit=$2
  shift 2
  say "=== $name: $*"
  local t0=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.out" 2>&1
  local rc=$?
  cat "$OUT/$name.out" >>"$LOG"
  SECONDS_OF[$name]=$((SECONDS - t0))
  if [[ $rc -eq 0 ]]; then RESULT[$name]=pass; else RESULT[$name]="FAIL (exit $rc)"; fi
  [[ $rc -eq 124 ]] && RESULT[$name]="FAIL (timed out after ${limit}s)"
  say "--- $name: ${RESULT[$name]} in ${SECONDS_OF[$name]} s"
}

say "gpu-check $(date -u +%FT%TZ) bundle=$BUNDLE"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv 2>&1 | tee -a "$LOG" \
  || say "nvidia-smi failed: is there an NVIDIA GPU and driver?"
[[ -x $BIN ]] || { say "no charlstm-cuda binary in $BUNDLE (make one with scripts/gpu-bundle.sh)"; exit 2; }

run selftest 180 "$BIN" selftest --device cuda
for t in "$BUNDLE"/tests/*; do
  [[ -x $t ]] || continue
  name="test-$(basename "$t")"
  run "$name" 180 "$t" cuda --nocapture --test-threads 1
  # A binary whose filter matched nothing "passes" having checked nothing.
  if grep -q "running 0 tests" "$OUT/$name.out"; then RESULT[$name]="FAIL (no cuda tests)"; fi
  if grep -q "SKIPPED" "$OUT/$name.out"; then RESULT[$name]="FAIL (skipped: no GPU?)"; fi
done

corpus_args=()
[[ -n $CORPUS ]] && corpus_args=(--corpus "$CORPUS")
run bench 180 "$BIN" bench --device cuda,cpu --steps "$STEPS" --slice-batches "$SLICE" "${corpus_args[@]}"
cp "$OUT/bench.out" "$OUT/bench.json" 2>/dev/null
py_args=(--steps "$STEPS" --slice-batches "$SLICE" "${corpus_args[@]}")
[[ -z $QUICK ]] && py_args+=(--full-epoch)
run pytorch 240 "$PY" "$BUNDLE/bench_pytorch.py" "${py_args[@]}"
cp "$OUT/pytorch.out" "$OUT/pytorch.json" 2>/dev/null
if [[ -z $QUICK ]]; then
  run epoch 240 "$BIN" train --device cuda --epochs 1 --quiet --out "$OUT/run" "${corpus_args[@]}"
fi

# The table: pass/fail, then ours vs PyTorch.
{
  echo
  echo "== gpu-check summary =="
  for k in "${!RESULT[@]}"; do printf '%-28s %-28s %5s s\n' "$k" "${RESULT[$k]}" "${SECONDS_OF[$k]}"; done | sort
  "$PY" - "$OUT" <<'EOF'
import json, re, sys
out = sys.argv[1]
def load(name):
    try:
        text = open(f"{out}/{name}").read()
        return json.loads(text[text.index("{"):])
    except Exception as e:
        return None
ours, torch = load("bench.json"), load("pytorch.json")
rows = {r["backend"]: r for r in (ours or {}).get("rows", [])}
cuda, cpu = rows.get("cuda", {}), rows.get("cpu", {})
def f(x, scale=1.0, fmt="{:.3f}"):
    return fmt.format(x * scale) if isinstance(x, (int, float)) else "-"
print(f"{'':24} {'charlstm cuda':>14} {'pytorch cuDNN':>14} {'charlstm cpu':>14} {'ratio pt/ours':>14}")
for key, label, scale in [("train_step_s", "train step (ms)", 1e3),
                          ("epoch_estimate_s", "epoch est (s)", 1),
                          ("generate_s", "4x400 chars (s)", 1)]:
    a, b, c = cuda.get(key), (torch or {}).get(key), cpu.get(key)
    ratio = f(b / a, 1, "{:.2f}x") if a and b else "-"
    print(f"{label:24} {f(a, scale):>14} {f(b, scale):>14} {f(c, scale):>14} {ratio:>14}")
try:
    log = open(f"{out}/epoch.out").read()
    m = re.findall(r"epoch 1/1: loss ([0-9.]+), ([0-9.]+) s", log)
    loss, secs = m[-1] if m else ("-", "-")
    print(f"{'whole epoch: loss':24} {loss:>14} {f((torch or {}).get('epoch_loss'), 1, '{:.4f}'):>14}")
    print(f"{'whole epoch: seconds':24} {secs:>14} {f((torch or {}).get('epoch_s')):>14}")
except OSError:
    pass
if cuda and not cuda.get("available", True):
    print("cuda backend unavailable:", cuda.get("note"))
EOF
} 2>&1 | tee -a "$LOG"

fail=0
for k in "${!RESULT[@]}"; do
  case $k in selftest | test-*) [[ ${RESULT[$k]} == pass ]] || fail=1 ;; esac
done
exit $fail
