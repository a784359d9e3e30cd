"""A script in the original's style reading every key and attribute of the results, and bad input."""
import os

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

import neuronmap
from neuronmap import PyTorchLearningEvent, PyTorchNeuronGroup, create_pytorch_neuron_group_analysis


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def data(n=80):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 8, generator=g)
    x[: n // 2, :4] += 2.0
    return x, torch.randint(0, 4, (n,), generator=g)


def test_every_key_and_attribute(tmp_path):
    x, y = data()
    meta = pd.DataFrame({"question": ["calculate a number", "a word of grammar", "cause and effect",
                                      "recall the fact"] * 20})
    model = Net().train()
    results = create_pytorch_neuron_group_analysis(model, DataLoader(TensorDataset(x, y), batch_size=16),
                                                   ["fc1", "fc2"], question_metadata=meta,
                                                   output_dir=str(tmp_path), model_info={"model_type": "Net"},
                                                   device="cpu", max_batches=10, model_epoch=1,
                                                   correlation_threshold=0.3, min_group_size=2)
    assert model.training  # restored after the eval-mode extraction
    s = results["summary"]
    assert s == {"total_layers": 2, "total_groups": sum(len(v) for v in results["neuron_groups"].values()),
                 "total_learning_events": len(results["learning_events"]), "device_used": "cpu",
                 "analysis_complete": True}
    for name, t in results["activations"].items():
        assert isinstance(t, torch.Tensor) and t.shape[0] == 80
        for g in results["neuron_groups"][name]:
            assert isinstance(g, PyTorchNeuronGroup)
            g.group_id, g.neuron_indices, g.layer_name, g.activation_pattern, g.group_center, g.group_size
            g.cohesion_score, g.learning_phase, g.skill_category, g.device
    assert results["learning_events"], "planted structure: some events expected"
    for e in results["learning_events"]:
        assert isinstance(e, PyTorchLearningEvent)
        assert e.sample_indices == [e.temporal_position] and e.activated_groups and e.model_epoch == 1
        assert e.skill_type in ("mathematical", "linguistic", "logical", "memory")
        assert e.skill_type == neuronmap.infer_skill_type(meta["question"][e.temporal_position])
        assert isinstance(e.learning_strength, float) and e.loss_value is None
    for name, path in results["visualizations"].items():
        assert os.path.isfile(path), name
    assert "multi_layer" in results["visualizations"] and "fc1_scatter" in results["visualizations"]
    # The original's views under its names, ours beside them.
    for key in ("fc1_heatmap", "fc1_network", "pytorch_groups_correlation_fc1", "pytorch_neurons_scatter_fc1",
                "pytorch_all_layers_correlation"):
        assert key in results["visualizations"], sorted(results["visualizations"])
    assert results["dashboard"] is None or results["dashboard"].endswith("pytorch_interactive_dashboard.html")
    assert isinstance(results["report"], str) and results["report"].endswith(".json")
    assert os.path.isfile(results["text_report"]) and os.path.isfile(results["run_file"])


def test_events_match_the_rule():
    x = torch.tensor(np.random.default_rng(0).normal(size=(30, 10)))
    g = [PyTorchNeuronGroup(0, [0, 1, 2], "l", None, None, 3, 1.0), PyTorchNeuronGroup(1, [5, 6], "l", None, None, 2, 1.0)]
    events = neuronmap.PyTorchNeuronGroupVisualizer.analyze_pytorch_learning_patterns(
        None, {"l": x}, {"l": g}, loss_values=list(range(30)), model_epoch=4)
    expect = []
    for s in range(30):
        thr = x[s].mean() + 0.5 * x[s].std()
        means = [x[s, gr.neuron_indices].mean() for gr in g]
        act = [gr.group_id for gr, m in zip(g, means) if m > thr]
        if act:
            expect.append((s, act, float(max(means))))
    assert [(e.temporal_position, e.activated_groups) for e in events] == [(s, a) for s, a, _ in expect]
    assert [e.learning_strength for e in events] == pytest.approx([m for *_, m in expect])
    assert all(e.loss_value == e.temporal_position and e.skill_type == "unknown" for e in events)


def test_bad_input(tmp_path):
    x, y = data()
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    run = lambda *a, **k: create_pytorch_neuron_group_analysis(Net(), *a, output_dir=str(tmp_path), **k)
    with pytest.raises(neuronmap.LayerNotFound, match="valid names: fc1, fc2"):
        run(loader, ["fc3"])
    with pytest.raises(neuronmap.UsageError, match="no batches"):
        run(DataLoader(TensorDataset(x[:0], y[:0]), batch_size=16), ["fc1"])
    with pytest.raises(neuronmap.UsageError, match="question_metadata has 10 rows"):
        run(loader, ["fc1"], pd.DataFrame({"category": ["a"] * 10}))
    with pytest.raises(neuronmap.UsageError, match="method="):
        run(loader, ["fc1"], method="spectral")
    if not torch.cuda.is_available():
        with pytest.raises(neuronmap.UsageError, match="no usable CUDA"):
            run(loader, ["fc1"], device="cuda")
    vis = neuronmap.PyTorchNeuronGroupVisualizer(output_dir=str(tmp_path), device="cpu")
    acts = {"fc1": x}
    groups = {"fc1": vis.identify_neuron_groups_pytorch(x, "fc1", correlation_threshold=0.3, min_group_size=2)}
    with pytest.raises(neuronmap.UsageError, match="method='pie'"):
        vis.visualize_pytorch_groups(acts, groups, method="pie")
    with pytest.raises(neuronmap.UsageError, match="neuron 999"):
        vis.visualize_pytorch_groups(acts, {"fc1": [PyTorchNeuronGroup(0, [1, 999], "fc1", None, None, 2, 1.0)]},
                                     method="network")
    with pytest.raises(neuronmap.LayerNotFound, match="layer_name='fc9'"):
        vis.visualize_pytorch_groups(acts, groups, method="scatter", layer_name="fc9")
    with pytest.raises(neuronmap.UsageError, match="output_format"):
        vis.generate_pytorch_report(acts, groups, [], output_format="xml")
    with pytest.raises(neuronmap.UsageError, match="has 5 rows"):
        vis.analyze_pytorch_learning_patterns(acts, groups, pd.DataFrame({"category": ["a"] * 5}))
