#!/usr/bin/python3
"""Spec v1 (connected components) vs spec v2 (correlation clustering) on a run file's last snapshot,
with the oracle's reference.py: on each layer's stored correlation matrix (every sample of the epoch)
and on its reservoir rows.

    /usr/bin/python3 bench/analysis/demo_spec_v1_v2.py outputs/demo/run.h5
"""
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "oracle"))
import reference as ref  # noqa: E402


def describe(result):
    groups = result["groups"]
    if not groups:
        return "0 groups"
    sizes = [g["group_size"] for g in groups]
    cohesion = [g["cohesion_score"] for g in groups]
    return f"{len(groups)} groups, sizes {min(sizes)}-{max(sizes)}, cohesion {min(cohesion):.3f}-{max(cohesion):.3f}"


def main(path):
    f = h5py.File(path, "r")
    rows = f["/layer_rows"][...]
    text = f["/data/text"]
    for r in rows[rows["snapshot"] == rows["snapshot"].max()]:
        n = int(r["n_neurons"])
        name = bytes(text[int(r["name_offset"]):int(r["name_offset"]) + int(r["name_len"])]).decode()
        if int(r["corr_count"]) != n * n or int(r["reservoir_count"]) == 0:
            print(f"{name}: no stored correlation matrix or reservoir")
            continue
        C = f["/data/corr"][int(r["corr_offset"]):int(r["corr_offset"]) + n * n].reshape(n, n).astype(np.float64)
        X = f["/data/reservoir"][int(r["reservoir_offset"]):int(r["reservoir_offset"]) + int(r["reservoir_count"])]
        X = X.reshape(-1, n)
        for label, given in (("correlation (all samples)", dict(C=C, dead=np.zeros(n, bool))), ("reservoir rows", {})):
            v1, _ = ref.threshold_components(X, 0.6, 3, **given)
            v2, _ = ref.correlation_clustering(X, 0.6, 3, **given)
            print(f"{name} ({n} neurons), {label}: v1 components {describe(v1)} | v2 {describe(v2)}")


if __name__ == "__main__":
    main(sys.argv[1])
