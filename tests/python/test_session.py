"""The Python path: hooks on an eager model feed the C++ engine; the run file holds what numpy computes
over the same forward outputs."""
import math

import numpy as np
import pytest
import torch
from torch import nn

import neuronmap


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 12)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(12, 3)

    def forward(self, x):
        return self.fc2(self.relu1(self.fc1(x)))


def make_data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    return x, y


def train(model, session, epochs, record=None):
    """Trains `epochs` epochs of 4 batches; record[epoch][name] collects the hooked outputs."""
    torch.manual_seed(1)
    x, y = make_data()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    handles = []
    current = {}
    if record is not None:
        for name in ("fc1", "relu1"):
            def hook(module, inputs, output, name=name):
                current.setdefault(name, []).append(output.detach().double().numpy().copy())
            handles.append(model.get_submodule(name).register_forward_hook(hook))
    for epoch in range(1, epochs + 1):
        current.clear()
        total = 0.0
        for b in range(4):
            xb, yb = x[b * 24:(b + 1) * 24], y[b * 24:(b + 1) * 24]
            loss = nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        if record is not None:
            record[epoch] = {k: np.concatenate(v, 0) for k, v in current.items()}
        session.end_epoch(epoch, total / 4)
    for h in handles:
        h.remove()


def test_attach_train_and_read(tmp_path):
    path = tmp_path / "run.h5"
    model = MLP()
    record = {}
    with neuronmap.attach(model, ["fc1", "relu1"], every=2, file=str(path), min_group_size=2) as s:
        assert s.layers == ["fc1", "relu1"]
        train(model, s, 6, record)
    assert s.closed
    assert s.last_error() == ""
    run = neuronmap.open(path)
    assert run.layers == ["fc1", "relu1"]
    snaps = run.snapshots
    assert [snap.epoch for snap in snaps] == [2, 4, 6]
    for snap in snaps:
        assert [layer.name for layer in snap.layers] == ["fc1", "relu1"]
        assert not math.isnan(snap.loss)
        for layer in snap.layers:
            direct = record[snap.epoch][layer.name]
            assert layer.samples == direct.shape[0] == 96
            assert layer.n_neurons == 12
            assert list(layer.output_shape) == [24, 12]
            # Engine statistics against numpy over the same outputs: min/max exact, moments to rounding.
            np.testing.assert_array_equal(layer.min, direct.min(0))
            np.testing.assert_array_equal(layer.max, direct.max(0))
            np.testing.assert_allclose(layer.mean, direct.mean(0), rtol=1e-12, atol=1e-15)
            live = direct.std(0) > 0
            np.testing.assert_allclose(layer.std[live], direct.std(0)[live], rtol=1e-9)
            corr = layer.correlation
            assert corr.shape == (12, 12)
            c = np.corrcoef(direct[:, live].T)
            np.testing.assert_allclose(corr[np.ix_(live, live)], c, atol=1e-5)  # stored as float32
            np.testing.assert_array_equal(layer.dead, ~live)
            # Groups: index arrays, consistent with the per-neuron labels.
            for gid, g in enumerate(layer.groups):
                assert isinstance(g.neuron_indices, np.ndarray)
                assert g.group_id == gid
                assert (layer.labels[g.neuron_indices] == gid).all()
                assert 0.0 <= g.cohesion_score <= 1.0
            assert (layer.labels >= 0).sum() == sum(g.group_size for g in layer.groups)


def test_reduce_on_device_equals_the_worker_path(tmp_path):
    """Options::reduce_on_device from Python: the hooks' outputs reduced with ATen give the run the
    workers give (the path a CUDA model's outputs take, here on CPU tensors)."""
    runs = []
    for name, on_device in (("workers.h5", False), ("device.h5", True)):
        torch.manual_seed(0)
        model = MLP()
        record = {}
        with neuronmap.attach(model, ["fc1", "relu1"], every=2, file=str(tmp_path / name), gradients=True,
                              reduce_on_device=on_device) as s:
            train(model, s, 4, record)
        assert s.last_error() == ""
        runs.append((neuronmap.open(tmp_path / name), record))
    (workers, record), (device, _) = runs
    for a, b in zip(workers.snapshots, device.snapshots):
        for la, lb in zip(a.layers, b.layers):
            direct = record[a.epoch][la.name]
            assert la.samples == lb.samples == direct.shape[0]
            np.testing.assert_array_equal(lb.min, direct.min(0))
            np.testing.assert_array_equal(lb.max, direct.max(0))
            np.testing.assert_allclose(lb.mean, la.mean, rtol=1e-9, atol=1e-15)
            np.testing.assert_allclose(lb.std, la.std, rtol=1e-9, atol=1e-15)
            np.testing.assert_array_equal(lb.labels, la.labels)


