"""Reports and pictures of the original tool's API (neuronmap.compat): the report dict, its JSON and
text files, and the pictures that `neuronmap report` (the C++ renderer) draws from a run file."""
import datetime as _datetime
import json as _json
import os as _os

import numpy as _np
import torch as _torch

from . import _core


def _as_tensor(x):
    if isinstance(x, _torch.Tensor):
        return x.detach().cpu()
    return _torch.as_tensor(_np.asarray(x))


def _event_json(e):
    return {"event_id": e.event_id, "layer_name": e.layer_name, "sample_indices": list(e.sample_indices),
            "activated_groups": list(e.activated_groups), "learning_strength": round(e.learning_strength, 6),
            "skill_type": e.skill_type, "temporal_position": e.temporal_position, "model_epoch": e.model_epoch,
            "loss_value": e.loss_value}


def _finite_or_none(x):
    """JSON has no NaN: a number the report cannot state becomes null."""
    return round(float(x), 6) if _np.isfinite(x) else None


def _build_report(device, activations, groups, events, model_info=None, **extra):
    events = list(events or [])
    skills = {}
    for ev in events:
        skills[ev.skill_type] = skills.get(ev.skill_type, 0) + 1
    losses = [ev.loss_value for ev in events if ev.loss_value is not None and _np.isfinite(ev.loss_value)]
    epochs = sorted({ev.model_epoch for ev in events if ev.model_epoch is not None})
    names = [n for n in activations if n in groups]
    total_groups = sum(len(groups[n]) for n in names)
    in_groups = sum(g.group_size for n in names for g in groups[n])
    report = {
        "pytorch_analysis": {
            "device": device,
            "torch_version": _torch.__version__,
            "neuronmap_version": _core.__version__,
            "total_layers": len(activations),
            "analysis_timestamp": _datetime.datetime.now().isoformat(),
        },
        "model_info": dict(model_info or {}),
        "layer_analysis": {
            name: {
                "groups_found": len(groups[name]),
                "activation_shape": list(_as_tensor(activations[name]).shape),
                "groups_detail": [{"group_id": g.group_id, "size": g.group_size,
                                   "cohesion": round(g.cohesion_score, 6),
                                   "min_member_correlation": _finite_or_none(g.min_member_correlation),
                                   "loose": g.loose,
                                   "mean_activation": round(g.mean_activation, 6),
                                   "neuron_indices": g.neuron_indices} for g in groups[name]],
            } for name in names
        },
        "learning_patterns": {
            "total_events": len(events),
            "skill_distribution": skills,
            "average_strength": (sum(ev.learning_strength for ev in events) / len(events)) if events else 0.0,
            "epoch_analysis": {"epoch_range": [epochs[0], epochs[-1]], "total_epochs": len(epochs)} if epochs else {},
            "loss_analysis": {"mean_loss": float(_np.mean(losses)), "min_loss": float(min(losses)),
                              "max_loss": float(max(losses))} if losses else {},
        },
        "statistics": {
            "total_groups": total_groups,
            "total_neurons_in_groups": in_groups,
            "average_group_size": in_groups / total_groups if total_groups else 0,
            "layers_analyzed": len(names),
            "device_used": device,
        },
    }
    report["pytorch_analysis"].update({k: v for k, v in extra.items() if k == "model_epoch"})
    report.update({k: v for k, v in extra.items() if k != "model_epoch"})
    return report


def _report_text(report):
    lines = ["PyTorch neuron group analysis (NeuronMap)", ""]
    meta = report["pytorch_analysis"]
    lines.append(f"device: {meta['device']}  torch: {meta['torch_version']}  layers: {meta['total_layers']}  "
                 f"at: {meta['analysis_timestamp']}")
    if report.get("run_file"):
        lines.append(f"run file: {report['run_file']}")
    if report.get("pictures_note"):
        lines.append(f"pictures: {report['pictures_note']}")
    if report.get("model_info"):
        lines += ["", "MODEL INFORMATION"]
        lines += [f"  {k}: {v}" for k, v in report["model_info"].items()]
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
    lp = report["learning_patterns"]
    lines += ["", "LEARNING PATTERNS (per-sample events, docs/PYTHON.md)",
              f"  total events: {lp['total_events']}  average strength: {lp['average_strength']:.3f}"]
    lines += [f"  {k}: {v}" for k, v in sorted(lp["skill_distribution"].items())]
    if lp.get("loss_analysis"):
        la = lp["loss_analysis"]
        lines.append(f"  loss: mean {la['mean_loss']:.4f}, range {la['min_loss']:.4f} - {la['max_loss']:.4f}")
    if "temporal_events" in report:
        te = report["temporal_events"]
        lines += ["", f"TEMPORAL EVENTS (engine, docs/LEARNING.md): {te['total_events']}"]
    st = report["statistics"]
    lines += ["", "STATISTICS", f"  total groups: {st['total_groups']}  neurons in groups: "
              f"{st['total_neurons_in_groups']}  layers analysed: {st['layers_analyzed']}  device: {st['device_used']}"]
    return "\n".join(lines) + "\n"


def _write_report(report, output_dir, output_format):
    if output_format == "json":
        path = _os.path.join(output_dir, "pytorch_neuron_group_analysis_report.json")
        with open(path, "w") as f:
            _json.dump(report, f, indent=2)
    else:
        path = _os.path.join(output_dir, "pytorch_neuron_group_analysis_report.txt")
        with open(path, "w") as f:
            f.write(_report_text(report))
    return path
