"""Reads a run file the way docs/FORMAT.md tells h5py users to, and checks it against the sample content
(tests/store/sample_run.hpp). Usage: read_with_h5py.py RUN.h5 MIN_COMMITTED. Prints "ok <committed>"."""
import sys

import h5py
import numpy as np

path, at_least = sys.argv[1], int(sys.argv[2])
with h5py.File(path, "r", libver="latest", swmr=True) as f:
    assert int(f.attrs["format_version"]) == 1, f.attrs["format_version"]
    names = [n.decode() for n in f.attrs["layer_names"]]
    assert names == ["conv1", "fc1", "fc2", "head"], names

    snapshots = f["snapshots"]
    snapshots.refresh()  # the commit record first ...
    rows = snapshots[:]
    committed = 0
    while committed < len(rows) and rows[committed]["committed"] == 1:
        committed += 1
    assert committed >= at_least, (committed, at_least)

    tables = {k: f[k] for k in ("layer_rows", "data/neuron", "data/corr", "data/groups", "data/members", "data/text")}
    for t in tables.values():  # ... then the data it points at
        t.refresh()
    for i in range(committed):
        row = rows[i]
        assert row["epoch"] == 5 * (i + 1), (i, row["epoch"])
        off, n_layers = int(row["layer_rows_offset"]), int(row["n_layers"])
        layers = tables["layer_rows"][off:off + n_layers]
        got = []
        for layer in layers:
            assert layer["snapshot"] == i
            start = int(layer["name_offset"])
            got.append(bytes(tables["data/text"][start:start + int(layer["name_len"])]).decode())
            n = int(layer["n_neurons"])
            neurons = tables["data/neuron"][int(layer["neuron_offset"]):int(layer["neuron_offset"]) + n]
            assert len(neurons) == n
            assert int(np.sum(neurons["dead"])) == int(layer["dead_count"])
            if layer["corr_count"]:
                c0 = int(layer["corr_offset"])
                corr = tables["data/corr"][c0:c0 + int(layer["corr_count"])].reshape(n, n)
                assert np.all(np.abs(corr) <= 1.0)
            g0 = int(layer["group_offset"])
            for group in tables["data/groups"][g0:g0 + int(layer["n_groups"])]:
                m0 = int(group["members_offset"])
                members = tables["data/members"][m0:m0 + int(group["size"])]
                assert np.all(np.diff(members) > 0) and np.all(members < n)
        expected = ["conv1", "fc1", "fc2", "head"] + (["extra.not_in_info"] if i % 3 == 1 else [])
        assert got == expected, (i, got)
        assert layers[0]["n_neurons"] == 4 + i % 5
print("ok", committed)
