"""The original Python tool's entry points, backed by NeuronMap's engine.

    from neuronmap import create_pytorch_neuron_group_analysis
    results = create_pytorch_neuron_group_analysis(model, dataloader, ['fc1', 'fc2'],
                                                   output_dir='outputs/pytorch_analysis')

Activations are captured with forward hooks and reduced to (n_samples, n_neurons) the way the engine
reduces them ([B, C, spatial...] -> spatial mean per channel, [B, T, F] -> one row per token);
groups come from the engine's grouping (the `neuronmap groups` code path), and the analysis also
writes a NeuronMap run file (run.h5) through a session, for `neuronmap report` / `neuronmap inspect`.
"""
import json as _json
import os as _os
from dataclasses import dataclass
from typing import List, Optional

import numpy as _np
import torch as _torch

from . import _core
from ._events import (SKILL_KEYWORDS, PyTorchLearningEvent, _check_dicts, _skills_from_metadata,  # noqa: F401
                      infer_skill_type, learning_events)
from ._cli import _find_cli  # noqa: F401  (tests patch compat._find_cli)
from ._pictures import _keep, _render, _stem
from ._reports import _as_tensor, _build_report, _event_json, _write_report  # noqa: F401

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
    d = str(device)
    if d.startswith("cuda") and not _torch.cuda.is_available():
        raise _core.UsageError(f"device='{d}': this torch ({_torch.__version__}) has no usable CUDA device; "
                               "use device='cpu' or 'auto'")
    if not (d == "cpu" or d.startswith("cuda")):
        raise _core.UsageError(f"device='{d}': use 'auto', 'cpu' or 'cuda'")
    return d


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
    from ._session import _first_tensor
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


class _Prepared:
    """Model in eval mode on `device` inside the block; its training mode and device restored after."""

    def __init__(self, model, device):
        self.model, self.device = model, _torch.device(device)

    def __enter__(self):
        self.was_training = self.model.training
        self.old_device = _model_device(self.model)
        if self.old_device != self.device:
            self.model.to(self.device)
        self.model.eval()
        return self

    def __exit__(self, *exc):
        self.model.train(self.was_training)
        if _model_device(self.model) != self.old_device:
            self.model.to(self.old_device)
        return False


_PICTURE_METHODS = ("heatmap", "scatter", "network")


