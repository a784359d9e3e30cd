#!/usr/bin/env bash
# Training-step cost of NeuronMap: plain vs attached variants, their repetitions randomly interleaved
# in one run. Prints each variant's median step time, its coefficient of variation over the
# repetitions, and the ratio of medians to plain with a bootstrap 90% interval (resampling both
# variants' repetitions): on a VM whose speed drifts by 5-10% between repetitions, the interval says
# which bars a run can show and which it cannot.
# Every repetition first runs 0.3 s unmeasured: a fresh network, optimizer and session fault their
# memory in and the overhead budget learns its stride there, as in the first steps of an epoch.
# Usage: bench/training/run.sh [build-dir] [repetitions] [Google Benchmark flags, e.g. --benchmark_filter=Mlp]
set -euo pipefail
build=${1:-build}
reps=${2:-10}
out=$(mktemp --suffix=.json)
"$build/bin/bench_training_step" --benchmark_repetitions="$reps" --benchmark_enable_random_interleaving=true \
  --benchmark_min_time=0.5 --benchmark_min_warmup_time=0.3 --benchmark_format=json "${@:3}" >"$out"
/usr/bin/python3 - "$out" <<'PY'
import json, random, statistics, sys
runs = [b for b in json.load(open(sys.argv[1]))["benchmarks"] if b.get("run_type") == "iteration"]
times = {}
for b in runs:
    times.setdefault(b["run_name"], []).append(b["real_time"])
names = {1: "captured", 2: "uncaptured (probes off)", 3: "captured, float32 products",
         4: "captured, overhead_budget 0.05", 5: "captured, reduce_on_device (ATen on the training thread)",
         6: "captured, callbacks only (max_batches 1: nothing copied)",
         7: "plain, the worker's float64 products on another thread (not attached)"}
rng = random.Random(1)

def interval(a, b, n=2000):
    ratios = sorted(statistics.median(rng.choices(a, k=len(a))) / statistics.median(rng.choices(b, k=len(b)))
                    for _ in range(n))
    return ratios[int(0.05 * n)], ratios[int(0.95 * n) - 1]

def cv(t):
    return 100 * statistics.pstdev(t) / statistics.mean(t) if len(t) > 1 else 0.0

for model in ("BM_MlpStep", "BM_CnnStep", "BM_MnistStep"):
    key = lambda m: f"{model}/{m}/real_time"
    if key(0) not in times:
        continue
    plain = times[key(0)]
    p = statistics.median(plain)
    print(f"{model}: plain {p:.2f} ms (cv {cv(plain):.0f}%, {len(plain)} repetitions)")
    for m, name in names.items():
        if key(m) in times:
            t = times[key(m)]
            lo, hi = interval(t, plain)
            print(f"  {name}: {statistics.median(t):.2f} ms (cv {cv(t):.0f}%), / plain {statistics.median(t) / p:.3f}"
                  f" [90%: {lo:.3f}-{hi:.3f}]")
PY
