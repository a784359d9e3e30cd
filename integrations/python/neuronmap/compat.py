"""The original Python tool's entry points, backed by NeuronMap's engine.

    from neuronmap import create_pytorch_neuron_group_analysis
    results = create_pytorch_neuron_group_analysis(model, dataloader, ['fc1', 'fc2'],
                                                   output_dir='outputs/pytorch_analysis')

Activations are captured with forward hooks and reduced to (n_samples, n_neurons) the way the engine
reduces them ([B, C, spatial...] -> spatial mean per channel, [B, T, F] -> one row per token);
groups come from the engine's grouping (the `neuronmap groups` code path), and the analysis also
writes a NeuronMap run file (run.h5) through a session, for `neuronmap report` / `neuronmap inspect`.
"""
import datetime as _datetime
import json as _json
import os as _os
from dataclasses import dataclass
from typing import List, Optional

import numpy as _np
import torch as _torch

from . import _core

_METHODS = {"correlation_clustering": "correlation", "correlation": "correlation", "kmeans": "kmeans",
            "hierarchical": "hierarchical", "components": "components"}


@dataclass
class PyTorchNeuronGroup:
    group_id: int                     # position in the layer's group list (ordered by smallest neuron)
    neuron_indices: List[int]         # ascending
    layer_name: str
    activation_pattern: _torch.Tensor  # the group's mean activation per sample
    group_center: _torch.Tensor       # per member neuron: its mean activation over the samples
    group_size: int
    cohesion_score: float             # mean pairwise correlation inside, clipped to [0, 1]
    learning_phase: Optional[str] = None
    skill_category: Optional[str] = None
    device: str = "cpu"
    mean_activation: float = 0.0
    min_member_correlation: float = float("nan")  # the smallest mean correlation of a member with the rest
    loose: bool = False               # cohesion below the correlation threshold (k-means partitions every neuron)


def _resolve_device(device):
    if device in (None, "auto"):
        return "cuda" if _torch.cuda.is_available() else "cpu"
    return str(device)


def _model_device(model):
    for p in model.parameters():
        return p.device
    return _torch.device("cpu")


def _batch_input(batch):
    if isinstance(batch, dict):
        for key in ("input", "inputs", "x", "data"):
            if key in batch:
                return batch[key]
        return next(iter(batch.values()))
    if isinstance(batch, (tuple, list)):
        return batch[0]
    return batch


def _to_rows(output, layout):
    """The engine's reduction of an output to samples x neurons (sdk/probe/rows.cpp to_rows)."""
    from . import _first_tensor
    t = _first_tensor(output)
    if t is None:
        return None
    t = t.detach()
    if t.is_complex():
        t = t.real
    if not t.is_floating_point():
        t = t.float()
    if t.dim() == 0:
        return t.reshape(1, 1)
    if t.dim() == 1:
        return t.reshape(-1, 1)
    if t.dim() == 2:
        return t
    if layout == "channels_first":
        return t.reshape(t.shape[0], t.shape[1], -1).mean(2)
    return t.reshape(-1, t.shape[-1])


class PyTorchNeuronGroupVisualizer:
    """The original tool's visualizer class: activation extraction and neuron groups, on NeuronMap."""

    def __init__(self, output_dir="outputs", device="auto"):
        self.output_dir = str(output_dir)
        self.device = _resolve_device(device)
        _os.makedirs(self.output_dir, exist_ok=True)

    def extract_activations_from_model(self, model, dataloader, layer_names, max_batches=None, _session=None):
        """Layer name -> (n_samples, n_neurons) float tensor on the CPU, over the dataloader's batches
        (at most max_batches). Unknown layer names raise neuronmap.LayerNotFound."""
        from . import LayerNotFound, _layouts
        valid = [n for n, _ in model.named_modules() if n]
        missing = [n for n in layer_names if n not in valid]
        if missing:
            raise LayerNotFound(f"no submodule named {', '.join(repr(n) for n in missing)} in "
                                f"{type(model).__name__}; valid names: {', '.join(valid)}")
        layouts = dict(zip(layer_names, _layouts(model, list(layer_names), {})))
        chunks = {name: [] for name in layer_names}

        def make_hook(name):
            def hook(module, inputs, output):
                rows = _to_rows(output, layouts[name])
                if rows is not None:
                    chunks[name].append(rows.to("cpu", _torch.float32))
            return hook

        handles = [model.get_submodule(n).register_forward_hook(make_hook(n)) for n in layer_names]
        device = _model_device(model)
        try:
            with _torch.no_grad():
                for i, batch in enumerate(dataloader):
                    if max_batches is not None and i >= max_batches:
                        break
                    x = _batch_input(batch)
                    model(x.to(device) if isinstance(x, _torch.Tensor) else x)
        finally:
            for h in handles:
                h.remove()
        out = {}
        for name, parts in chunks.items():
            if not parts:
                raise _core.UsageError(f"layer '{name}' did not run during the forward passes")
            out[name] = _torch.cat(parts, 0)
        return out

    def identify_neuron_groups_pytorch(self, activation_tensor, layer_name, method="correlation_clustering",
                                       correlation_threshold=0.6, min_group_size=3, n_groups=None, n_init=10,
                                       seed=42):
        """Groups of co-activating neurons in an (n_samples, n_neurons) tensor, by the engine's grouping."""
        from . import group_activations
        if method not in _METHODS:
            raise _core.UsageError(f"method='{method}': use 'correlation_clustering', 'kmeans', 'hierarchical' "
                                   "or 'components'")
        x = activation_tensor.detach().cpu() if isinstance(activation_tensor, _torch.Tensor) \
            else _torch.as_tensor(activation_tensor)
        if x.dim() != 2:
            x = x.reshape(x.shape[0], -1)
        r = group_activations(x, method=_METHODS[method], threshold=correlation_threshold,
                              min_group_size=min_group_size, n_groups=n_groups, n_init=n_init, seed=seed)
        xd = x.double()
        groups = []
        for gid, (members, pattern, cohesion, mean, weakest, loose) in enumerate(
                zip(r["groups"], r["patterns"], r["cohesion"], r["mean_activation"], r["min_member_correlation"],
                    r["loose"])):
            idx = _torch.as_tensor(members.astype(_np.int64))
            groups.append(PyTorchNeuronGroup(
                group_id=gid, neuron_indices=[int(i) for i in members], layer_name=layer_name,
                activation_pattern=_torch.from_numpy(pattern), group_center=xd[:, idx].mean(0),
                group_size=len(members), cohesion_score=float(cohesion), device=self.device,
                mean_activation=float(mean), min_member_correlation=float(weakest), loose=bool(loose)))
        return groups


