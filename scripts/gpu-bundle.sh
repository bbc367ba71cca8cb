#!/usr/bin/env bash
# Builds everything scripts/gpu-check.sh needs on a machine with an NVIDIA GPU
# and no Rust toolchain, in one folder inside the repository that git
# ignores (so it travels only when named):
#   charlstm-cuda        the release binary (selftest, bench)
#   tests/NAME           every test binary with tests named *cuda*, stripped
#   gpu-check.sh, bench_pytorch.py, nietzsche.txt (when ../shared has it)
#   MANIFEST             what is in it and which commit built it
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
# GPU_BUNDLE_PROFILE=dev builds the binary in the dev profile instead of
# release: CI uses it to run this script whole without a second optimised
# build (the test binaries are dev-profile either way: only their *cuda*
# tests run on the GPU, and those spend their time in the kernels).
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
else
  cargo build --bin charlstm-cuda
  bin=target/debug/charlstm-cuda
fi
args=()
for t in "${TESTS[@]}"; do args+=(--test "$t"); done
json=$(mktemp)
trap 'rm -f "$json"' EXIT
cargo test --no-run --message-format=json "${args[@]}" >"$json"

rm -rf "$DEST"
mkdir -p "$DEST/tests"
cp "$bin" scripts/gpu-check.sh scripts/bench_pytorch.py "$DEST/"
python3 -c '
import json, shutil, sys
dest, wanted = sys.argv[1], set(sys.argv[2:])
found = set()
for line in sys.stdin:
    msg = json.loads(line)
    name = msg.get("target", {}).get("name")
    if (msg.get("reason") == "compiler-artifact" and msg.get("executable")
            and "test" in msg["target"]["kind"] and name in wanted):
        shutil.copy(msg["executable"], f"{dest}/{name}")
        found.add(name)
missing = wanted - found
if missing:
    sys.exit(f"gpu-bundle: cargo built no test binary for: {sorted(missing)}")
' "$DEST/tests" "${TESTS[@]}" <"$json"
strip "$DEST"/tests/* "$DEST/charlstm-cuda"

# Every bundled binary must list at least one *cuda* test: gpu-check.sh
# runs each with the filter `cuda`, and a filter that matches nothing
# "passes" having checked nothing.
for t in "${TESTS[@]}"; do
  n=$("$DEST/tests/$t" cuda --list 2>/dev/null | grep -c ': test$' || true)
  if [[ $n -eq 0 ]]; then
    echo "gpu-bundle: tests/$t.rs was bundled but its binary lists no test matching 'cuda'" >&2
    exit 1
  fi
done

corpus=../shared/corpus/nietzsche.txt
if [[ -f $corpus ]]; then
  cp "$corpus" "$DEST/nietzsche.txt"
else
  echo "note: $corpus not found; gpu-check.sh will use a synthetic corpus" >&2
fi
{
  echo "charlstm-cuda GPU bundle, built $(date -u +%FT%TZ) from $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)'), profile $PROFILE"
  echo "binary: charlstm-cuda"
  echo "tests: ${TESTS[*]}"
  echo "scripts: gpu-check.sh bench_pytorch.py"
  [[ -f $DEST/nietzsche.txt ]] && echo "corpus: nietzsche.txt"
} >"$DEST/MANIFEST"
du -sh "$DEST"
cat "$DEST/MANIFEST"
