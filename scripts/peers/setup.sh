#!/usr/bin/env bash
# Installs the peer frameworks of requirements.txt here (Keras 3 on
# TensorFlow-CPU, PyTorch) into .venv-peers/ at the repository root
# (git-ignored), or into the directory given: what scripts/peers/*.py and
# tests/fixtures/make_keras_fixture.py run on.
#
#   bash scripts/peers/setup.sh [VENV]
#
# The venv starts as scripts/setup-interop.sh makes one (torch from
# PyTorch's CPU index, PyPI's CUDA build where that index cannot be
# reached; numpy, Keras), then TensorFlow is added. A VENV that
# setup-interop.sh already made is kept: CI gives it the interop venv, so
# only TensorFlow is installed (~30 s). About a minute and 2.5 GB from
# nothing, mostly TensorFlow (7 GB with PyPI's torch).
#
# Idempotent: a second run checks the stamp and exits. Prints the Python's
# path on its last line.
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
interop_torch="$(sed -n 's/^torch_pin="\(.*\)"$/\1/p' "$root/scripts/setup-interop.sh")"
peers_torch="$(grep '^torch==' "$reqs")"
if [ "$interop_torch" != "$peers_torch" ]; then
  echo "peers/setup.sh: requirements.txt pins $peers_torch, scripts/setup-interop.sh $interop_torch; make them one" >&2
  exit 1
fi
python="$(bash "$root/scripts/setup-interop.sh" "$dest" | tail -n 1)"
# requirements.txt's torch==X is the interop venv's (X+cpu from the CPU
# index matches it: a local version label), so pip keeps it.
"$python" -m pip install --quiet --disable-pip-version-check --no-cache-dir -r "$reqs"
"$python" -c "import tensorflow as tf, keras, torch, numpy
print('peers/setup.sh: tensorflow', tf.__version__, 'keras', keras.__version__, 'torch', torch.__version__, 'numpy', numpy.__version__)" >&2
echo "$want" > "$stamp"
echo "$python"
