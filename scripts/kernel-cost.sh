#!/usr/bin/env bash
# The static cost of the kernels on sm_90 (H100/H200), without a GPU: ptxas
# registers/spills per kernel and the SASS (machine code) of the persistent
# LSTM kernels, from which docs/measured.md's per-step prediction is read off (the
# instructions between the step loop's barriers). The dynamic PTX count per
# step comes from the simulator:
#   cargo test --release --test lstm_persistent -- --ignored --nocapture
#
#   bash scripts/kernel-cost.sh [KERNEL_FILE]   # default kernels/lstm_persistent.cu
# Writes target/kernel-cost/NAME.sass. cuobjdump/nvdisasm come from PyPI
# (13.2: the 13.0 line has none there; they only read the sm_90 cubin that
# the pinned 13.0 ptxas wrote) into .cuda-tools/.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
src="${1:-$root/kernels/lstm_persistent.cu}"
nvcc="$(bash "$root/scripts/setup-cuda.sh" | tail -n 1)"
tools="$root/.cuda-tools"
if [ ! -x "$tools/venv/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$tools/venv"
  "$tools/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    nvidia-cuda-cuobjdump==13.2.51 nvidia-cuda-nvdisasm==13.2.51
fi
bin="$(dirname "$(find "$tools/venv" -path '*/nvidia/cu13/bin/cuobjdump' -type f | head -n 1)")"
out="$root/target/kernel-cost"
mkdir -p "$out"
name="$(basename "$src" .cu)"
"$nvcc" -arch=sm_90 -cubin --resource-usage -I"$root/kernels" -o "$out/$name.cubin" "$src" 2>&1 |
  grep -E "Function properties|registers|spill" | sed 's/^ptxas info *: //'
PATH="$bin:$PATH" cuobjdump -sass "$out/$name.cubin" >"$out/$name.sass"
echo "SASS: $out/$name.sass"
# Instructions per kernel, and the step loop's barriers (BAR.SYNC) with their addresses.
awk '/Function :/ { if (f) printf "%-34s %5d instructions\n", f, n; f = $3; n = 0 }
     /^ +\/\*[0-9a-f]+\*\/ / { n++ }
     END { if (f) printf "%-34s %5d instructions\n", f, n }' "$out/$name.sass"
