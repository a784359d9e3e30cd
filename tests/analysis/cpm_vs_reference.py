#!/usr/bin/python3
"""`neuronmap groups --method correlation` against the oracle's reference.py (spec v2) on matrices this
test generates: AR(1) chains, bridged groups and planted groups of several noise levels, each with its
own seed for the data and for the grouping's random stream.

Rule (oracle README, "Comparison rules"): identical groups; where a gain within rounding of the 1e-12
margin flips a move, Q >= reference Q - 1e-9 |Q|, ARI >= 0.99 and the invariant instead.

Usage: cpm_vs_reference.py NEURONMAP_CLI ORACLE_DIR [--cases K]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np


def chain(rng, samples, neurons):
    x = np.empty((samples, neurons))
    previous = rng.standard_normal(samples)
    for i in range(neurons):
        previous = 0.7 * previous + rng.standard_normal(samples)
        x[:, i] = previous
    return x


def planted(rng, samples, sizes, background, noise, bridge=False):
    columns = []
    factors = [rng.standard_normal(samples) for _ in sizes]
    for f, size in zip(factors, sizes):
        for _ in range(size):
            columns.append(rng.uniform(0.8, 1.2) * f + noise * rng.standard_normal(samples) + 3 * rng.standard_normal())
    if bridge:  # one neuron driven by the first two factors alike
        columns.append(factors[0] + factors[1] + noise * rng.standard_normal(samples))
    for _ in range(background):
        columns.append(rng.standard_normal(samples))
    columns.append(np.zeros(samples))       # dead, exactly 0
    columns.append(np.full(samples, 0.3))   # dead, inexact mean
    x = np.stack(columns, axis=1)
    return x[:, rng.permutation(x.shape[1])]


def make_case(k):
    rng = np.random.default_rng(1000 + k)
    kind = k % 4
    if kind == 0:
        x = chain(rng, 2000, 120)
    elif kind == 1:
        x = planted(rng, 1500, [8, 8], 20, 0.6, bridge=True)
    elif kind == 2:
        x = planted(rng, 1000, list(rng.integers(3, 25, size=6)), 60, float(rng.uniform(0.4, 1.0)))
    else:
        x = planted(rng, 800, list(rng.integers(5, 40, size=10)), 150, float(rng.uniform(0.6, 1.1)))
    threshold = [0.6, 0.5, 0.6, 0.45][kind]
    seed = int(rng.integers(0, 2**63))
    return x.astype(np.float32) if kind == 3 else x, threshold, seed


def ari(a, b):
    from sklearn.metrics import adjusted_rand_score
    return adjusted_rand_score(a, b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cli")
    ap.add_argument("oracle")
    ap.add_argument("--cases", type=int, default=12)
    a = ap.parse_args()
    sys.path.insert(0, a.oracle)
    import reference as ref

    failures, tie_breaks = 0, 0
    with tempfile.TemporaryDirectory(prefix="neuronmap_cpm_") as tmp:
        for k in range(a.cases):
            x, threshold, seed = make_case(k)
            path = os.path.join(tmp, f"case{k}.h5")
            with h5py.File(path, "w") as f:
                f["X"] = x
            out = subprocess.run([a.cli, "groups", path, "--dataset", "X", "--method", "correlation", "--threshold",
                                  repr(threshold), "--seed", str(seed), "--json"], capture_output=True, text=True)
            if out.returncode != 0:
                print(f"case {k}: exit {out.returncode}: {out.stderr.strip()}")
                failures += 1
                continue
            ours = json.loads(out.stdout)
            theirs, _ = ref.correlation_clustering(x, correlation_threshold=threshold, random_state=seed)
            our_groups = [g["neuron_indices"] for g in ours["groups"]]
            ref_groups = [g["neuron_indices"] for g in theirs["groups"]]
            biggest = max((len(g) for g in our_groups), default=0)
            line = (f"case {k}: N={x.shape[1]} S={x.shape[0]} t={threshold} seed={seed}: {len(our_groups)} groups "
                    f"(largest {biggest}), Q ours {ours['diagnostics']['quality']:.9g} ref "
                    f"{theirs['diagnostics']['quality']:.9g}")
            low = min((g["min_member_correlation"] for g in ours["groups"]), default=1.0)
            if low < threshold - 1e-12:
                print(line, f"-> FAIL: min member correlation {low} < {threshold}")
                failures += 1
            elif our_groups == ref_groups:
                print(line, "-> identical")
            else:
                q, q_ref = ours["diagnostics"]["quality"], theirs["diagnostics"]["quality"]
                score = ari(ours["labels"], theirs["labels"])
                if q >= q_ref - 1e-9 * abs(q_ref) and score >= 0.99:
                    print(line, f"-> near-tie accepted (ARI {score:.4f})")
                    tie_breaks += 1
                else:
                    print(line, f"-> FAIL: groups differ, ARI {score:.4f}")
                    failures += 1
    print(f"{a.cases - failures}/{a.cases} cases agree ({tie_breaks} by the near-tie rule)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
