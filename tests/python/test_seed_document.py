"""Every ```python block of the original tool's manual (tests/python/data/, a verbatim copy of
shared/seed/pytorch_neuron_group_visualization.md), extracted from the markdown at test time and run in
order in one namespace, with only the import paths changed. The document assumes names it never defines
(YourPyTorchModel, your_dataset, `visualizer` as a PyTorchNeuronGroupVisualizer, groups_dict, ...):
SETUP binds them before the block that first uses them; the blocks themselves are not edited."""
import json
import os
import re
from dataclasses import dataclass
from typing import List, Optional

import pandas as pd
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import TensorDataset

import neuronmap
from seed_models import YourPyTorchModel

SEED = os.path.join(os.path.dirname(__file__), "data", "pytorch_neuron_group_visualization.md")
IMPORTS = {"src.visualization.pytorch_neuron_group_visualizer": "neuronmap",
           "scripts.standalone_pytorch_demo": "neuronmap.standalone"}


def blocks():
    text = open(SEED, encoding="utf-8").read()
    out = []
    for code in re.findall(r"```python\n(.*?)```", text, re.S):
        for old, new in IMPORTS.items():
            code = code.replace(old, new)
        out.append(code)
    return out


# Names the document uses without defining them, bound before the block (by its first line) that needs them.
SETUP = {
    "groups = visualizer.identify_neuron_groups_pytorch(":
        "visualizer = neuronmap.PyTorchNeuronGroupVisualizer(output_dir='outputs', device='auto')\n"
        "activation_tensor, layer_name = activations['fc1'], 'fc1'\n",
    "heatmap_path = visualizer.visualize_pytorch_groups(":
        "activations_dict = activations\n"
        "groups_dict = {n: visualizer.identify_neuron_groups_pytorch(t, n, correlation_threshold=0.3,"
        " min_group_size=2) for n, t in activations.items()}\n"
        "metadata = pd.DataFrame({'category': ['mathematical', 'linguistic', 'logical', 'memory'] * 20})\n"
        "learning_events = visualizer.analyze_pytorch_learning_patterns(activations_dict, groups_dict, metadata)\n",
    "for epoch in range(num_epochs):": "num_epochs, val_dataloader = 11, dataloader\n",
    "models = {'model_a': model_a": "model_a, model_b = YourPyTorchModel(), YourPyTorchModel()\n",
}


def test_every_python_block_of_the_seed_document(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the document writes to relative folders (outputs/..., demo_outputs/...)
    code = blocks()
    assert len(code) == 14, "the seed document changed: review SETUP"
    torch.manual_seed(0)
    ns = {"__name__": "seed_document", "torch": torch, "nn": nn, "F": F, "dataclass": dataclass, "List": List,
          "Optional": Optional, "YourPyTorchModel": YourPyTorchModel, "neuronmap": neuronmap, "pd": pd,
          "your_dataset": TensorDataset(torch.randn(80, 1, 4, 4), torch.randint(0, 4, (80,)))}
    used = set()
    for i, block in enumerate(code):
        for key, setup in SETUP.items():
            if key.split("(")[0] in block and key not in used:
                used.add(key)
                exec(setup, ns)
        try:
            exec(compile(block, f"seed block {i}", "exec"), ns)
        except Exception as e:  # name the block in the failure
            raise AssertionError(f"seed block {i} failed: {e!r}\n{block}") from e
    assert used == set(SETUP)
    # Results of the blocks, as the document describes them.
    results = ns["results"]
    assert results["summary"]["analysis_complete"] is True
    assert os.path.isfile(ns["heatmap_path"]) and ns["heatmap_path"].endswith("pytorch_all_layers_heatmap.png")
    assert ns["scatter_path"].endswith("pytorch_groups_scatter_fc1.png") and os.path.isfile(ns["scatter_path"])
    assert ns["dashboard_path"].endswith("pytorch_interactive_dashboard.html")
    assert [p.name for p in ns["plots"]][0] == "pytorch_all_layers_heatmap.png"
    assert all(isinstance(g, neuronmap.PyTorchNeuronGroup) for g in ns["groups"])  # the k-means block
    for name in ("model_a", "model_b"):
        assert os.path.isfile(os.path.join("outputs", name, "pytorch_neuron_group_analysis_report.json"))


def test_report_has_the_documented_structure(tmp_path):
    data = torch.utils.data.DataLoader(TensorDataset(torch.randn(80, 1, 4, 4)), batch_size=32)
    meta = pd.DataFrame({"category": ["mathematical", "linguistic", "logical", "memory"] * 20})
    r = neuronmap.create_pytorch_neuron_group_analysis(YourPyTorchModel(), data, ["conv1", "fc1", "fc2"], meta,
                                                       str(tmp_path), "cpu", None, 1, {"model_type": "Yours"})
    report = json.load(open(r["report"]))
    assert set(report["pytorch_analysis"]) >= {"device", "torch_version", "total_layers", "analysis_timestamp"}
    assert report["layer_analysis"]["fc1"]["activation_shape"] == [80, 16]
    for g in report["layer_analysis"]["fc1"]["groups_detail"]:
        assert set(g) >= {"group_id", "size", "cohesion", "mean_activation"}
    assert set(report["learning_patterns"]) >= {"total_events", "skill_distribution", "average_strength"}
    assert report["model_info"] == {"model_type": "Yours"}
    assert "MODEL INFORMATION" in open(r["text_report"]).read()
