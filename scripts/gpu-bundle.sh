#!/usr/bin/env bash
# Builds everything scripts/gpu-check.sh needs on a machine with an NVIDIA GPU
# and no Rust toolchain: the release binary, the GPU test binaries (stripped),
# the two scripts and the Nietzsche corpus, in one folder.
#
#   bash scripts/gpu-bundle.sh [DEST]      # default DEST: target/gpu-bundle
#   # copy DEST to the GPU machine, then there:
#   bash DEST/gpu-check.sh
#
# The test binaries are the dev-profile ones (CI builds them anyway); only
# their tests named *cuda* run on the GPU, and those do not depend on the
# optimisation level of the host code.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-target/gpu-bundle}
TESTS=(kernels_vs_cpu lstm_kernels gpu_engine generate_kernel wgrad_kernels lstm_persistent)

bash scripts/setup-cuda.sh >/dev/null
export CHARLSTM_REQUIRE_KERNELS=1
cargo build --release
args=()
for t in "${TESTS[@]}"; do
  [[ -f tests/$t.rs ]] && args+=(--test "$t")
done
cargo test --no-run --message-format=json "${args[@]}" >target/gpu-bundle-tests.json

rm -rf "$DEST"
mkdir -p "$DEST/tests"
cp target/release/charlstm-cuda scripts/gpu-check.sh scripts/bench_pytorch.py "$DEST/"
python3 - "$DEST/tests" <target/gpu-bundle-tests.json <<'EOF'
import json, shutil, sys
dest = sys.argv[1]
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("reason") == "compiler-artifact" and msg.get("executable") \
            and "test" in msg["target"]["kind"]:
        shutil.copy(msg["executable"], f"{dest}/{msg['target']['name']}")
EOF
strip "$DEST"/tests/* "$DEST/charlstm-cuda"
corpus=../shared/corpus/nietzsche.txt
if [[ -f $corpus ]]; then
  cp "$corpus" "$DEST/nietzsche.txt"
else
  echo "note: $corpus not found; gpu-check.sh will use a synthetic corpus" >&2
fi
du -sh "$DEST"
ls -la "$DEST" "$DEST/tests"
