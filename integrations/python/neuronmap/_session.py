"""The PyTorch half of neuronmap: Session (forward hooks feeding the C++ engine), attach, Run.
Imported on first use of one of its names (neuronmap.attach, ...): `import neuronmap` alone needs no torch."""
import math as _math

import torch as _torch  # must come before _core: it loads the LibTorch that _core shares
from torch import nn as _nn

from . import _core
from ._analysis import Error, FileError, LayerNotFound, UsageError  # noqa: F401

# Modules whose output is [B, C, spatial...] (channels first); the others are [B, F] or [B, T, F].
_CHANNELS_FIRST = (
    _nn.modules.conv._ConvNd,
    _nn.modules.batchnorm._BatchNorm,
    _nn.modules.instancenorm._InstanceNorm,
    _nn.GroupNorm,
    _nn.LocalResponseNorm,
    _nn.modules.pooling._MaxPoolNd,
    _nn.modules.pooling._AvgPoolNd,
    _nn.modules.pooling._AdaptiveMaxPoolNd,
    _nn.modules.pooling._AdaptiveAvgPoolNd,
    _nn.Dropout2d,
    _nn.Dropout3d,
)


def _is_attention(module):
    return isinstance(module, _nn.MultiheadAttention)


def _type_name(module):
    t = type(module)
    return f"{t.__module__}.{t.__qualname__}"


def _layouts(model, names, overrides):
    """features_last or channels_first per probed name. A parameter-free module (ReLU, Dropout, ...)
    takes the layout of the sibling just before it in its parent (it runs on that one's output)."""
    modules = dict(model.named_modules())
    order = list(modules)

    def layout_of(name):
        if name in overrides:
            return overrides[name]
        module = modules[name]
        if _is_attention(module):
            return "attention_heads"
        if isinstance(module, _CHANNELS_FIRST):
            return "channels_first"
        has_params = any(True for _ in module.parameters(recurse=False))
        if not has_params and not list(module.children()):
            parent = name.rpartition(".")[0]
            siblings = [n for n in order if n and n.rpartition(".")[0] == parent]
            i = siblings.index(name)
            if i > 0:
                return layout_of(siblings[i - 1])
        return "features_last"

    out = []
    for name in names:
        layout = layout_of(name)
        if layout not in ("features_last", "channels_first", "attention_heads"):
            raise UsageError(f"layouts['{name}']='{layout}': use 'features_last' or 'channels_first'")
        if (layout == "attention_heads") != _is_attention(modules[name]):
            raise UsageError(f"layouts['{name}']='{layout}': 'attention_heads' is the layout of "
                             "nn.MultiheadAttention, and only of it")
        out.append(layout)
    return out


def _device_of(model):
    for p in model.parameters():
        return str(p.device)
    for b in model.buffers():
        return str(b.device)
    return "cpu"


def _first_tensor(output):
    """What a forward hook sees -> the tensor to analyse (LSTM/GRU/attention: element 0)."""
    while isinstance(output, (tuple, list)) and output:
        output = output[0]
    return output if isinstance(output, _torch.Tensor) else None


