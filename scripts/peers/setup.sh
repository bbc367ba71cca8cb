#!/usr/bin/env bash
# Installs the peer frameworks of requirements.txt here (Keras 3 on
# TensorFlow-CPU, PyTorch) into .venv-peers/ at the repository root
# (git-ignored), or into the directory given: what scripts/peers/*.py and
# tests/fixtures/make_keras_fixture.py run on.
#
#   bash scripts/peers/setup.sh [VENV]
#
# torch comes from PyTorch's CPU index, as in scripts/setup-interop.sh: a
# ~180 MB wheel where PyPI's Linux wheel is the CUDA build with ~4 GB of
# nvidia-* packages that a CPU peer never loads. Where that index cannot be
# reached, PyPI's build is the fallback (the same torch on the CPU).
# About a minute and 2.5 GB, mostly TensorFlow.
#
# A VENV that exists is installed into, not replaced: CI gives it the
# interop venv (scripts/setup-interop.sh), whose torch is the one pinned
# here, so only TensorFlow is added (~30 s). Idempotent: a second run
# checks the stamp and exits. Prints the Python's path on its last line.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dest="${1:-$root/.venv-peers}"
reqs="$here/requirements.txt"
stamp="$dest/.peers-installed"
want="$(grep -v '^#' "$reqs" | grep . | tr '\n' ' ')"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$dest/bin/python" ]; then
  echo "$dest/bin/python"
  exit 0
fi

python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null; then
  echo "peers/setup.sh: $python not found; install Python 3.11 (with venv) first" >&2
  exit 1
fi
[ -x "$dest/bin/python" ] || "$python" -m venv "$dest"
pip=("$dest/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir)
torch_pin="$(grep -E '^torch==' "$reqs")"
cpu_index="${CHARLSTM_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
if "$dest/bin/python" -m pip show torch 2>/dev/null | grep "^Version: ${torch_pin#torch==}\(+.*\)\?$" >/dev/null; then
  : # the pinned torch is there (CPU or CUDA build)
elif ! "${pip[@]}" --retries 1 --timeout 30 --index-url "$cpu_index" "$torch_pin"; then
  echo "peers/setup.sh: $cpu_index unreachable; installing PyPI's torch (CUDA build, ~4 GB) instead" >&2
  "${pip[@]}" "$torch_pin"
fi
# torch==X matches the CPU index's X+cpu (a local version label), so pip
# keeps it and installs the rest.
"${pip[@]}" -r "$reqs"
"$dest/bin/python" -c "import tensorflow as tf, keras, torch, numpy
print('peers/setup.sh: tensorflow', tf.__version__, 'keras', keras.__version__, 'torch', torch.__version__, 'numpy', numpy.__version__)" >&2
echo "$want" > "$stamp"
echo "$dest/bin/python"
