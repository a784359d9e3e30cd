"""The original tool's entry points (shared/seed/pytorch_neuron_group_visualization.md) on NeuronMap."""
import json
import os

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

import neuronmap
from seed_models import YourPyTorchModel


def test_quickstart(tmp_path):
    # The seed's "Schnellstart / Basic Usage", with the import line changed to neuronmap.
    torch.manual_seed(0)
    your_dataset = TensorDataset(torch.randn(80, 1, 4, 4), torch.randint(0, 4, (80,)))
    out = str(tmp_path / "pytorch_analysis")
    # --- seed code ---
    from neuronmap import create_pytorch_neuron_group_analysis

    model = YourPyTorchModel()
    dataloader = DataLoader(your_dataset, batch_size=32)
    layer_names = ['conv1', 'fc1', 'fc2']
    results = create_pytorch_neuron_group_analysis(
        model=model,
        dataloader=dataloader,
        layer_names=layer_names,
        output_dir=out
    )
    # --- end of seed code ---
    for f in ("run.h5", "pytorch_neuron_group_analysis_report.json", "pytorch_neuron_group_analysis_report.txt"):
        assert os.path.getsize(os.path.join(out, f)) > 0
    report = json.load(open(os.path.join(out, "pytorch_neuron_group_analysis_report.json")))
    assert report["pytorch_analysis"]["total_layers"] == 3
    assert report["layer_analysis"]["fc1"]["activation_shape"] == [80, 16]
    assert report["layer_analysis"]["conv1"]["activation_shape"] == [80, 8]
    if os.environ.get("NEURONMAP_CLI"):  # ctest sets it: the pictures come from `neuronmap report`
        for f in ("pytorch_groups_heatmap_fc1.png", "pytorch_groups_scatter_conv1.png", "pytorch_all_layers_heatmap.png"):
            assert os.path.join(out, f) in results["files"]["pictures"]
            assert os.path.getsize(os.path.join(out, f)) > 0
    # The report's groups are the run file's groups (same outputs, same engine grouping).
    run = neuronmap.open(os.path.join(out, "run.h5"))
    snap = run[0]
    assert snap.epoch == 1
    for name in layer_names:
        layer = snap.layer(name)
        assert layer.samples == 80
        detail = report["layer_analysis"][name]["groups_detail"]
        assert [g["neuron_indices"] for g in detail] == [list(g.neuron_indices) for g in layer.groups]
        assert [g["loose"] for g in detail] == [g.loose for g in layer.groups]
        for g, stored in zip(detail, layer.groups):
            assert g["min_member_correlation"] == pytest.approx(stored.min_member_correlation, abs=1e-6)
        np.testing.assert_allclose(layer.mean, results["activations"][name].double().mean(0).numpy(), rtol=1e-5,
                                   atol=1e-7)


def planted(n=200, seed=3):
    """Two planted blocks of 4 correlated neurons plus 4 independent ones."""
    g = np.random.default_rng(seed)
    a, b = g.normal(size=(n, 1)), g.normal(size=(n, 1))
    x = np.concatenate([a + 0.1 * g.normal(size=(n, 4)), b + 0.1 * g.normal(size=(n, 4)), g.normal(size=(n, 4))], 1)
    return torch.tensor(x, dtype=torch.float32)


def test_quickstart_without_cli(tmp_path, monkeypatch):
    """No `neuronmap` executable: the reports and the run file still come, with a note instead of pictures."""
    from neuronmap import compat
    monkeypatch.setattr(compat, "_find_cli", lambda: None)
    data = DataLoader(TensorDataset(torch.randn(40, 1, 4, 4), torch.zeros(40)), batch_size=20)
    with pytest.warns(UserWarning, match="not found"):
        results = neuronmap.create_pytorch_neuron_group_analysis(YourPyTorchModel(), data, ["fc1"],
                                                                 output_dir=str(tmp_path), model_epoch=3)
    assert results["files"]["pictures"] == []
    assert "neuronmap report" in open(results["files"]["text_report"]).read()
    assert [s.epoch for s in neuronmap.open(results["files"]["run"])] == [3]


@pytest.mark.parametrize("method,kw", [("correlation_clustering", {"correlation_threshold": 0.6}),
                                       ("kmeans", {"n_groups": 3}),
                                       ("hierarchical", {"correlation_threshold": 0.6}),
                                       ("components", {"correlation_threshold": 0.6})])
def test_identify_neuron_groups_pytorch(tmp_path, method, kw):
    vis = neuronmap.PyTorchNeuronGroupVisualizer(output_dir=str(tmp_path), device="cpu")
    x = planted()
    groups = vis.identify_neuron_groups_pytorch(x, "fc1", method=method, min_group_size=3, **kw)
    members = [g.neuron_indices for g in groups]
    for block in ([0, 1, 2, 3], [4, 5, 6, 7]):
        if method == "kmeans":  # every neuron gets a cluster: the independent ones join some block
            assert any(set(block) <= set(m) for m in members), members
        else:
            assert block in members, members
    for g in groups:
        assert isinstance(g, neuronmap.PyTorchNeuronGroup)
        assert g.layer_name == "fc1" and g.group_size == len(g.neuron_indices)
        assert g.activation_pattern.shape == (200,)
        torch.testing.assert_close(g.activation_pattern, x.double()[:, g.neuron_indices].mean(1))
        torch.testing.assert_close(g.group_center, x.double()[:, g.neuron_indices].mean(0))
        assert 0.0 <= g.cohesion_score <= 1.0
        assert g.min_member_correlation <= g.cohesion_score + 1e-12
        assert g.loose == (g.cohesion_score < 0.6)  # the default threshold where k-means takes none
    if method != "kmeans":
        assert all(g.cohesion_score > 0.9 and g.min_member_correlation > 0.9 and not g.loose for g in groups)
    else:  # three clusters for two blocks and four independent neurons: one cannot be co-activating
        assert any(g.loose for g in groups), [(g.cohesion_score, g.loose) for g in groups]


def test_extract_activations_from_model(tmp_path):
    model = YourPyTorchModel()
    data = DataLoader(TensorDataset(torch.randn(40, 1, 4, 4), torch.zeros(40)), batch_size=16)
    vis = neuronmap.PyTorchNeuronGroupVisualizer(output_dir=str(tmp_path))
    acts = vis.extract_activations_from_model(model, data, ["conv1", "fc2"], max_batches=2)
    assert acts["conv1"].shape == (32, 8) and acts["fc2"].shape == (32, 4)
    with pytest.raises(neuronmap.LayerNotFound, match="valid names: conv1, fc1, fc2"):
        vis.extract_activations_from_model(model, data, ["conv2"])
    # Was NotImplementedError (pictures only through `neuronmap report`); the issue made it draw, so an
    # empty groups dict is now a clear usage error instead.
    with pytest.raises(neuronmap.UsageError, match="no groups for any layer"):
        vis.visualize_pytorch_groups(acts, {}, method="heatmap")
    with pytest.raises(neuronmap.UsageError, match="method"):
        vis.identify_neuron_groups_pytorch(acts["fc2"], "fc2", method="spectral")
