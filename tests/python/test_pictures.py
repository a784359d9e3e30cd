"""Pictures of the groups a user gives (not the engine's), the network picture, the C++ per-sample events,
and the NumPy path of `import neuronmap` without torch."""
import json
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

import neuronmap


def read_png(path):
    """(height, width, channels) uint8 pixels of an 8-bit RGB/RGBA PNG without interlacing (cairo's)."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0
    channels = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    out = np.zeros((height, stride), dtype=np.int32)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int32)
        cur = np.zeros(stride, dtype=np.int32)
        for x in range(stride):
            a = cur[x - channels] if x >= channels else 0
            b, c = prev[x], prev[x - channels] if x >= channels else 0
            if kind == 0:
                pred = 0
            elif kind == 1:
                pred = a
            elif kind == 2:
                pred = b
            elif kind == 3:
                pred = (a + b) // 2
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            cur[x] = (line[x] + pred) & 0xFF
        out[y], prev = cur, cur
    return out.reshape(height, width, channels)[:, :, :3]


def has_color(pixels, hex_color, at_least=50):
    rgb = [int(hex_color[i:i + 2], 16) for i in (0, 2, 4)]
    return int(np.all(pixels == rgb, axis=2).sum()) >= at_least


def planted(rng, n=90):
    """24 neurons: 0-5 follow one signal, 6-11 another, the rest noise."""
    x = rng.normal(size=(n, 24)) * 0.3
    x[:, 0:6] += rng.normal(size=(n, 1)) * 2
    x[:, 6:12] += rng.normal(size=(n, 1)) * 2
    return x.astype(np.float32)


def test_draw_shows_the_given_groups_not_the_engines(tmp_path):
    x = planted(np.random.default_rng(3))
    # Not what the engine would find: one given group mixes both planted blocks, another is noise.
    given = [[0, 1, 6, 7], [20, 21, 22]]
    files = neuronmap.draw({"fc1": x}, {"fc1": given}, tmp_path)
    names = {os.path.basename(f) for f in files}
    for f in ("pytorch_groups_heatmap_fc1.png", "pytorch_groups_scatter_fc1.png", "pytorch_groups_network_fc1.png",
              "pytorch_groups_correlation_fc1.png", "pytorch_neurons_scatter_fc1.png",
              "pytorch_all_layers_heatmap.png", "pytorch_all_layers_correlation.png"):
        assert f in names, names
    with open(tmp_path / "pytorch_neuron_group_analysis_report.json") as f:
        layer = json.load(f)["layer_analysis"]["fc1"]
    assert [g["neuron_indices"] for g in layer["groups_detail"]] == given
    assert layer["files"]["network"] == "pytorch_groups_network_fc1.png"
    # The mixed group's cohesion is what its pairs give (two strong, four near-zero pairs), not ~1.
    assert 0.1 < layer["groups_detail"][0]["cohesion"] < 0.6


def test_visualize_draws_user_groups_with_their_ids(tmp_path):
    x = planted(np.random.default_rng(4))
    vis = neuronmap.PyTorchNeuronGroupVisualizer(output_dir=str(tmp_path), device="cpu")
    groups = {"fc1": [neuronmap.PyTorchNeuronGroup(5, [0, 1, 2, 3, 4, 5], "fc1", None, None, 6, 1.0),
                      neuronmap.PyTorchNeuronGroup(2, [6, 7, 8, 9, 10, 11], "fc1", None, None, 6, 1.0)]}
    paths = {m: vis.visualize_pytorch_groups({"fc1": x}, groups, method=m, layer_name="fc1")
             for m in ("heatmap", "scatter", "network")}
    assert paths == {m: str(tmp_path / f"pytorch_groups_{m}_fc1.png") for m in paths}
    heat = read_png(paths["heatmap"])
    # The group colour bar above the columns has group 5's and group 2's colours (Tableau 10: 8c564b, 2ca02c),
    # not group 0's (1f77b4), which the engine's numbering would start with.
    assert has_color(heat, "8c564b") and has_color(heat, "2ca02c")
    assert not has_color(heat, "1f77b4", at_least=1)
    assert has_color(read_png(paths["network"]), "8c564b")
    all_layers = vis.visualize_pytorch_groups({"fc1": x}, groups, method="heatmap")
    assert all_layers.endswith("pytorch_all_layers_heatmap.png") and os.path.getsize(all_layers) > 1000
    assert sorted(os.listdir(tmp_path)) == sorted(["pytorch_all_layers_heatmap.png"] +
                                                  [f"pytorch_groups_{m}_fc1.png" for m in paths])


def test_pictures_refuse_groups_they_cannot_show(tmp_path):
    x = planted(np.random.default_rng(5))
    with pytest.raises(neuronmap.UsageError, match="neuron 1 is in groups 0 and 1"):
        neuronmap.draw({"fc1": x}, {"fc1": [[0, 1], [1, 2]]}, tmp_path)
    with pytest.raises(neuronmap.UsageError, match="outside 0..23"):
        neuronmap.draw({"fc1": x}, {"fc1": [[0, 24]]}, tmp_path)
    with pytest.raises(neuronmap.LayerNotFound, match="groups for 'fc9'"):
        neuronmap.draw({"fc1": x}, {"fc9": [[0, 1]]}, tmp_path)
    with pytest.raises(neuronmap.UsageError, match="NaN or Inf"):
        neuronmap.draw({"fc1": np.full((5, 3), np.nan)}, {"fc1": []}, tmp_path)
    assert not any(f.endswith(".png") for f in os.listdir(tmp_path))


def test_sample_events_in_cpp_match_the_rule():
    x = np.random.default_rng(6).normal(size=(200, 12))
    groups = [[0, 1, 2], [3, 4], [7, 8, 9, 10]]
    expect = []
    for s, row in enumerate(x):
        threshold = row.mean() + 0.5 * row.std(ddof=1)
        means = [row[g].mean() for g in groups]
        active = [k for k, m in enumerate(means) if m > threshold]
        if active:
            expect.append((s, active, max(means)))
    for dtype in (np.float64, np.float32):
        found = neuronmap.sample_events(x.astype(dtype), groups)
        assert found["samples"].tolist() == [s for s, _, _ in expect]
        assert [a.tolist() for a in found["activated"]] == [a for _, a, _ in expect]
        assert found["strength"] == pytest.approx([m for *_, m in expect], rel=1e-5)
    with pytest.raises(neuronmap.UsageError, match="outside"):
        neuronmap.sample_events(x, [[0, 12]])


def test_import_neuronmap_needs_no_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import numpy as np, neuronmap\n"
            "x = np.random.default_rng(0).normal(size=(50, 6)); x[:, :3] += np.random.default_rng(1).normal(size=(50, 1)) * 3\n"
            "r = neuronmap.group_activations(x, threshold=0.6, min_group_size=3)\n"
            "print('groups', [g.tolist() for g in r['groups']])\n"
            "try:\n    neuronmap.attach\nexcept ImportError as e:\n    print('attach:', type(e).__name__, e)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "groups [[0, 1, 2]]" in p.stdout
    assert "attach: ImportError neuronmap.attach needs PyTorch" in p.stdout, p.stdout


def test_sample_events_on_a_run_files_rows(tmp_path):
    """Snapshot layers compute the per-sample events in C++ on the rows and groups the run file keeps."""
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Identity())
    x = torch.from_numpy(planted(np.random.default_rng(8), n=64))
    with neuronmap.attach(model, ["0"], every=1, file=str(tmp_path / "run.h5"), min_group_size=3) as s:
        model(x)
        s.end_epoch(1)
    layer = neuronmap.open(tmp_path / "run.h5")[0].layer("0")
    assert len(layer.groups) == 2 and layer.reservoir.shape == (64, 24)
    found = layer.sample_events()
    direct = neuronmap.sample_events(layer.reservoir, [g.neuron_indices for g in layer.groups])
    assert found["samples"].tolist() == direct["samples"].tolist() and len(found["samples"]) > 0
    ids = [g.group_id for g in layer.groups]
    assert [a.tolist() for a in found["activated"]] == [[ids[k] for k in a] for a in direct["activated"]]
    assert found["strength"] == pytest.approx(direct["strength"])
    assert found["sample_ids"].tolist() == layer.reservoir_ids[found["samples"]].tolist()
