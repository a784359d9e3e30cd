#!/usr/bin/env python3
"""Cost of the Python path: the same eager model's training step plain, attached during a captured
epoch, and attached during an uncaptured epoch (hooks installed, capture off). The variants run in
blocks of 50 steps (past the queue's 64 batches), the order rotating every round, in one run; after a
captured block the workers finish its batches (untimed), so that their work does not land in another
variant's steps; medians.

    PYTHONPATH=build/python /usr/bin/python3 bench/python/bench_python_overhead.py [--steps 150] [--model mlp|cnn]
"""
import argparse
import os
import statistics
import tempfile
import time

import torch
from torch import nn

import neuronmap


def mlp():
    return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)), \
        ["0", "2", "4"], (128, 784)


def cnn():
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10)), \
        ["0", "3", "7"], (128, 1, 28, 28)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=150, help="timed steps per variant (blocks of 50)")
    ap.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    build = {"mlp": mlp, "cnn": cnn}[args.model]
    models = {}
    for variant in ("plain", "captured", "uncaptured"):
        model, layers, shape = build()
        models[variant] = (model, torch.optim.SGD(model.parameters(), lr=0.01))
    x = torch.randn(*shape)
    y = torch.randint(0, 10, (shape[0],))

    tmp = tempfile.mkdtemp()
    # every=1: epoch 1 is captured. every=1000: epoch 1 is not (hooks run, capture is off).
    sessions = {"captured": neuronmap.attach(models["captured"][0], layers, every=1,
                                             file=os.path.join(tmp, "c.h5")),
                "uncaptured": neuronmap.attach(models["uncaptured"][0], layers, every=1000,
                                               file=os.path.join(tmp, "u.h5"))}
    assert sessions["captured"].capturing and not sessions["uncaptured"].capturing

    def step(variant):
        model, opt = models[variant]
        t0 = time.perf_counter()
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    for v in models:  # warm-up
        for _ in range(5):
            step(v)
    
    def drain():
        # Untimed: wait until the captured session's workers have every batch, so that its work does
        # not run into the next variant's timed steps.
        c = sessions["captured"].counters()
        while c["rows"] + c["nonfinite_rows"] < c["captured_batches"] * shape[0]:
            time.sleep(0.001)
            c = sessions["captured"].counters()

    drain()  # the warm-up's batches
    times = {v: [] for v in models}
    order = list(models)
    # Steps per variant in a row, the order rotating every round: long enough (the queue holds 64
    # batches, 21 steps of 3 layers) that a worker slower than the steps fills it and the captured
    # steps pay for that, as in a real epoch.
    block = 50
    for i in range(max(1, args.steps // block)):
        for v in order[i % 3:] + order[:i % 3]:
            for _ in range(block):
                times[v].append(step(v))
            if v == "captured":
                drain()
    for s in sessions.values():
        s.end_epoch(1)
        s.close()
        assert s.last_error() == "", s.last_error()
    med = {v: statistics.median(t) * 1e3 for v, t in times.items()}
    print(f"model {args.model}, batch {shape[0]}, {args.threads} thread(s), {args.steps} steps per variant, medians")
    print(f"plain {med['plain']:.2f} ms | captured {med['captured']:.2f} ms | uncaptured {med['uncaptured']:.2f} ms")
    print(f"captured/plain {med['captured'] / med['plain']:.2f} | uncaptured/plain {med['uncaptured'] / med['plain']:.2f}")


if __name__ == "__main__":
    main()
