"""Reads a run file the way docs/FORMAT.md tells h5py users to, and checks it against the sample content
(tests/store/sample_run.hpp). Usage: read_with_h5py.py RUN.h5 MIN_COMMITTED [RUN.h5 MIN_COMMITTED ...].
Prints "ok <committed>" per file; one process checks many files (the crash trials start Python once)."""
import sys

import h5py
import numpy as np


def check(path, at_least):
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        version = int(f.attrs["format_version"])
        assert version >= 2, version
        names = [n.decode() for n in f.attrs["layer_names"]]
        assert names == ["conv1", "fc1", "fc2", "head"], names
        tags = [n.decode() for n in f.attrs["tag_names"]]
        assert tags == ["cat", "dog", "", "b\u00e4r"], tags

        snapshots = f["snapshots"]
        snapshots.refresh()  # the commit record first ...
        rows = snapshots[:]
        committed = 0
        while committed < len(rows) and rows[committed]["committed"] == 1:
            committed += 1
        assert committed >= at_least, (committed, at_least)

        tables = {k: f[k] for k in ("layer_rows", "data/neuron", "data/corr", "data/groups", "data/members", "data/text",
                                    "data/reservoir", "data/reservoir_ids", "data/reservoir_tags", "data/reservoir_loss",
                                    "data/events", "data/lineages", "data/layer_cka", "data/loss_curve")
                  + (("data/reference",) if version >= 3 else ())
                  + (("data/heads",) if version >= 5 else ())}
        text = tables["data/text"]

        def string(offset, length):
            return bytes(text[int(offset):int(offset) + int(length)]).decode()

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
                    if version >= 4:  # the smallest mean correlation of a member with its group; loose 0 or 1
                        r = float(group["min_member_correlation"])
                        assert np.isnan(r) or -1.0 <= r <= 1.0, r
                        assert int(group["loose"]) in (0, 1), group["loose"]
            expected = ["conv1", "fc1", "fc2", "head"] + (["extra.not_in_info"] if i % 3 == 1 else [])
            assert got == expected, (i, got)
            assert layers[0]["n_neurons"] == 4 + i % 5

            # format_version 2: per layer the reservoir, per snapshot phase, events, layer CKA, loss curve.
            for layer in layers:
                n, n_rows = int(layer["n_neurons"]), int(layer["reservoir_ids_count"])
                r0 = int(layer["reservoir_offset"])
                reservoir = tables["data/reservoir"][r0:r0 + int(layer["reservoir_count"])].reshape(-1, n) if n else None
                assert n == 0 or reservoir.shape[0] == n_rows
                assert int(layer["reservoir_tags_count"]) in (0, n_rows) and int(layer["reservoir_loss_count"]) in (0, n_rows)
            phase = string(row["phase_offset"], row["phase_len"])
            assert phase == ["", "rapid_learning", phase, "unstable"][i % 4], (i, phase)
            e0 = int(row["event_offset"])
            events = tables["data/events"][e0:e0 + int(row["n_events"])]
            assert len(events) == i % 4, (i, len(events))
            for k, e in enumerate(events):
                assert e["snapshot"] == i and e["epoch"] == 5 * (i + 1)
                assert string(e["layer_offset"], e["layer_len"]) == ("extra.not_in_info" if k == 2 else "fc1")
                l0 = int(e["lineages_offset"])
                lineages = tables["data/lineages"][l0:l0 + int(e["n_lineages"])]
                assert list(lineages) == [1000 * i + 7 * m + k for m in range(k + i % 2)], (i, k, lineages)
            c0 = int(row["cka_offset"])
            cka = tables["data/layer_cka"][c0:c0 + int(row["cka_count"])]
            assert len(cka) == (0 if i % 3 == 2 else n_layers ** 2), (i, len(cka))
            l0 = int(row["loss_offset"])
            curve = tables["data/loss_curve"][l0:l0 + int(row["loss_count"])]
            assert list(curve["epoch"]) == ([] if i % 5 == 4 else list(range(5 * i + 1, 5 * i + 6))), (i, curve)

            # format_version 3: per layer the outputs on the reference batch (none on fc2 and empty layers).
            for w, layer in enumerate(layers if version >= 3 else []):
                n, ref_rows = int(layer["n_neurons"]), int(layer["reference_rows"])
                assert int(layer["reference_count"]) == ref_rows * n, (i, w)
                assert (ref_rows == 0) == (w == 2 or n == 0) and ref_rows <= 4, (i, w, ref_rows)
                ref0 = int(layer["reference_offset"])
                reference = tables["data/reference"][ref0:ref0 + ref_rows * n].reshape(ref_rows, n)
                assert w != 0 or ref_rows == 0 or np.isnan(reference[0, 0]), (i, reference)

            # format_version 5: head statistics on layer 2 only (tests/store/sample_run.hpp), 17 values a head.
            for w, layer in enumerate(layers if version >= 5 else []):
                n, count = int(layer["n_neurons"]), int(layer["heads_count"])
                assert count == (17 * n if w == 2 else 0), (i, w, count)
                h0 = int(layer["heads_offset"])
                heads = tables["data/heads"][h0:h0 + count].reshape(-1, 17)
                assert all(1 <= q <= 1000 for q in heads[:, 0]), (i, heads[:, 0])
    return committed


args = sys.argv[1:]
assert args and len(args) % 2 == 0, "usage: read_with_h5py.py RUN.h5 MIN_COMMITTED [...]"
for k in range(0, len(args), 2):
    print("ok", check(args[k], int(args[k + 1])), flush=True)