class Session:
    """Probes on named submodules of an eager nn.Module, feeding NeuronMap's C++ engine.

    Use neuronmap.attach(). Options (keyword arguments) are the C++ Options': every, file, overwrite,
    queue_capacity, overflow ('block'|'drop_newest'), workers, analysis_threads, max_batches,
    spatial ('mean'|'max'), sequence ('per_token'|'mean_over_time'), reservoir_size, seed, tag_names,
    gradients, store_correlation, method ('correlation'|'kmeans'|'hierarchical'|'components'), threshold,
    min_group_size, n_groups, n_init, grouping_seed; plus layouts={name: 'features_last'|'channels_first'}.
    """

    def __init__(self, model, layers, every=5, file="outputs/run.h5", layouts=None, **options):
        if not isinstance(model, _nn.Module):
            raise UsageError(f"attach: expected a torch.nn.Module, got {type(model).__name__}")
        if isinstance(layers, str):
            layers = [layers]
        layers = list(layers)
        if not layers:
            raise UsageError("attach: no layers given")
        if len(set(layers)) != len(layers):
            raise UsageError(f"attach: a layer is named twice in {layers}")
        valid = [n for n, _ in model.named_modules() if n]
        missing = [n for n in layers if n not in valid]
        if missing:
            raise LayerNotFound(
                f"no submodule named {', '.join(repr(n) for n in missing)} in {type(model).__name__}; "
                f"valid names: {', '.join(valid) if valid else '(the model has no submodules)'}")
        if isinstance(model, _torch.jit.ScriptModule):
            raise UsageError("attach: Python forward hooks do not run on ScriptModules; use the C++ "
                             "neuronmap::attach(torch::jit::Module&) or attach to the eager model")
        modules = [model.get_submodule(n) for n in layers]
        options = dict(options, every=every, file=str(file))
        self._gradients = bool(options.get("gradients", False))
        self._model = model
        self._core = _core.Session(layers, [_type_name(m) for m in modules],
                                   _layouts(model, layers, dict(layouts or {})), _device_of(model), options)
        self._handles = []
        try:
            for i, module in enumerate(modules):
                if _is_attention(module):
                    self._handles.extend(self._attention_hooks(i, module))
                else:
                    self._handles.append(module.register_forward_hook(self._hook(i)))
        except BaseException:
            self.close()
            raise

    def _hook(self, index):
        core = self._core
        gradients = self._gradients

        def hook(module, inputs, output):
            if not core.capturing:
                return
            t = _first_tensor(output)
            if t is None:
                return
            core.capture(index, t)
            if gradients and t.requires_grad:
                a = t.detach()
                t.register_hook(lambda g: core.capture_gradient(index, a, g))

        return hook

    def _attention_hooks(self, index, module):
        """Per-head weights [B, H, T, S] of an nn.MultiheadAttention, whatever need_weights and
        average_attn_weights its caller passes: the softmax its forward computes (before dropout),
        taken between these two hooks. Its fused inference fast path keeps the weights inside one
        kernel: counted in counters()['attention_fused'] and said by last_error(), never as zeros."""
        core = self._core
        heads = module.num_heads

        def begin(mod, inputs):
            if core.capturing:
                core.attention_begin(index, heads)

        def end(mod, inputs, output):
            core.attention_end()

        return [module.register_forward_pre_hook(begin), module.register_forward_hook(end)]

    def end_epoch(self, epoch, loss=float("nan")):
        """Call once after each epoch (epochs strictly increasing); snapshots at multiples of `every`."""
        if isinstance(loss, _torch.Tensor):
            loss = loss.item()
        self._core.end_epoch(int(epoch), float(loss) if loss is not None else _math.nan)

    def observe(self, per_sample_loss=None, tags=None):
        """Per-sample loss (e.g. cross_entropy(..., reduction='none')) and tags of the last forward."""
        if per_sample_loss is None:
            per_sample_loss = _torch.empty(0)
        elif not isinstance(per_sample_loss, _torch.Tensor):  # a list or numpy array
            per_sample_loss = _torch.as_tensor(per_sample_loss, dtype=_torch.float32)
        self._core.observe(per_sample_loss.detach(), [int(t) for t in (tags or [])])

    def set_reference(self, reference):
        """A fixed reference batch (a tensor, run as model(x)) or a function running the model on one.
        Runs once per snapshot without gradients; its outputs give the CKA between snapshots."""
        if isinstance(reference, _torch.Tensor):
            x, model = reference, self._model
            self._core.set_reference(lambda: model(x))
        elif callable(reference):
            self._core.set_reference(reference)
        else:
            raise UsageError("set_reference: give a tensor or a function")

    def flush(self):
        """Blocks until every requested snapshot is written."""
        self._core.flush()

    def close(self):
        """Removes the hooks, drains the queue, writes what is pending, closes the file. Idempotent."""
        for h in getattr(self, "_handles", []):
            h.remove()
        self._handles = []
        if hasattr(self, "_core") and not self._core.closed:
            self._core.close()

    @property
    def closed(self):
        return self._core.closed

    @property
    def capturing(self):
        return self._core.capturing

    @property
    def layers(self):
        return self._core.layers()

    @property
    def file(self):
        return self._core.file()

    def counters(self):
        return self._core.counters()

    def snapshots_written(self):
        return self._core.snapshots_written()

    def last_error(self):
        return self._core.last_error()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def attach(model, layers, every=5, file="outputs/run.h5", **options):
    """Attaches NeuronMap to the named submodules of an eager model (names as model.named_modules()
    gives them). Returns a Session (also a context manager). Raises LayerNotFound listing valid names."""
    return Session(model, layers, every=every, file=file, **options)


class Run:
    """A run file opened for reading (also while a training process still appends to it)."""

    def __init__(self, path):
        self.path = str(path)
        self._core = _core.Run.open(self.path)

    @property
    def info(self):
        return self._core.info

    @property
    def layers(self):
        return [layer["name"] for layer in self._core.info["layers"]]

    def __len__(self):
        return len(self._core)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._core.snapshot(i) for i in range(*index.indices(len(self)))]
        return self._core.snapshot(int(index))

    def __iter__(self):
        for i in range(len(self)):
            yield self._core.snapshot(i)

    @property
    def snapshots(self):
        """Every committed snapshot, oldest first (each: epoch, loss, layers, groups, statistics)."""
        return list(self)

    def refresh(self):
        """Re-reads the commit record; returns the number of snapshots."""
        return self._core.refresh()

    def close(self):
        self._core = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        return f"<neuronmap.Run '{self.path}': {len(self)} snapshots, layers {self.layers}>"


def open(path):  # noqa: A001 - the package's name for "read a run file"
    """Opens a run file: neuronmap.open('run.h5').snapshots -> [Snapshot]."""
    return Run(path)


