#!/usr/bin/env python3
"""The original's full PyTorch demo on NeuronMap: a small network, synthetic data of four skill
families, a metadata DataFrame and model_info, through create_pytorch_neuron_group_analysis.
Usage: pytorch_demo_neuron_groups.py [OUTPUT_DIR]   (default demo_outputs/pytorch_neuron_groups)"""
import collections
import os
import sys

import pandas as pd
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from neuronmap import create_pytorch_neuron_group_analysis

SKILLS = ["mathematical", "linguistic", "logical", "memory"]


class DemoNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(16, 32), nn.Linear(32, 16), nn.Linear(16, 4)

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def main(out):
    torch.manual_seed(42)
    n_per = 40
    x = torch.randn(4 * n_per, 16) * 0.3
    for k in range(4):  # each skill family drives its own block of four inputs
        x[k * n_per:(k + 1) * n_per, 4 * k:4 * k + 4] += 2.0
    y = torch.arange(4).repeat_interleave(n_per)
    metadata = pd.DataFrame({"category": [SKILLS[int(k)] for k in y],
                             "question": [f"{SKILLS[int(k)]} question {i}" for i, k in enumerate(y)]})
    model = DemoNet()
    model_info = {"model_type": "DemoNet", "parameters": sum(p.numel() for p in model.parameters()),
                  "dataset": "synthetic, four skill families"}
    results = create_pytorch_neuron_group_analysis(
        model, DataLoader(TensorDataset(x, y), batch_size=32), ["fc1", "fc2", "fc3"],
        question_metadata=metadata, output_dir=out, device="auto", model_info=model_info, model_epoch=1,
        correlation_threshold=0.5, min_group_size=2)
    print("summary:")
    for k, v in results["summary"].items():
        print(f"  {k}: {v}")
    print("layers:")
    for name, groups in results["neuron_groups"].items():
        print(f"  {name}: activations {tuple(results['activations'][name].shape)}, {len(groups)} groups")
        for g in groups:
            print(f"    group {g.group_id}: {g.group_size} neurons, cohesion {g.cohesion_score:.3f}")
    print("learning events by skill type:")
    for skill, n in sorted(collections.Counter(e.skill_type for e in results["learning_events"]).items()):
        print(f"  {skill}: {n}")
    print("files:")
    for f in sorted(os.listdir(out)):
        print(f"  {f}")
    return results


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo_outputs/pytorch_neuron_groups")
