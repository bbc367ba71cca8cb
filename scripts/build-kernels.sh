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
# made from, which build.rs checks before embedding them.
#
# nvcc's output is not always the same bytes. cicc's register numbering in
# lstm_persistent_h128_seq_bwd_f32 depends on where its memory lands, so on
# address-space randomisation and on the lengths of the paths it is given
# (measured 2026-12-06 in a clone at /tmp/x, nvcc given absolute paths as
# build.rs gave them then: the other numbering in 2 of 24 compiles by
# hand, in 3 of 8 and then 3 of 4 builds through build.rs; 12 of 12 under
# `setarch -R`). The two numberings are the same code. build.rs therefore
# runs nvcc on a flat copy of the sources under fixed relative names, with
# randomisation off where util-linux's setarch is there: the same bytes in
# every checkout tried since (4 of 4 builds in two checkouts, every kernel
# and test kernel equal to the committed files). Where setarch is missing
# the output may still vary, so --check builds again (build.rs rerun), up to
# 8 builds in all, before calling a file stale, and passes when one build
# reproduces every committed file.
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
fresh="$(mktemp -d)"
trap 'rm -rf "$fresh"' EXIT

# build: runs build.rs (cargo build with the test kernels) and copies what it
# made into $fresh, with a SOURCES file of the sources' hashes.
build() {
  # The build script's OUT_DIR, from cargo's own report of running it.
  local out_dir
  out_dir="$(cargo build --lib --features test-kernels --message-format=json 2>/dev/null \
    | grep '"reason":"build-script-executed"' | grep '/charlstm-cuda' \
    | sed -n 's/.*"out_dir":"\([^"]*\)".*/\1/p' | tail -n 1)"
  [ -d "$out_dir" ] || { echo "build-kernels: no OUT_DIR from cargo build" >&2; exit 1; }
  rm -rf "$fresh/kernels" "$fresh/tests"
  mkdir -p "$fresh/kernels/prebuilt" "$fresh/tests/kernels/prebuilt"
  local dir src stem ext
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
}

# stale_files: one line per committed file that differs from $fresh's, is
# missing there, or is left over.
stale_files() {
  local dir f name
  for dir in kernels/prebuilt tests/kernels/prebuilt; do
    for f in "$fresh/$dir"/*; do
      name="$dir/$(basename "$f")"
      cmp -s "$f" "$name" || echo "$name (differs from what nvcc makes of the sources)"
    done
    for f in "$dir"/*; do
      [ -e "$fresh/$dir/$(basename "$f")" ] || echo "$f (no source makes it)"
    done
  done
}

build
if [ "$check" = 1 ]; then
  attempts=8
  for attempt in $(seq 1 "$attempts"); do
    stale="$(stale_files)"
    [ -z "$stale" ] && break
    # Only a file nvcc made can vary between builds; a missing or left-over
    # one, or SOURCES, is stale at once.
    if [ "$attempt" = "$attempts" ] || grep -q -v 'differs from what nvcc makes' <<<"$stale" \
      || grep -q '/SOURCES ' <<<"$stale"; then
      break
    fi
    echo "build-kernels: build $attempt of $attempts differs in $(wc -l <<<"$stale") file(s) \
($(sed 's/ .*//' <<<"$stale" | tr '\n' ' ' | sed 's/ $//')); nvcc's output varies between runs \
(above), so build.rs runs again"
    touch build.rs
    build
  done
  if [ -n "$stale" ]; then
    sed 's/^/stale: /' <<<"$stale"
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
