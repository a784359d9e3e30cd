"""Pictures of given activations and groups (neuronmap.compat, neuronmap.standalone): the layers go to
the C++ report code in memory (neuronmap._analysis.render, the same drawing as `neuronmap report`),
with the groups exactly as given, into a scratch folder; the caller keeps the files it asked for."""
import os as _os
import re as _re
import shutil as _shutil
import tempfile as _tempfile

import numpy as _np

from . import _analysis


def _stem(name):
    """sdk/report/report.cpp sanitize_file_part: the layer name in picture file names."""
    return _re.sub(r"[^A-Za-z0-9_-]", "_", name) or "layer"


def _rows(x):
    """(n_samples, n_neurons) float32 NumPy rows of a tensor or an array."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().float().numpy()
    a = _np.asarray(x, dtype=_np.float32)
    if a.ndim != 2:
        a = a.reshape(a.shape[0], -1)
    return _np.ascontiguousarray(a)


def _group_members(group):
    """A group as {id, members}: a PyTorchNeuronGroup (or anything with group_id and neuron_indices)."""
    return {"id": int(group.group_id), "members": [int(i) for i in group.neuron_indices]}


def _render(output_dir, activations_dict, groups_dict, what, layers=None, skills=None, dashboard=False,
            device="cpu", threshold=0.6):
    """Draws every picture of `layers` (default: the layers with groups) and, if asked, the dashboard into
    a fresh scratch folder inside output_dir; returns that folder. Raises neuronmap.UsageError for groups
    the pictures cannot show (members out of range, a neuron in two groups), neuronmap.Error when the
    renderer cannot write (or, for the dashboard, has no ECharts)."""
    names = list(layers or [n for n in activations_dict if n in groups_dict])
    given = [{"name": n, "activations": _rows(activations_dict[n]),
              "groups": [_group_members(g) for g in groups_dict.get(n, [])]} for n in names]
    tag_names, tags = [], []
    if skills:
        tag_names = sorted(set(skills))
        tags = [tag_names.index(s) for s in skills]
    scratch = _tempfile.mkdtemp(prefix=".neuronmap_render_", dir=output_dir)
    try:
        result = _analysis.render(given, scratch, dashboard=dashboard, tag_names=tag_names, tags=tags,
                                  device=str(device), threshold=float(threshold))
    except BaseException:
        _shutil.rmtree(scratch, ignore_errors=True)
        raise
    if dashboard and not result["dashboard_written"]:
        _shutil.rmtree(scratch, ignore_errors=True)
        why = "; ".join(n for n in result["notes"] if "dashboard" in n) or "the renderer wrote none"
        raise _analysis.Error(f"{what}: no dashboard: {why}")
    return scratch


def _keep(scratch, output_dir, name):
    """Moves `name` from the scratch folder into output_dir; returns its new path."""
    src = _os.path.join(scratch, name)
    if not _os.path.exists(src):
        raise _analysis.Error(f"the renderer did not write {name}")
    dst = _os.path.join(output_dir, name)
    _shutil.move(src, dst)
    return dst
