#!/usr/bin/env bash
# The wide-row case (bench_wide_row.cpp): plain vs captured vs captured with overhead_budget(0.05),
# interleaved repetitions in one run; prints medians and ratios to plain.
# Usage: bench/training/run_wide_row.sh [build-dir] [repetitions]
set -euo pipefail
build=${1:-build}
reps=${2:-3}
out=$(mktemp --suffix=.json)
"$build/bin/bench_wide_row" --benchmark_repetitions="$reps" --benchmark_enable_random_interleaving=true \
  --benchmark_min_time=2 --benchmark_report_aggregates_only=true --benchmark_format=json >"$out"
/usr/bin/python3 - "$out" <<'PY'
import json, sys
rows = [b for b in json.load(open(sys.argv[1]))["benchmarks"] if b.get("aggregate_name") == "median"]
med = {b["run_name"]: b for b in rows}
p = med["BM_WideRowStep/0/real_time"]["real_time"]
for m, name in ((0, "plain"), (1, "captured (default Options)"), (2, "captured, overhead_budget(0.05)")):
    b = med[f"BM_WideRowStep/{m}/real_time"]
    extra = f", budget_skipped {b.get('budget_skipped', 0):.0f}" if m == 2 else ""
    print(f"{name:<34}{b['real_time']:>10.1f} ms   / plain {b['real_time'] / p:.3f}{extra}")
PY
