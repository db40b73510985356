#!/usr/bin/env bash
# Installs the built library into a temporary prefix, then configures, builds
# and runs a tiny consumer project that does find_package(asyncmq).
set -euo pipefail
build_dir=$1 consumer=$2 san=${3:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build_dir" --prefix "$tmp/prefix" >/dev/null
cmake -S "$consumer" -B "$tmp/build" -G Ninja -DCMAKE_PREFIX_PATH="$tmp/prefix" \
  -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS="$san" -DCMAKE_EXE_LINKER_FLAGS="$san" >/dev/null
cmake --build "$tmp/build" >/dev/null
out=$("$tmp/build/consumer" "sqlite:///$tmp/consumer.db")
echo "$out"
[[ "$out" == "consumer: completed 3 jobs" ]]
test -x "$tmp/prefix/bin/asyncmq"
