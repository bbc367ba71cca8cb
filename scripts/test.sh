#!/usr/bin/env bash
# The test suite with the CUDA kernels built in: installs the pinned nvcc into
# .cuda/ (idempotent, fast when already there), then runs every test with a
# missing nvcc made fatal, so a kernel that does not compile fails the run.
# Extra arguments go to `cargo test` (e.g. `bash scripts/test.sh --test kernels_vs_cpu`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-cuda.sh >/dev/null
CHARLSTM_REQUIRE_KERNELS=1 cargo test "$@"
