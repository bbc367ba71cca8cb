#!/usr/bin/env bash
# The GPU check: everything this project claims about a GPU, in one command
# that fits one call of the device machine (bounded at GPU_CHECK_BUDGET
# seconds, 420 by default; at most 8 files written to $OUT). Runs from a
# bundle made by scripts/gpu-bundle.sh (no Rust needed on the GPU machine):
#
#   bash scripts/gpu-bundle.sh              # here: builds ./gpu-bundle
#   bash gpu-bundle/gpu-check.sh            # there, from the repository root
#
# Parts, in order, each with its own time limit, cut to what is left of the
# budget (a part that gets no time is a failure, named in the summary):
#   test-lstm_cluster  first and alone (60 s, GPU_CHECK_CLUSTER_LIMIT): the thread-block cluster
#              kernels; if they hang, every later part runs with
#              CHARLSTM_NO_CLUSTERS=1 (no clusters: cluster checks fail at
#              once instead of hanging each part to its limit)
#   selftest   charlstm-cuda selftest --device cuda --json: every kernel vs the
#              CPU reference at the Keras job's shapes, 20 training steps,
#              generation
#   tests      every bundled test binary, its tests named *cuda* (the same
#              bodies the simulator runs in CI); a binary whose filter matches
#              nothing or that prints SKIPPED fails. Among them
#              sim_vs_hardware: the simulator's own instruction test kernels
#              (tests/kernels/*.cu) on the GPU vs on the simulator
#   pytorch    bench_pytorch.py: nn.LSTM + cuDNN on the same job, strict fp32
#              and TF32, eager and CUDA-graph loops, whole epochs
#   bench      charlstm-cuda bench --device cuda --full-epoch --pytorch ...:
#              our engine on the same job right after, the ratios computed
#              from both sides' numbers of this run
#   stack      issue 17's stack on the GPU: bench_pytorch.py --layers 2
#              --hidden 256 (nn.LSTM(num_layers=2), strict fp32, eager and
#              graph), then charlstm-cuda bench --device cuda --layers 2
#              --hidden 256 --pytorch ...: training steps, an epoch slice and
#              generation of the two-layer model, side by side (no whole
#              epochs; its JSON stays in gpu-check.tgz); then stack-cluster,
#              the same bench with --recurrence cluster (the thread-block
#              cluster kernels, Hopper only) against the same PyTorch numbers
#   op         the bundle's lstm_op (benches/lstm_op.rs, LSTM_OP_DEVICE=cuda):
#              ops::LstmCuda forward + backward on cudarc buffers against
#              nn.LSTM on cuDNN (strict fp32) on the same tensors, N = 1, 2,
#              H = 128, 256, 512, one-hot and dense; fails when a result differs
#              from PyTorch's by more than 1e-4 of its tensor's largest value
#   profile    ncu (--clock-control none) over one training step's kernels,
#              the persistent kernels' stall reasons, PyTorch's step, and
#              (profile-stack, and profile-stack-cluster on the cluster
#              kernels) every kernel's duration in the two-layer H = 256
#              step, summed by kernel; when ncu is there and time is left;
#              informational, never fails the check
#
# Writes to $OUT (the device tool sets it; default ./gpu-check-out):
#   summary.txt      the table: every part and every cuda test with pass/fail
#                    and seconds, the simulator-vs-hardware lines, the
#                    selftest's table, the bench's ratios, the commands
#   gpu-check.tgz    every part's full stdout/stderr, the JSON reports
#   selftest.json  pytorch.json  bench.json, and profile.txt,
#   profile-persistent.txt, profile-pytorch.txt when ncu is there: at most 8
# and prints summary.txt last. Exit 0 only if every non-informational part
# passed.
#
# GPU_CHECK_PARTS=selftest,tests,pytorch,bench,stack,op,profile (default all) runs a
# subset; GPU_CHECK_TESTS=name,name limits the test binaries;
# GPU_CHECK_QUICK=1: small bench sizes, no whole epochs (to try the plumbing);
# PYTHON (default python3, with torch); GPU_CHECK_TORCH_DEVICE (default
# cuda; cpu only to try the plumbing without a GPU); GPU_CHECK_CORPUS
# (default BUNDLE/nietzsche.txt, else a synthetic text of the same size).
set -uo pipefail
BUNDLE=$(cd "${1:-$(dirname "$0")}" && pwd)
OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
PY=${PYTHON:-python3}
# scripts/gpu-bundle.sh packs the binaries into payload.tar.xz (the device
# tool carries at most 64 MiB): unpacked beside it, where the binaries
# have run before (not /tmp, which may forbid running them), and removed
# at exit, so that a bundle carried again is still its packed size.
if [[ -f $BUNDLE/payload.tar.xz ]]; then
  PACKED=$BUNDLE/payload.tar.xz
  # (In /tmp only where the bundle's folder cannot be written.)
  BUNDLE=$(mktemp -d "$BUNDLE/unpacked.XXXXXX" 2>/dev/null || mktemp -d "${TMPDIR:-/tmp}/gpu-bundle.XXXXXX")
  trap 'rm -rf "$BUNDLE"' EXIT
  if ! tar -C "$BUNDLE" -xJf "$PACKED" 2>"$WORK/unpack.err"; then
    # No xz program: Python's tarfile reads xz itself.
    "$PY" -c 'import sys, tarfile