def _find_cli():
    """The `neuronmap` executable: $NEURONMAP_CLI, next to this package in a build tree, or on PATH."""
    import shutil
    env = _os.environ.get("NEURONMAP_CLI")
    if env and _os.access(env, _os.X_OK):
        return env
    here = _os.path.dirname(_os.path.abspath(__file__))
    built = _os.path.join(here, "..", "..", "bin", "neuronmap")  # <build>/python/neuronmap -> <build>/bin
    if _os.access(built, _os.X_OK):
        return _os.path.normpath(built)
    return shutil.which("neuronmap")


def _pictures(run_path, output_dir):
    """Heatmaps, scatter plots and the dashboard by `neuronmap report` (the C++ renderer).
    Returns (picture paths, note): note says what is missing and why (None when nothing is)."""
    import subprocess
    cli = _find_cli()
    if cli is None:
        return [], "the neuronmap executable was not found (set NEURONMAP_CLI or put it on PATH)"
    cmd = [cli, "report", run_path, "--out", output_dir, "--quiet"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    note = None
    if p.returncode != 0:  # e.g. a build without ECharts cannot write the dashboard: the rest still can
        first = (p.stderr.strip() or p.stdout.strip()).splitlines()[-1:] or ["exit code %d" % p.returncode]
        p = subprocess.run(cmd + ["--no-dashboard"], capture_output=True, text=True)
        if p.returncode != 0:
            return [], f"{cli} report failed: {p.stderr.strip() or p.stdout.strip()}"
        note = f"no dashboard: {first[0]}"
    files = sorted(f for f in _os.listdir(output_dir) if f.endswith((".png", ".svg", ".html")))
    return [_os.path.join(output_dir, f) for f in files], note


def _drawn_by_report(name):
    def method(self, *args, **kwargs):
        raise NotImplementedError(
            f"PyTorchNeuronGroupVisualizer.{name}: NeuronMap draws from a run file, not from in-memory "
            "dicts: use create_pytorch_neuron_group_analysis(..., pictures=True) or "
            "`neuronmap report RUN.h5 --out DIR` (heatmaps, scatter plots, pytorch_interactive_dashboard.html)")
    method.__name__ = name
    return method


PyTorchNeuronGroupVisualizer.visualize_pytorch_groups = _drawn_by_report("visualize_pytorch_groups")
PyTorchNeuronGroupVisualizer.create_pytorch_interactive_dashboard = _drawn_by_report(
    "create_pytorch_interactive_dashboard")


def _finite_or_none(x):
    """JSON has no NaN: a number the report cannot state becomes null."""
    return round(float(x), 6) if _np.isfinite(x) else None


def _report_text(report):
    lines = ["PyTorch neuron group analysis (NeuronMap)", ""]
    meta = report["pytorch_analysis"]
    lines.append(f"device: {meta['device']}  torch: {meta['torch_version']}  layers: {meta['total_layers']}  "
                 f"at: {meta['analysis_timestamp']}")
    lines.append(f"run file: {report['run_file']}")
    if report.get("pictures_note"):
        lines.append(f"pictures: {report['pictures_note']}")
    for name, layer in report["layer_analysis"].items():
        lines.append("")
        lines.append(f"{name}: {layer['groups_found']} groups, activations {layer['activation_shape']}")
        for g in layer["groups_detail"]:
            loose = " (loose: cohesion below the correlation threshold)" if g["loose"] else ""
            weakest = g["min_member_correlation"]
            weakest = "n/a" if weakest is None else f"{weakest:.3f}"
            lines.append(f"  group {g['group_id']}: {g['size']} neurons, cohesion {g['cohesion']:.3f}, "
                         f"min member r {weakest}{loose}, "
                         f"mean activation {g['mean_activation']:.3f}")
    return "\n".join(lines) + "\n"


def create_pytorch_neuron_group_analysis(model, dataloader, layer_names, output_dir="outputs/pytorch_analysis",
                                         model_epoch=None, max_batches=None, method="correlation_clustering",
                                         correlation_threshold=0.6, min_group_size=3, n_groups=None,
                                         device="auto", pictures=True):
    """The original tool's one-call analysis: one pass over the dataloader (no gradients) captures the
    layers' outputs, groups their neurons with the engine, and writes into output_dir:
    run.h5 (a NeuronMap run with one snapshot at `model_epoch`, default 1),
    pytorch_neuron_group_analysis_report.json and .txt, and (pictures=True, when the `neuronmap`
    executable is found) the heatmaps, scatter plots and dashboard of `neuronmap report`. Returns a dict with activations, groups,
    the report and the written paths."""
    from . import Session, Run
    layer_names = list(layer_names)
    _os.makedirs(output_dir, exist_ok=True)
    visualizer = PyTorchNeuronGroupVisualizer(output_dir=output_dir, device=device)
    epoch = int(model_epoch) if model_epoch is not None and int(model_epoch) > 0 else 1
    run_path = _os.path.join(output_dir, "run.h5")
    grouping = dict(method=_METHODS.get(method, method), threshold=float(correlation_threshold),
                    min_group_size=int(min_group_size), n_groups=int(n_groups or 0))
    # The session captures the same forwards as the extraction hooks (every=epoch: this pass is captured).
    session = Session(model, layer_names, every=epoch, file=run_path, overwrite=True, **grouping)
    try:
        for e in range(1, epoch):  # earlier epochs are not captured: only the one snapshot epoch
            session.end_epoch(e)
        activations = visualizer.extract_activations_from_model(model, dataloader, layer_names, max_batches)
        session.end_epoch(epoch)
    finally:
        session.close()
    if session.last_error():
        raise _core.Error(f"the run file could not be written: {session.last_error()}")

    groups = {name: visualizer.identify_neuron_groups_pytorch(
        activations[name], name, method=method, correlation_threshold=correlation_threshold,
        min_group_size=min_group_size, n_groups=n_groups) for name in layer_names}

    run = Run(run_path)
    snapshot = run[len(run) - 1]
    events = list(snapshot.events)
    skills = {}
    for ev in events:
        if ev.skill_category:
            skills[ev.skill_category] = skills.get(ev.skill_category, 0) + 1
    report = {
        "pytorch_analysis": {
            "device": visualizer.device,
            "torch_version": _torch.__version__,
            "neuronmap_version": _core.__version__,
            "total_layers": len(layer_names),
            "analysis_timestamp": _datetime.datetime.now().isoformat(),
            "model_epoch": epoch,
        },
        "layer_analysis": {
            name: {
                "groups_found": len(groups[name]),
                "activation_shape": list(activations[name].shape),
                "groups_detail": [{"group_id": g.group_id, "size": g.group_size,
                                   "cohesion": round(g.cohesion_score, 6),
                                   "min_member_correlation": _finite_or_none(g.min_member_correlation),
                                   "loose": g.loose,
                                   "mean_activation": round(g.mean_activation, 6),
                                   "neuron_indices": g.neuron_indices} for g in groups[name]],
            } for name in layer_names
        },
        "learning_patterns": {
            "total_events": len(events),
            "skill_distribution": skills,
            "average_strength": (sum(ev.strength for ev in events) / len(events)) if events else 0.0,
        },
        "run_file": run_path,
    }
    picture_files, why_not = _pictures(run_path, output_dir) if pictures else ([], None)
    if why_not:
        import warnings
        warnings.warn(f"neuronmap: pictures: {why_not}")
        report["pictures_note"] = f"{why_not}; `neuronmap report {run_path} --out DIR` draws them"
    # Written after `neuronmap report` (which writes its own run-level reports under the same names).
    json_path = _os.path.join(output_dir, "pytorch_neuron_group_analysis_report.json")
    txt_path = _os.path.join(output_dir, "pytorch_neuron_group_analysis_report.txt")
    with open(json_path, "w") as f:
        _json.dump(report, f, indent=2)
    with open(txt_path, "w") as f:
        f.write(_report_text(report))
    return {"activations": activations, "groups": groups, "report": report, "run": run,
            "files": {"run": run_path, "json_report": json_path, "text_report": txt_path,
                      "pictures": picture_files}}
