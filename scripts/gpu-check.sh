#!/usr/bin/env bash
# The GPU check: run on a machine with an NVIDIA GPU, from a bundle made by
# scripts/gpu-bundle.sh (no Rust needed there). Parts, each with a time
# limit so the whole stays under 10 minutes on an H200:
#   1. charlstm-cuda selftest --device cuda  (every kernel vs the CPU reference)
#   2. the GPU test suite: every bundled test binary, its tests named *cuda*
#   3. bench_pytorch.py --device cuda --full-epoch: nn.LSTM + cuDNN on the
#      Keras job (V from the corpus, H=128, B=128, T=60, step 3, RMSprop
#      0.01) -> $OUT/pytorch.json
#   4. charlstm-cuda bench --device cuda --full-epoch --pytorch pytorch.json:
#      the same job on our engine right after, and the ratios PyTorch / ours
#      computed from the two -> $OUT/bench.json (JSON), bench.err (table)
# It ends with that table: (a) epoch time and ratio (goal >= 5x), (b) µs per
# recurrent step (train step / 2T) against the 1 µs budget, (c) 4 x 400
# chars of generation, (d) the loss after one whole epoch (a loose match:
# different inits and window orders), and the command lines behind them.
# Writes everything to $OUT (default ./gpu-check-out): gpu-check.log, the
# JSON reports, NAME.out / NAME.err of every part. Exit code 0 only if every
# part passed; a missing part (no binary: exit 2 at once; no
# bench_pytorch.py, no torch, no GPU) is named in the summary and the table.
#
#   bash gpu-check.sh [BUNDLE]          # BUNDLE defaults to this script's folder
#   GPU_CHECK_QUICK=1 bash gpu-check.sh # small bench sizes, no whole epochs
# Also: PYTHON (default python3, with torch); GPU_CHECK_TORCH_DEVICE
# (default cuda; cpu only to try the plumbing without a GPU);
# GPU_CHECK_CORPUS (default BUNDLE/nietzsche.txt, else a synthetic text of
# the same size and alphabet is written to $OUT and used by both sides).
set -uo pipefail
BUNDLE=$(cd "${1:-$(dirname "$0")}" && pwd)
OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
LOG=$OUT/gpu-check.log
: >"$LOG"
BIN=$BUNDLE/charlstm-cuda
PY=${PYTHON:-python3}
TORCH_DEVICE=${GPU_CHECK_TORCH_DEVICE:-cuda}
CORPUS=${GPU_CHECK_CORPUS:-$BUNDLE/nietzsche.txt}
QUICK=${GPU_CHECK_QUICK:-}
if [[ -n $QUICK ]]; then STEPS=3 SLICE=5; else STEPS=50 SLICE=200; fi

say() { echo "$*" | tee -a "$LOG"; }
# run NAME LIMIT CMD...: runs CMD with a time limit, stdout to $OUT/NAME.out
# and stderr to $OUT/NAME.err (so a JSON report stays parseable), both to
# the log; records pass/fail, seconds and the command line.
declare -A RESULT SECONDS_OF CMDLINE
run() {
  local name=$1 limit=$2
  shift 2
  CMDLINE[$name]="$*"
  say "=== $name: $*"
  local t0=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.out" 2>"$OUT/$name.err"
  local rc=$?
  cat "$OUT/$name.out" "$OUT/$name.err" >>"$LOG"
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
  if grep -q "running 0 tests" "$OUT/$name".{out,err}; then RESULT[$name]="FAIL (no cuda tests)"; fi
  if grep -q "SKIPPED" "$OUT/$name".{out,err}; then RESULT[$name]="FAIL (skipped: no GPU?)"; fi
done

# Both sides train on the same text: the bundle's corpus, else a synthetic
# one written here (the GPU machine may have no network to download one).
if [[ ! -f $CORPUS ]]; then
  say "no corpus at $CORPUS: writing a synthetic text of the same size and alphabet"
  CORPUS=$OUT/synthetic.txt
  "$PY" -c 'import random, sys
a = "abcdefghijklmnopqrstuvwxyz0123456789 .,;:!?\x27\"()-\n=[]_&*+"
r = random.Random(12345)
open(sys.argv[1], "w").write("".join(r.choice(a) for _ in range(600_901)))' "$CORPUS" \
    || say "could not write $CORPUS"
fi
common=(--corpus "$CORPUS" --steps "$STEPS" --slice-batches "$SLICE")
epoch_args=()
[[ -z $QUICK ]] && epoch_args=(--full-epoch)
rm -f "$OUT/pytorch.json" "$OUT/bench.json"
missing=()
if [[ -f $BUNDLE/bench_pytorch.py ]]; then
  run pytorch 300 "$PY" "$BUNDLE/bench_pytorch.py" --device "$TORCH_DEVICE" "${common[@]}" \
    "${epoch_args[@]}" --out "$OUT/pytorch.json"
  if [[ ${RESULT[pytorch]} != pass ]]; then
    rm -f "$OUT/pytorch.json"
    missing+=("pytorch: ${RESULT[pytorch]}: $(tail -n 1 "$OUT/pytorch.err")")
  fi
else
  RESULT[pytorch]="FAIL (no bench_pytorch.py)" SECONDS_OF[pytorch]=0
  missing+=("pytorch: no bench_pytorch.py in $BUNDLE (scripts/gpu-bundle.sh copies it)")
  say "--- pytorch: ${RESULT[pytorch]}"
fi
pt_args=()
[[ -f $OUT/pytorch.json ]] && pt_args=(--pytorch "$OUT/pytorch.json")
run bench 300 "$BIN" bench --device cuda "${common[@]}" "${epoch_args[@]}" "${pt_args[@]}"
cp "$OUT/bench.out" "$OUT/bench.json"
if [[ ${RESULT[bench]} != pass ]]; then
  missing+=("bench: ${RESULT[bench]}: $(tail -n 2 "$OUT/bench.err" | tr '\n' ' ')")
elif grep -q '"available": false' "$OUT/bench.json"; then
  # A bench without a usable GPU exits 0 with an unavailable row: not a pass here.
  RESULT[bench]="FAIL (cuda unavailable)"
  missing+=("cuda: unavailable (the bench's cuda row says why, above): no GPU numbers, no ratios")
fi

# The table: pass/fail, then the bench's own table (ours vs PyTorch, the
# ratios computed by charlstm-cuda from both sides' numbers of this run).
{
  echo
  echo "== gpu-check summary =="
  for k in "${!RESULT[@]}"; do printf '%-28s %-40s %5s s\n' "$k" "${RESULT[$k]}" "${SECONDS_OF[$k]}"; done | sort
  echo
  echo "== ours (charlstm-cuda, cuda) vs PyTorch (nn.LSTM + cuDNN), one run =="
  [[ -s $OUT/bench.err ]] && grep -v '^note: ' "$OUT/bench.err"
  [[ -n $QUICK ]] && echo "(d) GPU_CHECK_QUICK: no whole epochs, so no loss after one epoch; (a) uses the slice estimates"
  for m in "${missing[@]}"; do echo "MISSING: $m"; done
  echo "commands (from $OUT):"
  for k in pytorch bench; do [[ -n ${CMDLINE[$k]:-} ]] && echo "  ${CMDLINE[$k]}"; done
} 2>&1 | tee -a "$LOG"

fail=0
for k in "${!RESULT[@]}"; do [[ ${RESULT[$k]} == pass ]] || fail=1; done
exit $fail