t = tarfile.open(sys.argv[1])
if hasattr(tarfile, "data_filter"):
    t.extraction_filter = tarfile.data_filter
t.extractall(sys.argv[2])' "$PACKED" "$BUNDLE" 2>>"$WORK/unpack.err" \
      || { echo "gpu-check: could not unpack $PACKED:"; cat "$WORK/unpack.err"; } >&2
  fi
fi
BUDGET=${GPU_CHECK_BUDGET:-420}
PARTS=",${GPU_CHECK_PARTS:-selftest,tests,pytorch,bench,stack,op,profile},"
ONLY_TESTS=${GPU_CHECK_TESTS:-}
BIN=$BUNDLE/charlstm-cuda
TORCH_DEVICE=${GPU_CHECK_TORCH_DEVICE:-cuda}
CORPUS=${GPU_CHECK_CORPUS:-$BUNDLE/nietzsche.txt}
QUICK=${GPU_CHECK_QUICK:-}
if [[ -n $QUICK ]]; then STEPS=3 SLICE=5; else STEPS=50 SLICE=200; fi
LOG=$WORK/gpu-check.log
SUMMARY=$WORK/summary.txt
: >"$LOG"
T0=$SECONDS
# Seconds kept back from the last part for packing the results.
RESERVE=8

say() { echo "$*" | tee -a "$LOG"; }
want() { [[ $PARTS == *",$1,"* ]]; }
left() { echo $((BUDGET - RESERVE - (SECONDS - T0))); }

# run NAME LIMIT CMD...: CMD with a time limit (cut to what is left of the
# budget), stdout to $WORK/NAME.out and stderr to $WORK/NAME.err (so a JSON
# report stays parseable); records the result, seconds and command line.
declare -A RESULT SECS CMDLINE
ORDER=()
run() {
  local name=$1 limit=$2
  shift 2
  ORDER+=("$name")
  CMDLINE[$name]="$*"
  local remaining
  remaining=$(left)
  ((limit > remaining)) && limit=$remaining
  if ((limit < 5)); then
    RESULT[$name]="FAIL (no time left in the ${BUDGET}s budget)" SECS[$name]=0
    say "--- $name: ${RESULT[$name]}"
    return 1
  fi
  say "=== $name (limit ${limit}s): $*"
  local t0=$SECONDS
  timeout --kill-after=5 "$limit" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"
  local rc=$?
  SECS[$name]=$((SECONDS - t0))
  if [[ $rc -eq 0 ]]; then RESULT[$name]=pass; else RESULT[$name]="FAIL (exit $rc)"; fi
  [[ $rc -eq 124 || $rc -eq 137 ]] && RESULT[$name]="FAIL (timed out after ${limit}s)"
  say "--- $name: ${RESULT[$name]} in ${SECS[$name]} s"
  return $rc
}

