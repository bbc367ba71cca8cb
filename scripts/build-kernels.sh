#!/usr/bin/env bash
# Rebuilds the prebuilt kernels committed in kernels/prebuilt/ (and
# tests/kernels/prebuilt/) with the pinned CUDA 13.0 nvcc, so a build
# without nvcc embeds exactly what a build with it compiles:
#
#   bash scripts/build-kernels.sh          # rewrite the committed files
#   bash scripts/build-kernels.sh --check  # compare only; exit 1 naming
#                                          # every stale or missing file
#
# The files come out of build.rs itself (one set of nvcc/ptxas/fatbinary
# flags), built with the test kernels on: per kernels/NAME.cu its PTX
# (compute_80, what the simulator runs) and fatbin (sm_90 SASS + that PTX,
# what a GPU loads); SOURCES records the SHA-256 of every source they were
# made from, which build.rs checks before embedding them. nvcc's output is
# byte-stable: the same sources and nvcc give the same bytes, whatever the
# checkout's path.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
check=0
case "${1:-}" in
  --check) check=1 ;;
  "") ;;
  *) echo "usage: bash scripts/build-kernels.sh [--check]" >&2; exit 2 ;;
esac

NVCC="$(bash scripts/setup-cuda.sh | tail -n 1)"
export NVCC CHARLSTM_REQUIRE_KERNELS=1
# The build script's OUT_DIR, from cargo's own report of running it.
out_dir="$(cargo build --lib --features test-kernels --message-format=json 2>/dev/null \
  | grep '"reason":"build-script-executed"' | grep '/charlstm-cuda' \
  | sed -n 's/.*"out_dir":"\([^"]*\)".*/\1/p' | tail -n 1)"
[ -d "$out_dir" ] || { echo "build-kernels: no OUT_DIR from cargo build" >&2; exit 1; }

fresh="$(mktemp -d)"
trap 'rm -rf "$fresh"' EXIT
mkdir -p "$fresh/kernels/prebuilt" "$fresh/tests/kernels/prebuilt"
for dir in kernels tests/kernels; do
  for src in "$dir"/*.cu; do
    stem="$(basename "$src" .cu)"
    for ext in ptx fatbin; do
      cp "$out_dir/$stem.$ext" "$fresh/$dir/prebuilt/$stem.$ext"
    done
  done
done
ls kernels/*.cu kernels/*.cuh tests/kernels/*.cu | LC_ALL=C sort | xargs sha256sum \
  > "$fresh/kernels/prebuilt/SOURCES"

if [ "$check" = 1 ]; then
  stale=0
  for dir in kernels/prebuilt tests/kernels/prebuilt; do
    # Both directions: a file that differs or is missing, and one left over.
    for f in "$fresh/$dir"/*; do
      name="$dir/$(basename "$f")"
      cmp -s "$f" "$name" || { echo "stale: $name (differs from what nvcc makes of the sources)"; stale=1; }
    done
    for f in "$dir"/*; do
      [ -e "$fresh/$dir/$(basename "$f")" ] || { echo "stale: $f (no source makes it)"; stale=1; }
    done
  done
  if [ "$stale" = 1 ]; then
    echo "build-kernels: the committed kernels are stale; run \`bash scripts/build-kernels.sh\` and commit them" >&2
    exit 1
  fi
  echo "build-kernels: kernels/prebuilt and tests/kernels/prebuilt match the sources"
else
  for dir in kernels/prebuilt tests/kernels/prebuilt; do
    rm -rf "$dir"
    cp -r "$fresh/$dir" "$dir"
  done
  echo "build-kernels: wrote $(ls kernels/prebuilt tests/kernels/prebuilt | grep -c '\.') files"
fi
