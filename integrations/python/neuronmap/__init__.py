"""NeuronMap from Python: watch the neurons of an eager PyTorch model while it trains.

    import neuronmap
    with neuronmap.attach(model, ["fc1", "relu1"], every=5, file="run.h5") as s:
        for epoch in range(1, 21):
            ...train one epoch...
            s.end_epoch(epoch, loss)
    run = neuronmap.open("run.h5")
    for snap in run.snapshots:
        print(snap.epoch, [(l.name, len(l.groups)) for l in snap.layers])

Python forward hooks hand each output to the C++ engine (the same queue, workers, statistics,
grouping and run file as the C++ SDK). The package has two halves: `_analysis` (grouping, the original
tool's per-sample events, pictures; NumPy only) and `_session` / `compat` (PyTorch models, run files).
`import neuronmap` loads only the first; the PyTorch names load torch, then `_core`, on first use.
"""
import importlib as _importlib

import numpy as _np

from . import _analysis
from ._analysis import Error, FileError, LayerNotFound, UsageError

__version__ = _analysis.__version__


def _as_array(x):
    """A float32/float64 C-contiguous NumPy array of an array, a list or a torch tensor (without importing
    torch: a tensor is recognised by its detach/cpu/numpy methods)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu()
        if not x.is_floating_point() or x.element_size() < 4:
            x = x.double()
        x = x.numpy()
    a = _np.asarray(x)
    if a.dtype not in (_np.float32, _np.float64):
        a = a.astype(_np.float64)
    return _np.ascontiguousarray(a)


def group_activations(activations, method="correlation", threshold=0.6, min_group_size=3, n_groups=None,
                      n_init=10, seed=42):
    """Groups the neurons of an (n_samples, n_neurons) array or tensor with the engine's grouping (the
    `neuronmap groups` code path). method: 'correlation' (correlation clustering), 'kmeans',
    'hierarchical' or 'components' (connected components of r >= threshold, for comparison). Returns a
    dict: labels, groups (index arrays), patterns, cohesion, min_member_correlation (per group: the
    smallest mean correlation of a member with the rest), loose (per group: cohesion below threshold),
    mean_activation, dead, neuron_mean."""
    return _analysis.group_activations(_as_array(activations), method, float(threshold), int(min_group_size),
                                       int(n_groups or 0), int(n_init), int(seed))


def sample_events(activations, groups, sigma=0.5):
    """The original tool's per-sample learning events of one layer, computed in C++: the rows of an
    (n_samples, n_neurons) array on which at least one group (a list of neuron indices) has a mean
    activation above the row's mean + sigma x std. Returns a dict: samples (row indices), activated
    (per event: positions in `groups`), strength (per event: the largest group mean on that row)."""
    return _analysis.sample_events(_as_array(activations), [[int(i) for i in g] for g in groups], float(sigma))


def draw(activations, groups, output_dir, dashboard=False, threshold=0.6, epoch=1):
    """Every picture of `neuronmap report` (and its JSON/text reports; the dashboard if asked) for NumPy
    activations and given groups, without torch: activations {layer: (n_samples, n_neurons)}, groups
    {layer: [neuron indices of each group]} (group ids are the positions). Returns the files written."""
    unknown = [name for name in groups if name not in activations]
    if unknown:
        raise LayerNotFound(f"draw: groups for {', '.join(map(repr, unknown))} but no activations; layers: "
                            f"{', '.join(activations)}")
    layers = [{"name": name, "activations": _np.ascontiguousarray(_as_array(a), dtype=_np.float32),
               "groups": [{"id": gid, "members": [int(i) for i in members]}
                          for gid, members in enumerate(groups.get(name, []))]}
              for name, a in activations.items()]
    return _analysis.render(layers, str(output_dir), epoch=int(epoch), dashboard=bool(dashboard),
                            threshold=float(threshold))["files"]


# The PyTorch names, loaded (with torch) on first use.
_LAZY = {
    "attach": "_session", "Session": "_session", "open": "_session", "Run": "_session",
    "PyTorchLearningEvent": "compat", "PyTorchNeuronGroup": "compat", "PyTorchNeuronGroupVisualizer": "compat",
    "create_pytorch_neuron_group_analysis": "compat", "infer_skill_type": "_events",
    "serve": "live", "LiveServer": "live",
}
_SUBMODULES = ("_core", "_session", "compat", "standalone", "_events", "_reports", "_pictures", "live")


def __getattr__(name):
    if name in _LAZY:
        try:
            module = _importlib.import_module("." + _LAZY[name], __name__)
        except ImportError as e:
            if getattr(e, "name", None) != "torch":
                raise
            raise ImportError(f"neuronmap.{name} needs PyTorch, which cannot be imported here ({e}); "
                              "without it neuronmap offers group_activations, sample_events and draw "
                              "on NumPy arrays") from e
        value = getattr(module, name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        if name == "_core":  # it shares torch's LibTorch: torch first
            _importlib.import_module("._session", __name__)
        return _importlib.import_module("." + name, __name__)
    raise AttributeError(f"module 'neuronmap' has no attribute '{name}'")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "serve", "LiveServer", "attach", "Session", "open", "Run", "group_activations", "sample_events", "draw", "Error", "LayerNotFound",
    "UsageError", "FileError", "PyTorchNeuronGroup", "PyTorchLearningEvent", "PyTorchNeuronGroupVisualizer",
    "create_pytorch_neuron_group_analysis", "infer_skill_type",
]