def test_reduce_on_device_conv_net_with_gradients(tmp_path):
    """A torchvision-style block (BatchNorm, in-place ReLU, pooling, channels-first outputs, gradients):
    reduced with ATen it stores what the workers store."""
    def net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                             nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(16, 4))
    runs = []
    for on_device in (False, True):
        model = net()
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        g = torch.Generator().manual_seed(1)
        path = tmp_path / f"conv_{on_device}.h5"
        with neuronmap.attach(model, ["1", "2", "4", "8"], every=1, file=str(path), gradients=True,
                              reduce_on_device=on_device) as s:
            for b in range(12):
                x = torch.randn(16, 3, 8, 8, generator=g)
                y = torch.randint(0, 4, (16,), generator=g)
                loss = nn.functional.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            s.end_epoch(1, loss.item())
        assert s.last_error() == ""
        runs.append(neuronmap.open(path).snapshots[0])
    for la, lb in zip(runs[0].layers, runs[1].layers):
        assert la.samples == lb.samples == 12 * 16
        np.testing.assert_array_equal(lb.min, la.min)
        np.testing.assert_array_equal(lb.max, la.max)
        np.testing.assert_allclose(lb.mean, la.mean, rtol=1e-9, atol=1e-15)
        np.testing.assert_allclose(lb.std, la.std, rtol=1e-9, atol=1e-15)
        np.testing.assert_array_equal(lb.labels, la.labels)


def test_same_groups_as_group_activations(tmp_path):
    """The session's grouping and the standalone grouping agree on the same outputs."""
    path = tmp_path / "run.h5"
    model = MLP()
    record = {}
    with neuronmap.attach(model, ["fc1"], every=1, file=str(path), threshold=0.3, min_group_size=2) as s:
        train(model, s, 1, record)
    layer = neuronmap.open(path)[0].layer("fc1")
    direct = neuronmap.group_activations(record[1]["fc1"], threshold=0.3, min_group_size=2)
    np.testing.assert_array_equal(layer.labels, direct["labels"])


def three_blocks(n=240, seed=5):
    """Three independent blocks of three co-activating neurons (r about 0.8 inside, 0 across)."""
    g = np.random.default_rng(seed)
    z = g.normal(size=(n, 3))
    return torch.tensor(np.repeat(z, 3, axis=1) + 0.5 * g.normal(size=(n, 9)), dtype=torch.float32)


def test_loose_kmeans_groups(tmp_path):
    """k-means with k = 2 for three blocks joins two of them: that group is loose, in memory, in the run
    file and in group_activations; every group carries its smallest member correlation."""
    x = three_blocks()
    kw = dict(method="kmeans", n_groups=2, threshold=0.6, min_group_size=1)
    direct = neuronmap.group_activations(x, **kw)
    assert list(direct["loose"]) == [c < 0.6 for c in direct["cohesion"]]
    assert direct["loose"].sum() == 1
    assert (direct["min_member_correlation"] <= direct["cohesion"] + 1e-12).all()

    model = nn.Sequential()
    model.add_module("blocks", nn.Identity())
    path = tmp_path / "run.h5"
    with neuronmap.attach(model, ["blocks"], every=1, file=str(path), **kw) as s:
        for b in range(4):
            model(x[b * 60:(b + 1) * 60])
        s.end_epoch(1)
    groups = neuronmap.open(path)[0].layer("blocks").groups
    assert [len(g.neuron_indices) for g in groups] == [len(m) for m in direct["groups"]]
    assert [g.loose for g in groups] == list(direct["loose"])
    for g, weakest in zip(groups, direct["min_member_correlation"]):
        assert g.min_member_correlation == pytest.approx(weakest, abs=1e-6)
        assert ("loose" in repr(g)) == g.loose
    loose = [g for g in groups if g.loose]
    assert len(loose) == 1 and loose[0].group_size == 6 and loose[0].min_member_correlation < 0.6

    components = neuronmap.group_activations(x, method="components", threshold=0.6, min_group_size=3)
    assert sorted(map(list, components["groups"])) == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert not components["loose"].any()


def test_unknown_layer_lists_valid_names(tmp_path):
    with pytest.raises(neuronmap.LayerNotFound) as err:
        neuronmap.attach(MLP(), ["fc1", "fc9"], file=str(tmp_path / "x.h5"))
    msg = str(err.value)
    assert "'fc9'" in msg and "fc1, relu1, fc2" in msg
    assert not (tmp_path / "x.h5").exists()


