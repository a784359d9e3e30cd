#!/usr/bin/env bash
# Training-step cost of NeuronMap: plain vs attached (captured / uncaptured epoch), interleaved
# repetitions in one run; prints median step times and the ratios to plain.
# Usage: bench/training/run.sh [build-dir] [repetitions] [Google Benchmark flags, e.g. --benchmark_filter=Mlp]
set -euo pipefail
build=${1:-build}
reps=${2:-10}
out=$(mktemp --suffix=.json)
"$build/bin/bench_training_step" --benchmark_repetitions="$reps" --benchmark_enable_random_interleaving=true \
  --benchmark_min_time=0.5 --benchmark_report_aggregates_only=true --benchmark_format=json "${@:3}" >"$out"
/usr/bin/python3 - "$out" <<'PY'
import json, sys
rows = [b for b in json.load(open(sys.argv[1]))["benchmarks"] if b.get("aggregate_name") == "median"]
med = {b["run_name"]: b["real_time"] for b in rows}
print(f"{'benchmark':<22}{'plain ms':>10}{'captured ms':>13}{'uncaptured ms':>15}{'captured/plain':>16}{'uncaptured/plain':>18}")
for model in ("BM_MlpStep", "BM_CnnStep", "BM_MnistStep"):
    if f"{model}/0/real_time" not in med:
        continue
    p, c, u = (med[f"{model}/{m}/real_time"] for m in (0, 1, 2))
    print(f"{model:<22}{p:>10.2f}{c:>13.2f}{u:>15.2f}{c/p:>16.3f}{u/p:>18.3f}")
    for m, name in ((3, "captured, float32 products"), (4, "captured, overhead_budget 0.05"),
                    (5, "captured, reduce_on_device (ATen on the training thread)"),
                    (6, "captured, callbacks only (max_batches 1: nothing copied)"),
                    (7, "plain, the worker's float64 products on another thread (not attached)")):
        if f"{model}/{m}/real_time" in med:
            print(f"{'':<22}{name}: {med[f'{model}/{m}/real_time']:.2f} ms, / plain {med[f'{model}/{m}/real_time'] / p:.3f}")
PY
