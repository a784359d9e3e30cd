#!/usr/bin/env bash
# Training-step cost of NeuronMap on TorchScript models: plain vs attached (captured / uncaptured
# epoch) vs after the session ended, interleaved repetitions in one run; prints medians and ratios.
# Usage: bench/torchscript/run.sh [build-dir] [repetitions]
set -euo pipefail
build=${1:-build}
reps=${2:-10}
out=$(mktemp --suffix=.json)
"$build/bin/bench_torchscript_step" --benchmark_repetitions="$reps" --benchmark_enable_random_interleaving=true \
  --benchmark_min_time=0.5 --benchmark_report_aggregates_only=true --benchmark_format=json >"$out"
/usr/bin/python3 - "$out" <<'PY'
import json, sys
rows = [b for b in json.load(open(sys.argv[1]))["benchmarks"] if b.get("aggregate_name") == "median"]
med = {b["run_name"]: b["real_time"] for b in rows}
print(f"{'benchmark':<20}{'plain ms':>10}{'captured ms':>13}{'uncaptured ms':>15}{'detached ms':>13}"
      f"{'captured/plain':>16}{'uncaptured/plain':>18}{'detached/plain':>16}")
for model in ("BM_ScriptMlpStep", "BM_ScriptCnnStep"):
    p, c, u, d = (med[f"{model}/{m}/real_time"] for m in (0, 1, 2, 3))
    print(f"{model:<20}{p:>10.2f}{c:>13.2f}{u:>15.2f}{d:>13.2f}{c/p:>16.3f}{u/p:>18.3f}{d/p:>16.3f}")
PY