class PyTorchNeuronGroupVisualizer:
    """The original tool's visualizer class on NeuronMap: extraction, grouping, learning events,
    pictures and dashboard (drawn by the C++ renderer of `neuronmap report`), reports."""

    def __init__(self, output_dir="outputs", device="auto"):
        self.output_dir = str(output_dir)
        self.device = _resolve_device(device)
        self._grouping = {}  # layer -> the engine grouping options identify_neuron_groups_pytorch used
        _os.makedirs(self.output_dir, exist_ok=True)

    def extract_activations_from_model(self, model, dataloader, layer_names, max_batches=None, _on_batch=None):
        """Layer name -> (n_samples, n_neurons) float tensor on the CPU, over the dataloader's batches
        (at most max_batches; None = all). The model runs in eval mode on self.device without gradients;
        its training mode and device are restored after. Unknown layer names raise neuronmap.LayerNotFound,
        an empty dataloader neuronmap.UsageError."""
        from ._session import LayerNotFound, _layouts
        if isinstance(layer_names, str):
            layer_names = [layer_names]
        layer_names = list(layer_names)
        if not layer_names:
            raise _core.UsageError("extract_activations_from_model: no layer names given")
        if max_batches is not None and int(max_batches) < 1:
            raise _core.UsageError(f"max_batches={max_batches}: give a positive number or None (all batches)")
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

        batches = 0
        with _Prepared(model, self.device):
            handles = [model.get_submodule(n).register_forward_hook(make_hook(n)) for n in layer_names]
            device = _model_device(model)
            try:
                with _torch.no_grad():
                    for i, batch in enumerate(dataloader):
                        if max_batches is not None and i >= max_batches:
                            break
                        x = _batch_input(batch)
                        out = model(x.to(device) if isinstance(x, _torch.Tensor) else x)
                        batches += 1
                        if _on_batch is not None:
                            _on_batch(batch, x, out)
            finally:
                for h in handles:
                    h.remove()
        if batches == 0:
            raise _core.UsageError("extract_activations_from_model: the dataloader yielded no batches")
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
        x = _as_tensor(activation_tensor)
        if x.dim() != 2:
            x = x.reshape(x.shape[0], -1)
        if x.shape[0] < 2 or x.shape[1] < 1:
            raise _core.UsageError(f"identify_neuron_groups_pytorch('{layer_name}'): activations of shape "
                                   f"{tuple(x.shape)}; need at least 2 samples and 1 neuron")
        r = group_activations(x, method=_METHODS[method], threshold=correlation_threshold,
                              min_group_size=min_group_size, n_groups=n_groups, n_init=n_init, seed=seed)
        self._grouping[layer_name] = dict(method=_METHODS[method], threshold=float(correlation_threshold),
                                          min_group_size=int(min_group_size), n_groups=int(n_groups or 0),
                                          n_init=int(n_init), grouping_seed=int(seed))
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

    def analyze_pytorch_learning_patterns(self, activations_dict, groups_dict, question_metadata=None,
                                          model_epoch=None, loss_values=None):
        """The original's per-sample learning events (list of PyTorchLearningEvent); see docs/PYTHON.md."""
        return learning_events(activations_dict, groups_dict, question_metadata, model_epoch, loss_values)

    # Pictures: the given activations and groups drawn by the report code of `neuronmap report` (_pictures.py).

    def _render(self, activations_dict, groups_dict, what, layers=None, skills=None, dashboard=False):
        """The pictures (and the dashboard) of the given groups into a scratch folder in output_dir."""
        return _render(self.output_dir, activations_dict, groups_dict, what, layers=layers, skills=skills,
                       dashboard=dashboard, device=self.device, threshold=self._threshold_for(layers))

    def _threshold_for(self, names):
        used = [self._grouping[n]["threshold"] for n in (names or []) if n in self._grouping]
        return used[0] if used else 0.6

    def _keep(self, scratch, name):
        return _keep(scratch, self.output_dir, name)

    def visualize_pytorch_groups(self, activations_dict, groups_dict, method="heatmap", layer_name=None):
        """One picture of the given groups by the C++ renderer; returns its path in output_dir.
        heatmap: pytorch_groups_heatmap_<layer>.png (activations, samples x neurons, neurons ordered by group,
        a group colour bar above), without layer_name pytorch_all_layers_heatmap.png (per layer, group size
        and cohesion); scatter: pytorch_groups_scatter_<layer>.png (samples in the PCA of activations,
        coloured by their most active group, group centres marked); network: pytorch_groups_network_<layer>.png
        (the grouped neurons joined by |r| >= 0.5). scatter and network without layer_name write every
        layer's picture and return the first one's path."""
        import shutil
        if method not in _PICTURE_METHODS:
            raise _core.UsageError(f"visualize_pytorch_groups: method='{method}': use 'heatmap', 'scatter' "
                                   "or 'network'")
        _check_dicts(activations_dict, groups_dict, "visualize_pytorch_groups")
        if layer_name is not None and (layer_name not in activations_dict or layer_name not in groups_dict):
            raise _core.LayerNotFound(f"visualize_pytorch_groups: layer_name='{layer_name}' has no activations "
                                      f"and groups; layers: {', '.join(n for n in activations_dict if n in groups_dict)}")
        names = [layer_name] if layer_name else [n for n in activations_dict if n in groups_dict]
        scratch = self._render(activations_dict, groups_dict, "visualize_pytorch_groups", layers=names)
        try:
            if method == "heatmap" and layer_name is None:
                return self._keep(scratch, "pytorch_all_layers_heatmap.png")
            kept = [self._keep(scratch, f"pytorch_groups_{method}_{_stem(n)}.png") for n in names]
            return kept[0]
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def create_pytorch_interactive_dashboard(self, activations_dict, groups_dict, learning_events, metadata=None):
        """pytorch_interactive_dashboard.html of the given groups by the C++ renderer (needs ECharts at build
        time), with the samples tagged by `metadata` (as question_metadata); the learning events go next to it
        into pytorch_learning_events.json."""
        import shutil
        _check_dicts(activations_dict, groups_dict, "create_pytorch_interactive_dashboard")
        names = [n for n in activations_dict if n in groups_dict]
        rows = {_as_tensor(activations_dict[n]).shape[0] for n in names}
        skills = _skills_from_metadata(metadata, max(rows)) if metadata is not None else None
        scratch = self._render(activations_dict, groups_dict, "create_pytorch_interactive_dashboard",
                                  layers=names, skills=skills, dashboard=True)
        try:
            path = self._keep(scratch, "pytorch_interactive_dashboard.html")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        with open(_os.path.join(self.output_dir, "pytorch_learning_events.json"), "w") as f:
            _json.dump([_event_json(e) for e in (learning_events or [])], f, indent=1)
        return path

    def generate_pytorch_report(self, activations_dict, groups_dict, learning_events, model_info=None,
                                output_format="json"):
        """pytorch_neuron_group_analysis_report.json or .txt in output_dir; returns its path."""
        if output_format not in ("json", "text"):
            raise _core.UsageError(f"generate_pytorch_report: output_format='{output_format}': use 'json' or 'text'")
        _check_dicts(activations_dict, groups_dict, "generate_pytorch_report")
        report = _build_report(self.device, activations_dict, groups_dict, learning_events, model_info)
        return _write_report(report, self.output_dir, output_format)


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


