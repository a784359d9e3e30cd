"""Small TorchScript models and their Python forward-hook references for tests/torchscript.

Run with Debian's interpreter and the reference BLAS that the tests pin (see tests/torchscript/CMakeLists.txt):

    LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/blas /usr/bin/python3 tests/data/torchscript/make_models.py

For each model it writes <name>.pt (torch.jit.script or trace of the eager model, saved before any pass)
and <name>_refs.pt, a dict (torch.save) of what eager forward hooks saw in a fixed sequence of passes:
  "input"                         the input tensor
  "protocol"                      PROTOCOL below, as "eval:0,train:1,..." (mode:autograd)
  "pass{k}/{layer}/{call}"        the hook's output (element 0 of a tuple), cloned
  "pass{k}/{layer}/{call}/grad"   its .grad after loss.backward() (retain_grad), in autograd passes
  "pass{k}/__output__"            the model output
Before pass k the generator seeds torch.manual_seed(100 + k); loss = (output ** 2).mean().
"""
import os
import sys

import torch
import torch.nn as nn

OUT = os.path.dirname(os.path.abspath(__file__))
PROTOCOL = [("eval", False), ("eval", False), ("train", True), ("train", True), ("train", True), ("eval", False)]


class Block(nn.Module):
    """Two instances share one TorchScript class type, and so do their submodules."""

    def __init__(self, d):
        super().__init__()
        self.fc = nn.Linear(d, d)
        self.act = nn.ReLU()
        self.norm = nn.LayerNorm(d)

    def forward(self, x):
        return self.norm(self.act(self.fc(x)))


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                      nn.MaxPool2d(2), nn.Dropout(0.25))
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64, 16)
        self.identity = nn.Identity()
        self.blocks = nn.ModuleList([Block(16), Block(16)])
        self.act = nn.ReLU()  # called twice per forward
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        x = self.flatten(self.features(x))
        x = self.identity(self.act(self.fc(x)))
        for block in self.blocks:
            x = block(x)
        return self.head(self.act(x))


class SeqNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.lstm = nn.LSTM(8, 12, batch_first=True)
        self.gru = nn.GRU(12, 10, batch_first=True)
        self.norm = nn.LayerNorm(10)
        self.act = nn.Tanh()
        self.drop = nn.Dropout(0.1)
        self.head = nn.Linear(10, 3)

    def forward(self, tokens):
        h, _ = self.lstm(self.emb(tokens))
        g, _ = self.gru(h)
        y = self.drop(self.act(self.norm(g)))
        return self.head(y.mean(1))


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(10, 8)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(x)))


def hook_outputs(model, names):
    """Registers hooks that clone and retain_grad what each named module returns, per call."""
    seen = {n: [] for n in names}
    modules = dict(model.named_modules())

    def make(name):
        def hook(module, inputs, output):
            out = output[0] if isinstance(output, (tuple, list)) else output
            if out.requires_grad:
                out.retain_grad()
            seen[name].append(out)
        return hook

    handles = [modules[n].register_forward_hook(make(n)) for n in names]
    return seen, handles


def make_case(name, model, x, layers, script=True):
    torch.manual_seed(0)
    scripted = torch.jit.script(model) if script else torch.jit.trace(model, (x,))
    scripted.save(os.path.join(OUT, f"{name}.pt"))
    hook_model = model.module if isinstance(model, nn.DataParallel) else model
    prefix = "module." if isinstance(model, nn.DataParallel) else ""
    refs = {"input": x.clone(), "protocol": ",".join(f"{m}:{int(g)}" for m, g in PROTOCOL)}
    for k, (mode, grad) in enumerate(PROTOCOL):
        model.train(mode == "train")
        seen, handles = hook_outputs(hook_model, [l[len(prefix):] if l.startswith(prefix) else l for l in layers])
        torch.manual_seed(100 + k)
        with torch.set_grad_enabled(grad):
            y = model(x)
            if grad:
                (y ** 2).mean().backward()
        for h in handles:
            h.remove()
        for layer in layers:
            for call, out in enumerate(seen[layer[len(prefix):] if layer.startswith(prefix) else layer]):
                refs[f"pass{k}/{layer}/{call}"] = out.detach().clone()
                if grad and out.grad is not None:
                    refs[f"pass{k}/{layer}/{call}/grad"] = out.grad.clone()
        refs[f"pass{k}/__output__"] = y.detach().clone()
        model.zero_grad(set_to_none=True)
    torch.save(refs, os.path.join(OUT, f"{name}_refs.pt"))
    print(name, "types:", sorted({m.original_name + " " + m._c._type().qualified_name()
                                  for _, m in scripted.named_modules()})[:50])


def main():
    torch.set_num_threads(1)
    torch.manual_seed(1)
    make_case("convnet", ConvNet(), torch.randn(4, 3, 8, 8),
              ["features.0", "features.1", "features.2", "features.3", "features.4", "flatten", "fc", "act",
               "identity", "blocks.0", "blocks.0.fc", "blocks.0.act", "blocks.0.norm", "blocks.1.fc",
               "blocks.1.act", "blocks.1.norm", "head"])
    torch.manual_seed(2)
    make_case("seqnet", SeqNet(), torch.randint(0, 20, (4, 6)),
              ["emb", "lstm", "gru", "norm", "act", "drop", "head"])
    torch.manual_seed(3)
    # Traced through nn.DataParallel (CPU: it just calls the module): names carry "module.".
    make_case("dataparallel", nn.DataParallel(Mlp()), torch.randn(4, 10),
              ["module.fc1", "module.relu", "module.fc2"], script=False)


if __name__ == "__main__":
    sys.exit(main())
