#!/usr/bin/env bash
# Installs nvcc (CUDA 13.0 line, from PyPI) into .cuda/ at the repository root.
#
# Pinned to 13.0: newer nvcc emits PTX that a CUDA 13.0 driver (the GPU
# machines') rejects. Idempotent: a second run checks the stamp and exits.
# Prints the nvcc path on its last line; build.rs finds it there on its own.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.cuda"
pins=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-nvvm==13.0.88
  nvidia-cuda-crt==13.0.88
  nvidia-cuda-runtime==13.0.96
)
stamp="$dest/.installed"
want="${pins[*]}"

find_nvcc() { find "$dest/venv" -path '*/nvidia/cu13/bin/nvcc' -type f 2>/dev/null | head -n 1; }

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && nvcc="$(find_nvcc)" && [ -n "$nvcc" ]; then
  echo "$nvcc"
  exit 0
fi

python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null; then
  echo "setup-cuda: $python not found; install Python 3 (with venv) first" >&2
  exit 1
fi
rm -rf "$dest"
mkdir -p "$dest"
"$python" -m venv "$dest/venv"
"$dest/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir "${pins[@]}"
nvcc="$(find_nvcc)"
if [ -z "$nvcc" ]; then
  echo "setup-cuda: installed the packages but found no nvcc under $dest/venv" >&2
  exit 1
fi
"$nvcc" --version | tail -n 2 >&2
echo "$want" > "$stamp"
# A build made before nvcc existed watched nothing that changes now; touching
# build.rs makes cargo rerun it and compile the kernels.
touch "$root/build.rs"
echo "$nvcc"
