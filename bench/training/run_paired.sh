#!/usr/bin/env bash
# Plain vs each attached variant in pairs of blocks (bench_paired_step), with the training on one core
# (OPENBLAS_NUM_THREADS=1 unless set) and the plain-vs-plain control first for each model.
# Usage: bench/training/run_paired.sh [build-dir] [pairs]
set -euo pipefail
build=${1:-build}
pairs=${2:-40}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
run() { "$build/bin/bench_paired_step" --pairs "$pairs" "$@"; }
for v in plain captured float32 uncaptured callbacks budget products; do run --model mlp --variant "$v" --steps 25; done
for v in plain captured uncaptured callbacks; do run --model cnn --variant "$v" --steps 8; done
for v in plain captured uncaptured; do run --model mnist --variant "$v" --steps 4; done
for v in plain captured uncaptured; do run --model script-mlp --variant "$v" --steps 25; done
for v in plain captured uncaptured; do run --model script-cnn --variant "$v" --steps 8; done
