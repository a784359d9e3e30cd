"""The original tool's per-sample learning events (PyTorchLearningEvent) and its skill rule, for
neuronmap.compat: the rule runs in C++ (neuronmap._analysis.sample_events), see docs/PYTHON.md."""
from dataclasses import dataclass
from typing import List, Optional

import numpy as _np
import torch as _torch

from . import _analysis, _core
from ._reports import _as_tensor


@dataclass
class PyTorchLearningEvent:
    """The original tool's per-sample learning event (see docs/PYTHON.md, "Learning events").

    One event per (layer, sample) on which at least one group of the layer is activated: the group's
    members' mean activation exceeds the sample's mean + 0.5 x standard deviation over the layer's
    neurons. Not the engine's temporal events (Snapshot.events, docs/LEARNING.md)."""
    event_id: int
    sample_indices: List[int]
    activated_groups: List[int]       # group_id of the activated groups of `layer_name`
    learning_strength: float          # the largest group mean activation on the sample
    skill_type: str                   # metadata 'category', else the keyword rule on 'question', else 'unknown'
    temporal_position: int            # the sample's position in loader order (row of the activation tensor)
    model_epoch: Optional[int] = None
    loss_value: Optional[float] = None
    layer_name: Optional[str] = None  # ours: the layer whose groups fired


# The original tool's keyword rule (question text -> skill type); first match in this order wins.
SKILL_KEYWORDS = (
    ("mathematical", ("math", "calculate", "number", "equation")),
    ("linguistic", ("language", "word", "grammar", "sentence")),
    ("logical", ("logic", "reason", "cause", "effect")),
    ("memory", ("memory", "remember", "recall", "fact")),
)


def infer_skill_type(question):
    """'mathematical' | 'linguistic' | 'logical' | 'memory' | 'general': the first family with a keyword
    contained (case-insensitive substring) in the question's text."""
    text = str(question).lower()
    for skill, words in SKILL_KEYWORDS:
        if any(w in text for w in words):
            return skill
    return "general"


def _skills_from_metadata(question_metadata, n_samples, what="question_metadata"):
    """One skill name per sample (loader order) or None without metadata. Raises on too few rows."""
    if question_metadata is None:
        return None
    if not hasattr(question_metadata, "columns") or not hasattr(question_metadata, "iloc"):
        raise _core.UsageError(f"{what}: expected a pandas DataFrame (one row per sample), got "
                               f"{type(question_metadata).__name__}")
    if len(question_metadata) < n_samples:
        raise _core.UsageError(f"{what} has {len(question_metadata)} rows but the data has {n_samples} samples "
                               "(one row per sample, in loader order)")
    rows = question_metadata.iloc[:n_samples]
    if "category" in question_metadata.columns:
        return [str(c) for c in rows["category"].tolist()]
    if "question" in question_metadata.columns:
        return [infer_skill_type(q) for q in rows["question"].tolist()]
    return ["unknown"] * n_samples


def _check_dicts(activations_dict, groups_dict, what):
    if not isinstance(activations_dict, dict) or not activations_dict:
        raise _core.UsageError(f"{what}: activations_dict is empty (layer name -> (n_samples, n_neurons) tensor)")
    if not isinstance(groups_dict, dict):
        raise _core.UsageError(f"{what}: groups_dict must be a dict layer name -> [PyTorchNeuronGroup]")
    extra = [n for n in groups_dict if n not in activations_dict]
    if extra:
        raise _core.LayerNotFound(f"{what}: groups for {', '.join(map(repr, extra))} but no activations; "
                                  f"layers with activations: {', '.join(activations_dict)}")
    missing = [n for n in activations_dict if n not in groups_dict]
    if len(missing) == len(activations_dict):
        raise _core.UsageError(f"{what}: groups_dict has no groups for any layer ({', '.join(activations_dict)}); "
                               "run identify_neuron_groups_pytorch on each layer first")


def learning_events(activations_dict, groups_dict, question_metadata=None, model_epoch=None, loss_values=None):
    """The original tool's per-sample learning events (PyTorchLearningEvent), computed in C++ per layer.
    Layers without an entry in groups_dict are skipped (as in the original)."""
    _check_dicts(activations_dict, groups_dict, "analyze_pytorch_learning_patterns")
    events = []
    for layer_name, activations in activations_dict.items():
        if layer_name not in groups_dict:
            continue
        x = _as_tensor(activations)
        if x.dim() != 2:
            x = x.reshape(x.shape[0], -1)
        x = _np.ascontiguousarray(x.numpy() if x.dtype in (_torch.float32, _torch.float64) else x.double().numpy())
        n = x.shape[0]
        groups = list(groups_dict[layer_name])
        if n == 0 or not groups:
            continue
        skills = _skills_from_metadata(question_metadata, n)
        losses = None
        if loss_values is not None:
            losses = _np.asarray(loss_values.detach().cpu() if isinstance(loss_values, _torch.Tensor) else loss_values,
                                 dtype=_np.float64).reshape(-1)
            if losses.shape[0] < n:
                raise _core.UsageError(f"loss_values has {losses.shape[0]} values but layer '{layer_name}' has "
                                       f"{n} samples (one loss per sample)")
        for g in groups:
            bad = [i for i in g.neuron_indices if not 0 <= int(i) < x.shape[1]]
            if bad or not g.neuron_indices:
                raise _core.UsageError(f"group {g.group_id} of '{layer_name}': neuron indices {bad or '[]'} outside "
                                       f"0..{x.shape[1] - 1}")
        # The rule runs in C++ (sdk/learning/sample_events.cpp); here only the result objects are built.
        found = _analysis.sample_events(x, [[int(i) for i in g.neuron_indices] for g in groups], 0.5)
        ids = [g.group_id for g in groups]
        for s, activated, strength in zip(found["samples"].tolist(), found["activated"], found["strength"].tolist()):
            events.append(PyTorchLearningEvent(
                event_id=len(events), sample_indices=[s], activated_groups=[ids[k] for k in activated.tolist()],
                learning_strength=float(strength), skill_type=skills[s] if skills else "unknown",
                temporal_position=s, model_epoch=model_epoch,
                loss_value=None if losses is None else float(losses[s]), layer_name=layer_name))
    return events
