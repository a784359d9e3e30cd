#!/usr/bin/env python3
"""The original's standalone demo on NeuronMap (neuronmap.standalone.StandalonePyTorchVisualizer).
Usage: standalone_pytorch_demo.py [OUTPUT_DIR]   (default demo_outputs/standalone_pytorch)"""
import sys

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from neuronmap.standalone import StandalonePyTorchVisualizer


class TestNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(8, 16), nn.Linear(16, 8), nn.Linear(8, 4)

    def forward(self, x):
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def main(out):
    torch.manual_seed(0)
    n = 80
    x = torch.randn(n, 8)
    x[: n // 4, :4] += 1.0
    x[n // 4: n // 2, 4:] += 1.0
    x[n // 2: 3 * n // 4, :2] += 1.5
    x[3 * n // 4:, 6:] += 1.5
    loader = DataLoader(TensorDataset(x), batch_size=16, shuffle=False)
    visualizer = StandalonePyTorchVisualizer(output_dir=out)
    activations = visualizer.extract_activations(TestNet(), loader, ["fc1", "fc2", "fc3"], max_batches=5)
    groups = {name: visualizer.identify_groups(t, name, threshold=0.3, min_size=2) for name, t in activations.items()}
    for name, gs in groups.items():
        print(f"{name}: {len(gs)} groups " + ", ".join(f"G{g.group_id}={g.group_size}" for g in gs))
    metadata = pd.DataFrame({"category": ["pattern_a", "pattern_b", "pattern_c", "pattern_d"] * (n // 4)})
    metadata["category"] = sorted(metadata["category"])
    events = visualizer.analyze_learning_patterns(activations, groups, metadata)
    print(f"learning events: {len(events)}")
    plots = visualizer.create_visualizations(activations, groups)
    for p in plots:
        print(f"picture: {p.name}")
    report = visualizer.generate_report(activations, groups, events, {"model_type": "TestNet"})
    print(f"report: {report}")
    return plots, report


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo_outputs/standalone_pytorch")
