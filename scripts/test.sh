#!/usr/bin/env bash
# The whole test suite, kernels included: every build embeds them (compiled
# by nvcc when it is installed, else the prebuilt ones of kernels/prebuilt/),
# so this needs no CUDA toolkit and no network. Kernel developers install
# the pinned nvcc with `bash scripts/setup-cuda.sh`; CI does, and checks the
# prebuilt kernels against it (scripts/build-kernels.sh --check).
# Extra arguments go to `cargo test` (e.g. `bash scripts/test.sh --release`,
# `bash scripts/test.sh --test kernels_vs_cpu`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test "$@"
