#!/usr/bin/env python3
"""The original's simulation demo on NeuronMap: NumPy data (three layers of simulated activations
with planted co-activating groups and four skill families), grouped by the engine through
neuronmap.group_activations, per-sample events by the original's rule. The script uses no torch API
(`import neuronmap` still loads torch: the package shares LibTorch with the engine).
Usage: pytorch_simulation_demo.py [OUTPUT_DIR]   (default demo_outputs/pytorch_simulation)"""
import collections
import json
import os
import sys

import numpy as np
import pandas as pd

import neuronmap
from neuronmap.compat import PyTorchNeuronGroup, learning_events

SKILLS = ["mathematical", "linguistic", "logical", "memory"]


def simulate(rng, n_samples, n_neurons, n_blocks):
    """n_blocks blocks of 4 neurons following one hidden signal each, the rest noise."""
    x = rng.normal(size=(n_samples, n_neurons)) * 0.5
    for b in range(n_blocks):
        x[:, 4 * b:4 * b + 4] += rng.normal(size=(n_samples, 1)) * 2.0
    return x


def main(out):
    rng = np.random.default_rng(7)
    os.makedirs(out, exist_ok=True)
    activations = {"conv1": simulate(rng, 120, 16, 2), "fc1": simulate(rng, 120, 32, 4), "fc2": simulate(rng, 120, 8, 1)}
    metadata = pd.DataFrame({"category": [SKILLS[i % 4] for i in range(120)]})
    groups = {}
    for name, a in activations.items():
        r = neuronmap.group_activations(a, method="correlation", threshold=0.6, min_group_size=3)
        groups[name] = [PyTorchNeuronGroup(gid, [int(i) for i in m], name, None, None, len(m), float(c))
                        for gid, (m, c) in enumerate(zip(r["groups"], r["cohesion"]))]
        print(f"{name}: {a.shape}, {len(groups[name])} groups: " +
              ", ".join(str(g.neuron_indices) for g in groups[name]))
    events = learning_events(activations, groups, metadata)
    by_skill = collections.Counter(e.skill_type for e in events)
    print(f"learning events: {len(events)}", dict(sorted(by_skill.items())))
    path = os.path.join(out, "pytorch_simulation_report.json")
    with open(path, "w") as f:
        json.dump({"layers": {n: [g.neuron_indices for g in gs] for n, gs in groups.items()},
                   "total_events": len(events), "skill_distribution": dict(by_skill)}, f, indent=2)
    print(f"report: {path}")
    return groups, events


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo_outputs/pytorch_simulation")