finish() {
  {
    echo "== gpu-check summary ($(date -u +%FT%TZ), $((SECONDS - T0)) s of a ${BUDGET} s budget) =="
    echo "bundle: $(head -n 1 "$BUNDLE/MANIFEST" 2>/dev/null || echo "no MANIFEST")"
    echo "gpu: $GPU"
    printf '%-44s %-44s %6s\n' part result seconds
    for k in "${ORDER[@]}"; do printf '%-44s %-44s %6s\n' "$k" "${RESULT[$k]:-}" "${SECS[$k]:-}"; done
    if [[ -n ${TESTLINES:-} ]]; then
      echo
      echo "== every cuda test (binary: test ... result) =="
      echo "$TESTLINES"
    fi
    if [[ -s $WORK/simhw.txt ]]; then
      echo
      echo "== simulator vs hardware (tests/kernels/*.cu, sim_vs_hardware) =="
      cat "$WORK/simhw.txt"
    fi
    if [[ -s $WORK/selftest.json || -s $WORK/selftest.err ]]; then
      echo
      echo "== selftest (charlstm-cuda selftest --device cuda --json, its rows) =="
      "$PY" -c 'import json, sys
d = json.load(open(sys.argv[1]))
ok = "all passed" if d["passed"] else "%d FAILED" % d["failed"]
print(d["device"] + ": " + ok + ", seed %s, %.1f s" % (d["seed"], d["seconds"]))
for r in d["rows"]:
    print("%-4s %-30.30s %-60.60s %-26.26s %-7s %9.2e <= %.0e" % ("pass" if r["pass"] else "FAIL",
          r["kernel"], r["output"], r["shape"], r["metric"], r["rel_err"], r["bound"]))
' "$WORK/selftest.json" 2>/dev/null || echo "(no JSON report)"
      cat "$WORK/selftest.err"
    fi
    if [[ -s $WORK/bench.err ]]; then
      echo
      echo "== ours (charlstm-cuda, cuda) vs PyTorch (nn.LSTM + cuDNN), one run =="
      grep -v '^note: ' "$WORK/bench.err"
    fi
    if [[ -s $WORK/stack.err ]]; then
      echo
      echo "== two layers of 256 (bench --layers 2 --hidden 256, cuda) vs PyTorch nn.LSTM(num_layers=2), one run =="
      grep -v '^note: ' "$WORK/stack.err"
    fi
    if [[ -s $WORK/stack-cluster.err ]]; then
      echo
      echo "== the same on the cluster kernels (bench ... --recurrence cluster), one run =="
      grep -v '^note: ' "$WORK/stack-cluster.err"
    fi
    if [[ -s $WORK/op.out ]]; then
      echo
      echo "== the LSTM op (ops::LstmCuda) vs nn.LSTM on cuDNN, forward + backward, one run a case =="
      cat "$WORK/op.out"
    fi
    [[ -n $QUICK ]] && echo "(GPU_CHECK_QUICK: no whole epochs; the epoch ratio uses the slice estimates)"
    for m in "${MISSING[@]}"; do echo "MISSING: $m"; done
    for prof in profile profile-pytorch; do
      [[ -s $WORK/$prof.txt ]] || continue
      echo
      echo "== $prof (ncu --clock-control none, informational; full CSV in $prof.txt) =="
      "$PY" -c 'import csv, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 14 and r[0].isdigit()]
seen = {}
for r in rows:
    seen.setdefault((int(r[0]), r[4], r[8], r[7]), {})[r[12]] = r[14]
print("%3s %-40s %12s %12s %8s %8s" % ("id", "kernel", "grid", "block", "us", "SM%/mem%"))
for (i, k, g, b), m in sorted(seen.items()):
    us = float(m.get("Duration", "nan").replace(",", "")) / 1e3
    print("%3d %-40.40s %12s %12s %8.1f %4s/%s" % (i, k, g, b, us,
          m.get("Compute (SM) Throughput", "?"), m.get("Memory Throughput", "?")))
' "$WORK/$prof.txt" 2>/dev/null || echo "(could not read the CSV)"
    done
    for prof in profile-stack profile-stack-cluster; do
      [[ -s $WORK/$prof.txt ]] || continue
      launches=${CMDLINE[$prof]#*--launch-count }
      echo
      echo "== $prof (ncu durations, informational: the first ${launches%% *} launches of bench --layers 2 --hidden 256${CMDLINE[$prof]##*--hidden 256}, summed by kernel; full CSV in gpu-check.tgz) =="
      "$PY" -c 'import csv, sys
scale = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3}
by = {}
for r in csv.reader(open(sys.argv[1])):
    if len(r) > 14 and r[0].isdigit() and r[12] == "gpu__time_duration.sum":
        us = float(r[14].replace(",", "")) * scale.get(r[13], float("nan"))
        n, t = by.get(r[4], (0, 0.0))
        by[r[4]] = (n + 1, t + us)
total = sum(t for _, t in by.values())
print("%-40s %8s %10s %10s %6s" % ("kernel", "launches", "mean us", "total us", "share"))
for k, (n, t) in sorted(by.items(), key=lambda kv: -kv[1][1]):
    print("%-40.40s %8d %10.1f %10.1f %5.1f%%" % (k, n, t / n, t, 100 * t / total))
' "$WORK/$prof.txt" 2>/dev/null || echo "(could not read the CSV)"
    done
    echo
    echo "commands (bundle $BUNDLE${PACKED:+, unpacked from $PACKED, removed at exit}, outputs in $OUT):"
    for k in "${ORDER[@]}"; do [[ $k == test-* ]] || echo "  $k: ${CMDLINE[$k]:-}"; done
    echo "  tests: BIN cuda --nocapture --test-threads 1, for each of $BUNDLE/tests/*"
  } >"$SUMMARY" 2>&1
  for f in selftest.json pytorch.json bench.json profile.txt profile-persistent.txt \
    profile-pytorch.txt summary.txt; do
    [[ -s $WORK/$f ]] && cp "$WORK/$f" "$OUT/$f"
  done
  tar -czf "$OUT/gpu-check.tgz" -C "$WORK" . 2>/dev/null
  cat "$SUMMARY"
  local fail=0
  for k in "${ORDER[@]}"; do
    [[ $k == profile* ]] && continue
    [[ ${RESULT[$k]} == pass ]] || fail=1
  done
  exit $fail
}

