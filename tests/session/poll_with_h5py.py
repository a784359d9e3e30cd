"""Polls a run file while a training process writes it, the way docs/FORMAT.md tells h5py users to read.
Usage: poll_with_h5py.py RUN.h5 MIN_POLLS DONE_FILE EVERY

Each poll opens the file (SWMR), counts the committed snapshots and reads the newest one completely
(its layer rows and neuron rows). A poll fails if anything raises, if the committed rows are not a
prefix (epochs EVERY, 2*EVERY, ... in order), or if a snapshot reads differently than an earlier poll
read it. After MIN_POLLS polls it prints "polled", keeps polling until DONE_FILE exists (the writer is
gone), then checks every snapshot it saw against the final file and prints
"polls=<n> failures=<f> snapshots_seen=<s> max_committed=<m>"."""
import os
import sys
import time

import h5py
import numpy as np

path, min_polls, done_file, every = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
seen = {}  # snapshot index -> fingerprint (bytes of its neuron rows' means and stds)
polls = failures = max_committed = 0
messages = []


def read(f, index=None):
    snapshots = f["snapshots"]
    snapshots.refresh()  # the commit record first, then the tables it points into
    rows = snapshots[:]
    committed = 0
    while committed < len(rows) and rows[committed]["committed"] == 1:
        committed += 1
    epochs = [int(e) for e in rows["epoch"][:committed]]
    if epochs != [every * (i + 1) for i in range(committed)]:
        raise AssertionError("not a prefix: epochs %s" % epochs[:10])
    if committed == 0:
        return committed, None
    i = committed - 1 if index is None else index
    layer_rows, neurons = f["layer_rows"], f["data/neuron"]
    layer_rows.refresh()
    neurons.refresh()
    off, n_layers = int(rows[i]["layer_rows_offset"]), int(rows[i]["n_layers"])
    layers = layer_rows[off:off + n_layers]
    if len(layers) != n_layers or n_layers != 3:
        raise AssertionError("snapshot %d: %d of %d layer rows" % (i, len(layers), n_layers))
    parts = []
    for layer in layers:
        if int(layer["snapshot"]) != i:
            raise AssertionError("snapshot %d: a layer row of snapshot %d" % (i, layer["snapshot"]))
        n0, n = int(layer["neuron_offset"]), int(layer["n_neurons"])
        rows_n = neurons[n0:n0 + n]
        if len(rows_n) != n or n == 0 or not np.all(np.isfinite(rows_n["mean"])):
            raise AssertionError("snapshot %d: neuron rows missing or not finite" % i)
        parts.append(rows_n["mean"].tobytes() + rows_n["stddev"].tobytes())
    return committed, (i, b"".join(parts))


def poll(index=None):
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        return read(f, index)


while True:
    done = os.path.exists(done_file)
    polls += 1
    try:
        committed, got = poll()
        max_committed = max(max_committed, committed)
        if got is not None:
            i, fingerprint = got
            if seen.setdefault(i, fingerprint) != fingerprint:
                raise AssertionError("snapshot %d read differently in two polls" % i)
    except Exception as e:  # noqa: BLE001 - every failure counts
        failures += 1
        if len(messages) < 5:
            messages.append("poll %d: %r" % (polls, e))
    if polls == min_polls:
        print("polled", flush=True)
    if done and polls >= min_polls:
        break
    time.sleep(0.0005)

# The final file must hold every snapshot any poll saw, unchanged.
for i, fingerprint in sorted(seen.items()):
    try:
        committed, got = poll(i)
        if got is None or got[1] != fingerprint:
            raise AssertionError("snapshot %d differs from what a poll saw" % i)
    except Exception as e:  # noqa: BLE001
        failures += 1
        if len(messages) < 5:
            messages.append("final check: %r" % e)
for m in messages:
    print(m, file=sys.stderr)
print("polls=%d failures=%d snapshots_seen=%d max_committed=%d" % (polls, failures, len(seen), max_committed), flush=True)