def create_pytorch_neuron_group_analysis(model, dataloader, layer_names, question_metadata=None,
                                         output_dir="outputs/pytorch_analysis", device="auto", max_batches=None,
                                         model_epoch=None, model_info=None, *, method="correlation_clustering",
                                         correlation_threshold=0.6, min_group_size=3, n_groups=None,
                                         pictures=True, loss_fn=None):
    """The original tool's one-call analysis (same positional order). One pass over the dataloader (eval
    mode, no gradients, on `device`) captures the layers' outputs; the engine groups their neurons; the
    per-sample learning events are computed; output_dir gets run.h5 (a NeuronMap run, one snapshot at
    `model_epoch`, default 1, samples tagged by question_metadata), the JSON and text reports and
    (pictures=True, when the `neuronmap` executable is found) the pictures and dashboard of `neuronmap report`.

    Ours, keyword-only: method, correlation_threshold, min_group_size, n_groups (the grouping), pictures,
    loss_fn(output, target) -> per-sample losses (the events' loss_value and the run's loss correlations).
    Returns the original's keys (activations, neuron_groups, learning_events, visualizations, dashboard,
    report, summary) plus ours (groups, engine_groups, run, run_file, text_report, report_data, files)."""
    from ._session import Run, Session
    if isinstance(layer_names, str):
        layer_names = [layer_names]
    layer_names = list(layer_names)
    if method not in _METHODS:
        raise _core.UsageError(f"method='{method}': use 'correlation_clustering', 'kmeans', 'hierarchical' "
                               "or 'components'")
    _os.makedirs(output_dir, exist_ok=True)
    visualizer = PyTorchNeuronGroupVisualizer(output_dir=output_dir, device=device)
    epoch = int(model_epoch) if model_epoch is not None and int(model_epoch) > 0 else 1
    run_path = _os.path.join(output_dir, "run.h5")
    grouping = dict(method=_METHODS[method], threshold=float(correlation_threshold),
                    min_group_size=int(min_group_size), n_groups=int(n_groups or 0))
    skills_all = None
    tag_names = []
    if question_metadata is not None:
        _skills_from_metadata(question_metadata, 0)  # type check now; the length once the rows are known
        skills_all = _skills_from_metadata(question_metadata, len(question_metadata))
        tag_names = sorted(set(skills_all))
    losses = []
    seen = [0]

    def on_batch(batch, x, out):
        n = x.shape[0] if isinstance(x, _torch.Tensor) and x.dim() > 0 else 0
        lo, hi = seen[0], seen[0] + n
        seen[0] = hi
        loss = None
        if loss_fn is not None:
            target = batch[1] if isinstance(batch, (tuple, list)) and len(batch) > 1 else None
            loss = _torch.as_tensor(loss_fn(out, target.to(out.device) if isinstance(target, _torch.Tensor)
                                            else target)).detach().float().reshape(-1).cpu()
            losses.append(loss)
        tags = None
        if skills_all is not None:
            if hi > len(skills_all):
                raise _core.UsageError(f"question_metadata has {len(skills_all)} rows but the dataloader gave "
                                       f"at least {hi} samples (one row per sample, in loader order)")
            tags = [tag_names.index(s) for s in skills_all[lo:hi]]
        if loss is not None or tags is not None:
            session.observe(per_sample_loss=loss, tags=tags)

    with _Prepared(model, visualizer.device):
        # The session captures the same forwards as the extraction hooks (every=epoch: this pass is captured).
        session = Session(model, layer_names, every=epoch, file=run_path, overwrite=True, tag_names=tag_names,
                          **grouping)
        try:
            for e in range(1, epoch):  # earlier epochs are not captured: only the one snapshot epoch
                session.end_epoch(e)
            activations = visualizer.extract_activations_from_model(model, dataloader, layer_names, max_batches,
                                                                    _on_batch=on_batch)
            session.end_epoch(epoch, _torch.cat(losses).mean().item() if losses else float("nan"))
        finally:
            session.close()
    if session.last_error():
        raise _core.Error(f"the run file could not be written: {session.last_error()}")

    groups = {name: visualizer.identify_neuron_groups_pytorch(
        activations[name], name, method=method, correlation_threshold=correlation_threshold,
        min_group_size=min_group_size, n_groups=n_groups) for name in layer_names}
    loss_values = _torch.cat(losses) if losses else None
    events = learning_events(activations, groups, question_metadata, model_epoch, loss_values)

    run = Run(run_path)
    snapshot = run[len(run) - 1]
    temporal = list(snapshot.events)
    temporal_skills = {}
    for ev in temporal:
        if ev.skill_category:
            temporal_skills[ev.skill_category] = temporal_skills.get(ev.skill_category, 0) + 1
    picture_files, why_not = _pictures(run_path, output_dir) if pictures else ([], None)
    extra = {"model_epoch": epoch, "run_file": run_path,
             "temporal_events": {"total_events": len(temporal), "skill_distribution": temporal_skills,
                                 "average_strength": (sum(ev.strength for ev in temporal) / len(temporal))
                                 if temporal else 0.0}}
    if why_not:
        import warnings
        warnings.warn(f"neuronmap: pictures: {why_not}")
        extra["pictures_note"] = f"{why_not}; `neuronmap report {run_path} --out DIR` draws them"
    report = _build_report(visualizer.device, activations, groups, events, model_info, **extra)
    # Written after `neuronmap report` (which writes its own run-level reports under the same names).
    json_path = _write_report(report, output_dir, "json")
    txt_path = _write_report(report, output_dir, "text")

    visualizations = {}
    by_name = {_os.path.basename(p): p for p in picture_files}
    if "pytorch_all_layers_heatmap.png" in by_name:
        visualizations["multi_layer"] = by_name["pytorch_all_layers_heatmap.png"]
    for name in layer_names:
        for kind in ("scatter", "heatmap", "network"):
            f = f"pytorch_groups_{kind}_{_stem(name)}.png"
            if f in by_name:
                visualizations[f"{name}_{kind}"] = by_name[f]
    for f, p in by_name.items():
        if f.endswith(".png") and p not in visualizations.values():
            visualizations[f[:-4]] = p
    dashboard = by_name.get("pytorch_interactive_dashboard.html")
    engine_groups = {name: list(snapshot.layer(name).groups) for name in layer_names}
    return {
        "activations": activations,
        "neuron_groups": groups,
        "learning_events": events,
        "visualizations": visualizations,
        "dashboard": dashboard,
        "report": json_path,
        "summary": {
            "total_layers": len(activations),
            "total_groups": sum(len(g) for g in groups.values()),
            "total_learning_events": len(events),
            "device_used": visualizer.device,
            "analysis_complete": True,
        },
        # ours
        "groups": groups,
        "engine_groups": engine_groups,
        "run": run,
        "run_file": run_path,
        "text_report": txt_path,
        "report_data": report,
        "files": {"run": run_path, "json_report": json_path, "text_report": txt_path,
                  "pictures": picture_files},
    }
