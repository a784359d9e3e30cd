#!/usr/bin/env bash
# The worker's streaming update vs a plain single-thread syrk of the same shape, interleaved in one
# run; prints each rate and update/syrk (the issue's bar: >= 0.80).
# Usage: bench/worker/run.sh [build-dir] [repetitions]
set -euo pipefail
build=${1:-build}
reps=${2:-5}
out=$(mktemp --suffix=.json)
"$build/bin/bench_worker_rate" --benchmark_repetitions="$reps" --benchmark_enable_random_interleaving=true \
  --benchmark_min_time=0.3 --benchmark_report_aggregates_only=true --benchmark_format=json >"$out"
/usr/bin/python3 - "$out" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
rows = {b["run_name"]: b for b in doc["benchmarks"] if b.get("aggregate_name") == "median"}
label = next((b.get("label", "") for b in doc["benchmarks"] if b.get("label")), "")
print(f"syrk: {label}")
print(f"{'shape':<12}{'products':<10}{'syrk GF/s':>11}{'moments GF/s':>14}{'worker GF/s':>13}{'moments/syrk':>14}{'worker/syrk':>13}")
for shape in ("512/128", "4096/512"):
    for scalar, tag in (("double", "f64"), ("float", "f32")):
        s = rows[f"syrk<{scalar}>/{shape}/real_time"]["GFLOPS"]
        m = rows[f"moments/{tag}/{shape}/real_time"]["GFLOPS"]
        a = rows[f"accumulator/{tag}/{shape}/real_time"]["GFLOPS"]
        print(f"{shape:<12}{tag:<10}{s:>11.1f}{m:>14.1f}{a:>13.1f}{m/s:>14.2f}{a/s:>13.2f}")
PY
