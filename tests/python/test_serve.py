"""neuronmap.serve: the live view from Python (the CLI's server as a child process)."""
import json
import urllib.error
import urllib.request

import pytest
import torch
from torch import nn

import neuronmap


def write_run(path, epochs=2):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    x = torch.randn(32, 4)
    with neuronmap.attach(model, ["0", "1"], every=1, file=str(path)) as s:
        for epoch in range(1, epochs + 1):
            model(x)
            s.end_epoch(epoch, 1.0 / epoch)


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read()


def test_serve_answers_the_api_and_stops(tmp_path):
    path = tmp_path / "run.h5"
    write_run(path)
    with neuronmap.serve(path, port=0) as server:
        assert server.url.startswith("http://127.0.0.1:")
        status, body = get(server.url + "api/run")
        assert status == 200
        run = json.loads(body)
        assert [l["name"] for l in run["layers"]] == ["0", "1"]
        snapshots = json.loads(get(server.url + "api/snapshots")[1])
        assert [s["index"] for s in snapshots] == [0, 1]
        assert [s["epoch"] for s in snapshots] == [1, 2]
        with pytest.raises(urllib.error.HTTPError) as bad:
            get(server.url + "api/snapshots?after=x")
        assert bad.value.code == 400
    assert not server.running


def test_serve_reports_a_port_in_use(tmp_path):
    path = tmp_path / "run.h5"
    write_run(path, epochs=1)
    with neuronmap.serve(path, port=0) as first:
        with pytest.raises(neuronmap.FileError, match="cannot listen"):
            neuronmap.serve(path, port=first.port)