MISSING=()
say "gpu-check $(date -u +%FT%TZ) bundle=$BUNDLE budget=${BUDGET}s parts=$PARTS"
GPU=$(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader 2>&1 | head -n 1)
say "gpu: $GPU"
if [[ ! -x $BIN ]]; then
  say "no charlstm-cuda binary in $BUNDLE (make one with scripts/gpu-bundle.sh)"
  RESULT[bundle]="FAIL (no binary)" SECS[bundle]=0 ORDER+=(bundle)
  finish
fi

# test_part BASE LIMIT: the bundled test binary BASE, its *cuda* tests, as
# the part test-BASE, each test's verdict added to TESTLINES.
TESTLINES=""
test_part() {
  local base=$1 limit=$2
  local t=$BUNDLE/tests/$base name="test-$1"
  run "$name" "$limit" "$t" cuda --nocapture --test-threads 1
  # A binary whose filter matched nothing "passes" having checked nothing.
  if grep -q "running 0 tests" "$WORK/$name.out"; then RESULT[$name]="FAIL (no cuda tests)"; fi
  if grep -q "SKIPPED" "$WORK/$name".{out,err}; then RESULT[$name]="FAIL (skipped: no GPU?)"; fi
  # One line per test: with --nocapture its own output splits libtest's
  # "test NAME ... ok" line, so the verdict comes from the list of
  # failures libtest prints at the end (none: all passed).
  local finished tname verdict
  finished=$(grep -c '^test result:' "$WORK/$name.out")
  while read -r tname; do
    [[ -n $tname ]] || continue
    if ((finished == 0)); then verdict="did not finish (${RESULT[$name]})"
    elif sed -n '/^failures:$/,$p' "$WORK/$name.out" | grep -q -x "    $tname"; then verdict=FAILED
    else verdict=ok; fi
    TESTLINES+="$base: $tname ... $verdict"$'\n'
  done < <("$t" cuda --list 2>/dev/null | sed -n 's/: test$//p')
  if [[ $base == sim_vs_hardware ]]; then
    # Its own lines: one per kernel output compared, then the verdict.
    grep -v -E '^(running [0-9]+ test|test |$|successes:|failures:|---- )' "$WORK/$name.out" \
      >"$WORK/simhw.txt"
  fi
}

# wanted_test BASE: the tests part runs the bundled binary BASE.
wanted_test() {
  want tests && [[ -x $BUNDLE/tests/$1 ]] \
    && [[ -z $ONLY_TESTS || ",$ONLY_TESTS," == *",$1,"* ]]
}

# The cluster kernels first, alone, with a short limit: they had not run on
# a GPU when this was written, and a cluster barrier that never completes
# hangs its process until the limit kills it. If that happens, every later
# part runs with CHARLSTM_NO_CLUSTERS=1 (the GPU reports no clusters: the
# selftest leaves its cluster rows out, sim_vs_hardware's cluster lines and
# every cluster path fail at once with that reason), so one hang costs this
# part's limit, not every later part's.
if wanted_test lstm_cluster; then
  test_part lstm_cluster "${GPU_CHECK_CLUSTER_LIMIT:-60}"
  if [[ ${RESULT[test-lstm_cluster]} == *"timed out"* ]]; then
    export CHARLSTM_NO_CLUSTERS=1
    MISSING+=("the cluster kernels hung (test-lstm_cluster timed out): every later part ran with CHARLSTM_NO_CLUSTERS=1, so the selftest has no cluster rows and every cluster check failed at once")
  fi
