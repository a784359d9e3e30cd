#!/usr/bin/env python3
"""The original's simulation demo on NeuronMap, without torch: NumPy data (three layers of simulated
activations with planted co-activating groups and four skill families), grouped by the engine
(neuronmap.group_activations), per-sample events by the original's rule computed in C++
(neuronmap.sample_events), pictures by the C++ renderer (neuronmap.draw). `import neuronmap` loads
no torch; the script checks that at the end.
Usage: pytorch_simulation_demo.py [OUTPUT_DIR]   (default demo_outputs/pytorch_simulation)"""
import collections
import json
import os
import sys

import numpy as np
import pandas as pd

import neuronmap

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
    groups, events = {}, []
    for name, a in activations.items():
        r = neuronmap.group_activations(a, method="correlation", threshold=0.6, min_group_size=3)
        groups[name] = [[int(i) for i in m] for m in r["groups"]]
        print(f"{name}: {a.shape}, {len(groups[name])} groups: " + ", ".join(str(g) for g in groups[name]))
        found = neuronmap.sample_events(a, groups[name])
        for s, activated, strength in zip(found["samples"], found["activated"], found["strength"]):
            events.append({"layer": name, "sample": int(s), "activated_groups": activated.tolist(),
                           "learning_strength": float(strength), "skill_type": metadata["category"][int(s)]})
    by_skill = collections.Counter(e["skill_type"] for e in events)
    print(f"learning events: {len(events)}", dict(sorted(by_skill.items())))
    for f in neuronmap.draw(activations, groups, out):
        if f.endswith(".png"):
            print(f"picture: {os.path.basename(f)}")
    path = os.path.join(out, "pytorch_simulation_report.json")
    with open(path, "w") as f:
        json.dump({"layers": groups, "total_events": len(events), "skill_distribution": dict(by_skill)}, f, indent=2)
    print(f"report: {path}")
    print(f"torch loaded: {'torch' in sys.modules}")
    return groups, events


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo_outputs/pytorch_simulation")