def test_bad_option_is_a_usage_error(tmp_path):
    with pytest.raises(neuronmap.UsageError, match="unknown option 'evry'"):
        neuronmap.attach(MLP(), ["fc1"], file=str(tmp_path / "x.h5"), evry=3)
    with pytest.raises(neuronmap.UsageError, match="overflow"):
        neuronmap.attach(MLP(), ["fc1"], file=str(tmp_path / "y.h5"), overflow="sometimes")


def test_context_manager_closes_and_removes_hooks(tmp_path):
    model = MLP()
    path = tmp_path / "run.h5"
    with neuronmap.attach(model, ["relu1"], every=1, file=str(path)) as s:
        assert len(model.relu1._forward_hooks) == 1
        model(torch.randn(4, 6))
        s.end_epoch(1, 0.5)
    assert s.closed
    assert len(model.relu1._forward_hooks) == 0
    with pytest.raises(neuronmap.UsageError, match="closed"):
        s.end_epoch(2)
    assert s.snapshots_written() == 1
    assert len(neuronmap.open(path)) == 1
    # The file is complete: a second session refuses it without overwrite, accepts it with.
    with pytest.raises(neuronmap.FileError):
        neuronmap.attach(model, ["relu1"], file=str(path))
    neuronmap.attach(model, ["relu1"], file=str(path), overwrite=True).close()


def test_epochs_must_increase(tmp_path):
    with neuronmap.attach(MLP(), ["fc1"], every=1, file=str(tmp_path / "r.h5")) as s:
        s.end_epoch(3)
        with pytest.raises(neuronmap.UsageError, match="increase"):
            s.end_epoch(2)


def test_conv_layout_and_gradients(tmp_path):
    model = nn.Sequential(nn.Conv2d(2, 5, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 16, 2))
    x = torch.randn(8, 2, 4, 4)
    path = tmp_path / "conv.h5"
    with neuronmap.attach(model, ["0", "1"], every=1, file=str(path), gradients=True) as s:
        out = {}
        def keep(module, inputs, output):  # returns None: the output stays the model's
            out["relu"] = output.detach().clone()
            def keep_grad(g):
                out["grad"] = g.detach().clone()
            output.register_hook(keep_grad)
        h = model[1].register_forward_hook(keep)
        (model(x) ** 2).sum().backward()
        h.remove()
        s.end_epoch(1)
    layer = neuronmap.open(path)[0].layer("1")
    assert layer.n_neurons == 5  # channels, spatial mean
    np.testing.assert_allclose(layer.mean, out["relu"].double().mean((2, 3)).mean(0).numpy(), rtol=1e-6)
    assert layer.gradient_samples == 8
    g, a = out["grad"].double(), out["relu"].double()
    np.testing.assert_allclose(layer.grad_mean_abs, g.abs().mean((2, 3)).mean(0).numpy(), rtol=1e-5)
    np.testing.assert_allclose(layer.taylor, (a * g).mean((2, 3)).mean(0).numpy(), rtol=1e-5, atol=1e-9)


def test_reference_batch(tmp_path):
    model = MLP()
    path = tmp_path / "ref.h5"
    ref = torch.randn(10, 6)
    with neuronmap.attach(model, ["fc1"], every=1, file=str(path)) as s:
        s.set_reference(ref)
        train(model, s, 2)
    run = neuronmap.open(path)
    layer = run[1].layer("fc1")
    assert layer.reference.shape == (10, 12)
    np.testing.assert_allclose(layer.reference, model.fc1(ref).detach().numpy(), rtol=1e-6, atol=1e-6)


def test_observe_per_sample_loss_and_tags(tmp_path):
    model = MLP()
    path = tmp_path / "obs.h5"
    x, y = make_data(48)
    tags = [i % 2 for i in range(48)]
    with neuronmap.attach(model, ["fc1"], every=1, file=str(path), tag_names=["even", "odd"]) as s:
        loss = nn.functional.cross_entropy(model(x), y, reduction="none")
        s.observe(loss, tags)
        s.observe(np.zeros(0))  # numpy is accepted too (an empty one: nothing to record)
        s.end_epoch(1, loss.mean())
    run = neuronmap.open(path)
    assert run.info["tag_names"] == ["even", "odd"]
    layer = run[0].layer("fc1")
    ids = layer.reservoir_ids
    assert layer.reservoir.shape == (48, 12)  # the reservoir holds every row when it is large enough
    np.testing.assert_array_equal(layer.reservoir_tags, np.array(tags)[ids])
    np.testing.assert_allclose(layer.reservoir_loss, loss.detach().numpy()[ids], rtol=1e-6)
    np.testing.assert_allclose(layer.reservoir, model.fc1(x).detach().numpy()[ids], rtol=1e-6, atol=1e-7)