fi

if want selftest; then
  run selftest 90 "$BIN" selftest --device cuda --json
  cp "$WORK/selftest.out" "$WORK/selftest.json"
fi

if want tests; then
  export CHARLSTM_BIN=$BIN # tests/cli.rs runs the bundle's binary
  for t in "$BUNDLE"/tests/*; do
    base=$(basename "$t")
    [[ $base != lstm_cluster ]] && wanted_test "$base" || continue
    test_part "$base" 120
  done
fi

# Both sides train on the same text: the bundle's corpus, else a synthetic
# one written here (the GPU machine has no network to download one).
if [[ ! -f $CORPUS ]]; then
  say "no corpus at $CORPUS: writing a synthetic text of the same size and alphabet"
  CORPUS=$WORK/synthetic.txt
  "$PY" -c 'import random, sys
a = "abcdefghijklmnopqrstuvwxyz0123456789 .,;:!?\x27\"()-\n=[]_&*+"
r = random.Random(12345)
open(sys.argv[1], "w").write("".join(r.choice(a) for _ in range(600_901)))' "$CORPUS" \
    || say "could not write $CORPUS"
fi
common=(--corpus "$CORPUS" --steps "$STEPS" --slice-batches "$SLICE")
epoch_args=()
[[ -z $QUICK ]] && epoch_args=(--full-epoch)

# pytorch_part NAME LIMIT ARGS...: bench_pytorch.py ARGS --out NAME.json as
# the part NAME, with LIMIT seconds; the JSON is kept only when it passed.
# Returns non-zero when it did not (the bundle without the script included).
pytorch_part() {
  local name=$1 limit=$2
  shift 2
  if [[ ! -f $BUNDLE/bench_pytorch.py ]]; then
    ORDER+=("$name")
    RESULT[$name]="FAIL (no bench_pytorch.py)" SECS[$name]=0
    MISSING+=("$name: no bench_pytorch.py in $BUNDLE (scripts/gpu-bundle.sh copies it)")
    return 1
  fi
  run "$name" "$limit" "$PY" "$BUNDLE/bench_pytorch.py" --device "$TORCH_DEVICE" "$@" \
    --out "$WORK/$name.json"
  if [[ ${RESULT[$name]} != pass ]]; then
    rm -f "$WORK/$name.json"
    MISSING+=("$name: ${RESULT[$name]}: $(tail -n 1 "$WORK/$name.err")")
    return 1
  fi
}

if want pytorch; then
  pytorch_part pytorch 150 "${common[@]}" "${epoch_args[@]}"
fi

# bench_part NAME ARGS...: charlstm-cuda bench --device cuda ARGS as the
# part NAME, its JSON in NAME.json. A bench without a usable GPU exits 0
# with an unavailable cuda row: not a pass here.
bench_part() {
  local name=$1
  shift
  run "$name" 90 "$BIN" bench --device cuda "$@"
  cp "$WORK/$name.out" "$WORK/$name.json"
  if [[ ${RESULT[$name]} != pass ]]; then
    MISSING+=("$name: ${RESULT[$name]}: $(tail -n 2 "$WORK/$name.err" | tr '\n' ' ')")
  elif grep -q '"available": false' "$WORK/$name.json"; then
    RESULT[$name]="FAIL (cuda unavailable)"
    MISSING+=("$name: cuda unavailable (the bench's cuda row says why): no GPU numbers, no ratios")
  fi
}

if want bench; then
  pt_args=()
  [[ -f $WORK/pytorch.json ]] && pt_args=(--pytorch "$WORK/pytorch.json")
  bench_part bench "${common[@]}" "${epoch_args[@]}" "${pt_args[@]}"
fi

if want stack; then
  # Issue 17's stack: no whole epochs (each would cost minutes of the
  # budget at this size), the same steps and slice as above.
  stack_job=(--layers 2 --hidden 256 --gen-length 100)
  stack_pt=()
  pytorch_part stack-pytorch 90 "${common[@]}" "${stack_job[@]}" --variants fp32-eager,fp32-graph \
    && stack_pt=(--pytorch "$WORK/stack-pytorch.json")
  bench_part stack "${common[@]}" "${stack_job[@]}" "${stack_pt[@]}"
  bench_part stack-cluster "${common[@]}" "${stack_job[@]}" --recurrence cluster "${stack_pt[@]}"
fi

if want op; then
  if [[ ! -x $BUNDLE/lstm_op || ! -f $BUNDLE/bench_lstm_op.py ]]; then
    ORDER+=(op)
    RESULT[op]="FAIL (no lstm_op in the bundle)" SECS[op]=0
    MISSING+=("op: no lstm_op or bench_lstm_op.py in $BUNDLE (scripts/gpu-bundle.sh puts them there)")
  else
    # One round of 20 runs a case, the 12 cases' PyTorch side in one Python
    # process (its start, torch and CUDA, costs seconds; the runs, ms).
    run op 90 env LSTM_OP_DEVICE=cuda LSTM_OP_ROUNDS=1 LSTM_OP_REPS=20 LSTM_OP_REQUIRE_TORCH=1 \
      CHARLSTM_PYTHON="$PY" LSTM_OP_SCRIPT="$BUNDLE/bench_lstm_op.py" "$BUNDLE/lstm_op"
    if grep -q 'cuda unavailable' "$WORK/op.err"; then RESULT[op]="FAIL (cuda unavailable)"; fi
    if [[ ${RESULT[op]} != pass ]]; then
      MISSING+=("op: ${RESULT[op]}: $(tail -n 1 "$WORK/op.err")")
    fi
  fi
fi

if want profile; then
  if command -v ncu >/dev/null; then
    # One training step's kernels, a few steps in (after capture and
    # warm-up), each kernel's duration and the chip's speed-of-light.
    run profile 60 ncu --clock-control none --launch-skip 40 --launch-count 24 \
      --section SpeedOfLight --section LaunchStats --csv --page details \
      "$BIN" bench --device cuda --corpus "$CORPUS" --steps 3 --slice-batches 2
    cp "$WORK/profile.out" "$WORK/profile.txt"
    # Where a recurrent step's time goes: warp stall reasons, issue
    # activity and shared-memory traffic of the two persistent kernels.
    run profile-persistent 60 ncu --clock-control none --kernel-name regex:persistent \
      --launch-skip 2 --launch-count 2 --section WarpStateStats --section SchedulerStats \
      --section MemoryWorkloadAnalysis_Tables --section ComputeWorkloadAnalysis --page details \
      "$BIN" bench --device cuda --corpus "$CORPUS" --steps 3 --slice-batches 2
    grep -v '^ *[{}"\[]' "$WORK/profile-persistent.out" >"$WORK/profile-persistent.txt"
    # The two-layer H = 256 step (per-step recurrence, no persistent kernel
    # fits): every launch's duration only (one ncu pass each), summed by
    # kernel in summary.txt, so the slowest kernel of that path is named.
    run profile-stack 60 ncu --clock-control none --launch-count 300 \
      --metrics gpu__time_duration.sum --print-units base --csv --page details \
      "$BIN" bench --device cuda --corpus "$CORPUS" --layers 2 --hidden 256 --steps 1 \
      --slice-batches 1 --gen-length 2
    cp "$WORK/profile-stack.out" "$WORK/profile-stack.txt"
    # The same step with the recurrence on the cluster kernels (fewer
    # launches a step: 120 cover more than one).
    if [[ -z ${CHARLSTM_NO_CLUSTERS:-} ]]; then
      run profile-stack-cluster 60 ncu --clock-control none --launch-count 120 \
        --metrics gpu__time_duration.sum --print-units base --csv --page details \
        "$BIN" bench --device cuda --corpus "$CORPUS" --layers 2 --hidden 256 --steps 1 \
        --slice-batches 1 --gen-length 2 --recurrence cluster
      cp "$WORK/profile-stack-cluster.out" "$WORK/profile-stack-cluster.txt"
    fi
    # Which cuDNN kernels nn.LSTM runs here (persistent or not) and what
    # one PyTorch training step costs, kernel by kernel (strict fp32, eager).
    if [[ -f $BUNDLE/bench_pytorch.py ]]; then
      run profile-pytorch 60 ncu --clock-control none --launch-skip 150 --launch-count 60 \
        --section SpeedOfLight --section LaunchStats --csv --page details \
        "$PY" "$BUNDLE/bench_pytorch.py" --device "$TORCH_DEVICE" --corpus "$CORPUS" --steps 5 \
        --slice-batches 5 --gen-length 2 --variants fp32-eager
      cp "$WORK/profile-pytorch.out" "$WORK/profile-pytorch.txt"
    fi
  else
    ORDER+=(profile)
    RESULT[profile]="not run (no ncu)" SECS[profile]=0
  fi
fi

finish
