#!/usr/bin/env bash
# Training-step cost of probing attention heads (d_model 256, 4 heads, T = 64, batch 16): plain vs
# attached (captured / uncaptured epoch), interleaved repetitions in one run; median step times, ratios.
# Usage: bench/training/run_attention.sh [build-dir] [repetitions]
set -euo pipefail
build=${1:-build}
reps=${2:-10}
out=$(mktemp --suffix=.json)
"$build/bin/bench_attention_step" --benchmark_repetitions="$reps" --benchmark_enable_random_interleaving=true \
  --benchmark_min_time=0.5 --benchmark_report_aggregates_only=true --benchmark_format=json >"$out"
/usr/bin/python3 - "$out" <<'PY'
import json, sys
rows = [b for b in json.load(open(sys.argv[1]))["benchmarks"] if b.get("aggregate_name") == "median"]
med = {b["run_name"]: b["real_time"] for b in rows}
p, c, u = (med[f"BM_AttentionStep/{m}/real_time"] for m in (0, 1, 2))
print(f"{'plain ms':>10}{'captured ms':>13}{'uncaptured ms':>15}{'captured/plain':>16}{'uncaptured/plain':>18}")
print(f"{p:>10.2f}{c:>13.2f}{u:>15.2f}{c/p:>16.3f}{u/p:>18.3f}")
PY
