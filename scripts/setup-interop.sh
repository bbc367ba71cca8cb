#!/usr/bin/env bash
# Installs the Python that tests/interop.rs and tests/interop_layers.rs
# drive (PyTorch, safetensors, numpy, Keras) into .venv-interop/ at the
# repository root (git-ignored).
#
# torch comes from PyTorch's CPU index: its wheel is ~180 MB, where PyPI's
# Linux wheel is the CUDA build with ~4 GB of nvidia-* packages, none of
# which a CPU-side load-and-predict check uses. Where that index cannot be
# reached (a sandbox that allows PyPI only), PyPI's build is the fallback:
# slower to install, the same checks. Keras 3 comes without TensorFlow
# (~600 MB more): the check scripts run it on the PyTorch backend unless
# TensorFlow is importable (e.g. CHARLSTM_PYTHON=.venv-peers/bin/python, scripts/peers/setup.sh).
#
#   bash scripts/setup-interop.sh [VENV]   # default VENV: .venv-interop
#
# Idempotent: a second run checks the stamp and exits. Prints the Python's
# path on its last line; `.ci/run` puts it in CHARLSTM_PYTHON.
# scripts/peers/setup.sh starts from it and adds TensorFlow.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-$root/.venv-interop}"
torch_pin="torch==2.15.0"
pins=(safetensors==0.8.0 numpy==2.4.6 keras==3.15.1)
stamp="$dest/.installed"
want="$torch_pin ${pins[*]}"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$dest/bin/python" ]; then
  echo "$dest/bin/python"
  exit 0
fi

python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null; then
  echo "setup-interop: $python not found; install Python 3 (with venv) first" >&2
  exit 1
fi
rm -rf "$dest"
"$python" -m venv "$dest"
pip=("$dest/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir)
cpu_index="${CHARLSTM_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
if ! "${pip[@]}" --retries 1 --timeout 30 --index-url "$cpu_index" "$torch_pin"; then
  echo "setup-interop: $cpu_index unreachable; installing PyPI's torch (CUDA build, ~4 GB) instead" >&2
  "${pip[@]}" "$torch_pin"
fi
"${pip[@]}" "${pins[@]}"
"$dest/bin/python" -c "import torch, safetensors, numpy; print('setup-interop: torch', torch.__version__)" >&2
KERAS_BACKEND=torch "$dest/bin/python" -c "import keras; print('setup-interop: keras', keras.__version__)" >&2
echo "$want" > "$stamp"
echo "$dest/bin/python"
