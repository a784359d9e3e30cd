#!/usr/bin/env bash
# Training-step cost seen by a consumer of the installed SDK: installs the SDK from a build into a
# scratch prefix, builds bench/consumer against it with find_package(NeuronMap), and runs it once
# (plain and attached MLP stepped alternately in one process; prints medians and attached/plain).
# Usage: bench/consumer/run.sh BUILD_DIR [blocks] [alternating_mlp flags, e.g. --steps 50 --openblas-threads 0]
set -euo pipefail
if [[ $# -lt 1 ]]; then
  echo "usage: bench/consumer/run.sh BUILD_DIR [blocks] [alternating_mlp flags]" >&2
  exit 2
fi
build=$(cd "$1" && pwd)
blocks=${2:-40}
source_dir=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
generator=Ninja
command -v ninja >/dev/null || generator="Unix Makefiles"
cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$source_dir" -B "$work/build" -G "$generator" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/build" -j 2 >/dev/null
"$work/build/alternating_mlp" --blocks "$blocks" --file "$work/run.h5" "${@:3}"
