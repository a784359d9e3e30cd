"""The original tool's `scripts.standalone_pytorch_demo.StandalonePyTorchVisualizer`, on NeuronMap.

    from neuronmap.standalone import StandalonePyTorchVisualizer

Same methods and defaults as the original's standalone class; the work is done by the engine (the
extraction, grouping, events and reports of neuronmap.compat, the pictures by the C++ renderer).
Groups are PyTorchNeuronGroup (they carry mean_activation like the original's StandaloneNeuronGroup),
events PyTorchLearningEvent. Paths are pathlib.Path, as in the original.
"""
import json as _json
import os as _os
from pathlib import Path

from . import compat as _compat

StandaloneNeuronGroup = _compat.PyTorchNeuronGroup
StandaloneLearningEvent = _compat.PyTorchLearningEvent


class StandalonePyTorchVisualizer:
    def __init__(self, output_dir="demo_outputs/standalone_pytorch", device="auto"):
        self.output_dir = Path(output_dir)
        self._vis = _compat.PyTorchNeuronGroupVisualizer(output_dir=str(self.output_dir), device=device)
        self.device = self._vis.device

    def extract_activations(self, model, dataloader, layer_names, max_batches=None):
        """Layer name -> (n_samples, n_neurons) tensor (eval mode, no gradients, on self.device)."""
        return self._vis.extract_activations_from_model(model, dataloader, layer_names, max_batches)

    def identify_groups(self, activation_tensor, layer_name, threshold=0.4, min_size=2):
        """Correlation clustering by the engine (threshold: the correlation that joins two neurons)."""
        return self._vis.identify_neuron_groups_pytorch(activation_tensor, layer_name,
                                                         method="correlation_clustering",
                                                         correlation_threshold=threshold, min_group_size=min_size)

    def analyze_learning_patterns(self, activations_dict, groups_dict, metadata=None, model_epoch=None,
                                  loss_values=None):
        """Per-sample learning events over every layer and sample (the original's standalone took every
        10th sample of the first layer only; see docs/PYTHON.md)."""
        return self._vis.analyze_pytorch_learning_patterns(activations_dict, groups_dict, metadata, model_epoch,
                                                           loss_values)

    def create_visualizations(self, activations_dict, groups_dict):
        """Pictures of the given groups by the C++ renderer: the all-layers heatmap (group size and cohesion)
        and each layer's activation heatmap, sample scatter and network. Returns their paths (pathlib.Path)."""
        import shutil
        _compat._check_dicts(activations_dict, groups_dict, "create_visualizations")
        names = [n for n in activations_dict if n in groups_dict]
        scratch = self._vis._render(activations_dict, groups_dict, "create_visualizations", layers=names)
        try:
            paths = [self._vis._keep(scratch, "pytorch_all_layers_heatmap.png")]
            for n in names:
                for kind in ("heatmap", "scatter", "network"):
                    f = f"pytorch_groups_{kind}_{_compat._stem(n)}.png"
                    if _os.path.exists(_os.path.join(scratch, f)):
                        paths.append(self._vis._keep(scratch, f))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return [Path(p) for p in paths]

    def generate_report(self, activations_dict, groups_dict, learning_events, model_info=None):
        """standalone_analysis_report.json (the original's name) in output_dir; returns its path."""
        _compat._check_dicts(activations_dict, groups_dict, "generate_report")
        report = _compat._build_report(self.device, activations_dict, groups_dict, learning_events, model_info)
        report["summary"] = dict(report["statistics"], analysis_complete=True)
        path = self.output_dir / "standalone_analysis_report.json"
        with open(path, "w") as f:
            _json.dump(report, f, indent=2)
        return path
