#!/usr/bin/env bash
# Builds everything scripts/gpu-check.sh needs on a machine with an NVIDIA GPU
# and no Rust toolchain, in one folder inside the repository that git
# ignores (so it travels only when named):
#   gpu-check.sh         the check, which unpacks payload.tar.xz first
#   MANIFEST             what is in it and which commit built it
#   payload.tar.xz       the rest:
#     charlstm-cuda      the release binary (selftest, bench)
#     tests/NAME         every test binary with tests named *cuda*, stripped
#     lstm_op            benches/lstm_op.rs (the op vs torch.nn.LSTM), stripped
#     bench_pytorch.py, bench_lstm_op.py, MANIFEST, nietzsche.txt (when
#                        ../shared has it)
#
# Packed because the device tool carries at most 64 MiB a call, the
# working tree included: every test binary holds the whole library, ~80 MB
# in all unpacked, ~10 MB in xz (they share most of their bytes). The
# script fails when the bundle and the tracked files come to more than
# 60 MiB (GPU_BUNDLE_MAX_MIB), and removes the bundle then.
#
#   bash scripts/gpu-bundle.sh [DEST]   # default DEST: gpu-bundle (repo root)
#   # then, on the GPU machine, from the repository root:
#   bash gpu-bundle/gpu-check.sh
#
# Which test files go in is derived, not listed: every tests/*.rs that
# defines a test whose name contains "cuda". The script fails if a bundled
# binary lists no such test (its filter would match nothing there and check
# nothing) or if a binary is missing.
#
# GPU_BUNDLE_PROFILE=dev takes the dev-profile binary the test build makes
# (with the test kernels in) instead of a release one: CI uses it to run
# this script whole without a second optimised build (the test binaries
# are dev-profile either way: only their *cuda* tests run on the GPU, and
# those spend their time in the kernels), and packs with xz -1 instead of
# -6: 4 s instead of 21 s on CI's two cores, ~33 MB instead of ~13 MB
# (under the limit below either way).
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-gpu-bundle}
PROFILE=${GPU_BUNDLE_PROFILE:-release}

# Test files with a GPU test: `fn NAME(` with "cuda" in NAME, at the top
# level (the test functions of this repository are not nested).
mapfile -t TESTS < <(grep -l -E '^fn [a-z0-9_]*cuda[a-z0-9_]*\(\)' tests/*.rs | xargs -n1 basename | sed 's/\.rs$//' | sort)
[[ ${#TESTS[@]} -gt 0 ]] || { echo "gpu-bundle: no test file defines a *cuda* test" >&2; exit 1; }

bash scripts/setup-cuda.sh >/dev/null
export CHARLSTM_REQUIRE_KERNELS=1
if [[ $PROFILE == release ]]; then
  cargo build --release --bin charlstm-cuda
  bin=target/release/charlstm-cuda
  profile_flag=(--release)
else
  # The binary the test build below makes: a plain `cargo build --bin`
  # would build the library once more, without the features the
  # dev-dependencies unify into it (57 s of CI's bundle step, 2026-12-06).
  bin=
  profile_flag=()
fi
args=()
for t in "${TESTS[@]}"; do args+=(--test "$t"); done
json=$(mktemp)
bench_json=$(mktemp)
# The bundle is assembled in STAGE, then packed into DEST.
STAGE=$(mktemp -d)
trap 'rm -rf "$json" "$bench_json" "$STAGE"' EXIT
cargo test --no-run --message-format=json "${args[@]}" >"$json"
# The op's bench, in the binary's profile (its GPU side is the op's kernels).
cargo build "${profile_flag[@]}" --bench lstm_op --message-format=json >"$bench_json"

mkdir -p "$STAGE/tests"
cp scripts/bench_pytorch.py scripts/bench_lstm_op.py "$STAGE/"
# copy_built DEST KIND NAME...: the executables cargo's JSON messages (on
# stdin) name for targets NAME of kind KIND, into DEST.
copy_built() {
  python3 -c '
import json, shutil, sys
dest, kind, wanted = sys.argv[1], sys.argv[2], set(sys.argv[3:])
found = set()
for line in sys.stdin:
    msg = json.loads(line)
    name = msg.get("target", {}).get("name")
    if (msg.get("reason") == "compiler-artifact" and msg.get("executable")
            and kind in msg["target"]["kind"] and name in wanted):
        shutil.copy(msg["executable"], f"{dest}/{name}")
        found.add(name)
missing = wanted - found
if missing:
    sys.exit(f"gpu-bundle: cargo built no {kind} binary for: {sorted(missing)}")
' "$@"
}
copy_built "$STAGE/tests" test "${TESTS[@]}" <"$json"
if [[ -n $bin ]]; then
  cp "$bin" "$STAGE/"
else
  copy_built "$STAGE" bin charlstm-cuda <"$json"
fi
copy_built "$STAGE" bench lstm_op <"$bench_json"
strip "$STAGE"/tests/* "$STAGE/charlstm-cuda" "$STAGE/lstm_op"

# Every bundled binary must list at least one *cuda* test: gpu-check.sh
# runs each with the filter `cuda`, and a filter that matches nothing
# "passes" having checked nothing.
for t in "${TESTS[@]}"; do
  n=$("$STAGE/tests/$t" cuda --list 2>/dev/null | grep -c ': test$' || true)
  if [[ $n -eq 0 ]]; then
    echo "gpu-bundle: tests/$t.rs was bundled but its binary lists no test matching 'cuda'" >&2
    exit 1
  fi
done

corpus=../shared/corpus/nietzsche.txt
if [[ -f $corpus ]]; then
  cp "$corpus" "$STAGE/nietzsche.txt"
else
  echo "note: $corpus not found; gpu-check.sh will use a synthetic corpus" >&2
fi
{
  echo "charlstm-cuda GPU bundle, built $(date -u +%FT%TZ) from $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)'), profile $PROFILE"
  echo "binary: charlstm-cuda"
  echo "tests: ${TESTS[*]}"
  echo "bench: lstm_op"
  echo "scripts: gpu-check.sh bench_pytorch.py bench_lstm_op.py"
  [[ -f $STAGE/nietzsche.txt ]] && echo "corpus: nietzsche.txt"
  echo "unpacked: $(du -sh "$STAGE" | cut -f1), packed into payload.tar.xz (gpu-check.sh unpacks it)"
} >"$STAGE/MANIFEST"

rm -rf "$DEST"
mkdir -p "$DEST"
level=6
[[ $PROFILE == dev ]] && level=1
tar -C "$STAGE" -cf - . | xz -"$level" -T0 >"$DEST/payload.tar.xz"
cp scripts/gpu-check.sh "$STAGE/MANIFEST" "$DEST/"

# What travels to the device machine: this folder and the tracked files.
# Over the limit, the folder is removed, so that it cannot be carried.
mib=$((1024 * 1024))
max=${GPU_BUNDLE_MAX_MIB:-60}
bundle=$(du -sb "$DEST" | cut -f1)
tree=$(git ls-files -z | du -cb --files0-from=- 2>/dev/null | tail -n 1 | cut -f1)
if ((bundle + tree > max * mib)); then
  rm -rf "$DEST"
  echo "gpu-bundle: the bundle ($((bundle / mib)) MiB) and the tracked files ($((tree / mib)) MiB) come to more than $max MiB; the device tool carries at most 64 MiB a call: bundle fewer test binaries or make them smaller ($DEST removed)" >&2
  exit 1
fi
du -sh "$DEST"
cat "$DEST/MANIFEST"
