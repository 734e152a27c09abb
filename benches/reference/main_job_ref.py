#!/usr/bin/env python3
"""PyTorch reference for the main job (`nas search` with no arguments): the same 16 NAS-Bench-201
candidates trained the same way, timed end to end, for issue 20's comparison.

What nas-rs does per candidate (nas_search::builder defaults, train::TrainRecipe::default): a
NAS-Bench-201 network with C = 8, N = 1 (one cell per stage) on 1x28x28 images, 10 classes;
2 epochs on the 3,600 training images of the embedded Fashion-MNIST subset
(data/fashion-mnist/train-4k-*) left after holding out 400 for validation, per-channel
normalisation fitted on the training part; SGD with Nesterov momentum 0.9, lr 0.1 cosine-annealed
per step to 0, weight decay 5e-4 on every parameter, batch 64 (shuffled, last partial batch
kept), no augmentation; then validation (400) and test (the 1,000 images of t10k-1k) accuracy in
evaluation mode, batch 250. This script does the same in PyTorch for the 16 architectures a
nas-rs run trained (read from its events.jsonl, in the order it trained them), so both sides
do the same work; the search strategy's own cost (REA's bookkeeping) is negligible beside the
training. The validation split and the initial weights are drawn differently from nas-rs's, so
accuracies agree only within seed noise.

    /tmp/ref/bin/python benches/reference/main_job_ref.py RUN_DIR/events.jsonl [threads]

Written for nas-rs from the NAS-Bench-201 paper's description of its network and recipe.
"""
import gzip
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(seed=0):
    d = os.path.join(ROOT, "data", "fashion-mnist")
    xtr = idx(os.path.join(d, "train-4k-images-idx3-ubyte.gz")).astype(np.float32) / 255
    ytr = idx(os.path.join(d, "train-4k-labels-idx1-ubyte.gz")).astype(np.int64)
    xte = idx(os.path.join(d, "t10k-1k-images-idx3-ubyte.gz")).astype(np.float32) / 255
    yte = idx(os.path.join(d, "t10k-1k-labels-idx1-ubyte.gz")).astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(xtr))
    va, tr = perm[:400], perm[400:]
    mean, std = xtr[tr].mean(), xtr[tr].std()
    t = lambda x: torch.from_numpy((x - mean) / std).unsqueeze(1)  # noqa: E731
    return (t(xtr[tr]), torch.from_numpy(ytr[tr])), (t(xtr[va]), torch.from_numpy(ytr[va])), \
        (t(xte), torch.from_numpy(yte))


def rcb(ci, co, k, s, p):
    return nn.Sequential(nn.ReLU(), nn.Conv2d(ci, co, k, s, p, bias=False), nn.BatchNorm2d(co))


def op(name, c):
    if name == "nor_conv_3x3":
        return rcb(c, c, 3, 1, 1)
    if name == "nor_conv_1x1":
        return rcb(c, c, 1, 1, 0)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, 1, 1, count_include_pad=False)
    if name == "skip_connect":
        return nn.Identity()
    return None  # none


EDGES = [(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)]


class Cell(nn.Module):
    def __init__(self, ops, c):
        super().__init__()
        self.names = ops
        self.layers = nn.ModuleList([op(o, c) or nn.Identity() for o in ops])

    def forward(self, x):
        nodes = [x]
        for t in (1, 2, 3):
            s = None
            for e, (i, j) in enumerate(EDGES):
                if j != t or self.names[e] == "none":
                    continue
                y = self.layers[e](nodes[i])
                s = y if s is None else s + y
            nodes.append(s if s is not None else torch.zeros_like(x))
        return nodes[3]


class Res(nn.Module):
    def __init__(self, ci, co):
        super().__init__()
        self.a = rcb(ci, co, 3, 2, 1)
        self.b = rcb(co, co, 3, 1, 1)
        self.down = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(ci, co, 1, bias=False))

    def forward(self, x):
        return self.down(x) + self.b(self.a(x))


class Net(nn.Module):
    def __init__(self, ops, c=8, n=1, cin=1, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(cin, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        layers, cp = [], c
        for stage in range(3):
            cs = c << stage
            if stage:
                layers.append(Res(cp, cs))
            layers += [Cell(ops, cs) for _ in range(n)]
            cp = cs
        self.cells = nn.Sequential(*layers)
        self.last = nn.Sequential(nn.BatchNorm2d(cp), nn.ReLU())
        self.fc = nn.Linear(cp, classes)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.last(self.cells(self.stem(x))), 1).flatten(1))


def accuracy(net, data):
    net.eval()
    x, y = data
    right = 0
    with torch.no_grad():
        for i in range(0, len(y), 250):
            right += (net(x[i:i + 250]).argmax(1) == y[i:i + 250]).sum().item()
    return 100.0 * right / len(y)


def train(arch, train_set, epochs=2, batch=64, seed=0):
    ops = [tok.split("~")[0] for tok in arch.strip("|").replace("|+|", "|").split("|")]
    torch.manual_seed(seed)
    net = Net(ops)
    opt = torch.optim.SGD(net.parameters(), 0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x, y = train_set
    steps = epochs * math.ceil(len(y) / batch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), batch):
            b = perm[i:i + batch]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x[b]), y[b]).backward()
            opt.step()
            sched.step()
    return net


def main():
    events = sys.argv[1]
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    torch.set_num_threads(threads)
    archs = [e["arch"] for e in map(json.loads, open(events)) if e.get("event") == "trial"]
    t0 = time.perf_counter()
    tr, va, te = load()
    print(f"PyTorch {torch.__version__} threads={torch.get_num_threads()} trials={len(archs)}")
    tests = []
    for i, arch in enumerate(archs):
        t = time.perf_counter()
        net = train(arch, tr, seed=i)
        v, s = accuracy(net, va), accuracy(net, te)
        tests.append(s)
        print(f"trial {i:3d} valid {v:6.2f}% test {s:6.2f}% {time.perf_counter() - t:6.2f}s {arch}",
              flush=True)
    print(f"median test accuracy {sorted(tests)[len(tests) // 2]:.2f}%; "
          f"total {time.perf_counter() - t0:.1f} s wall")


if __name__ == "__main__":
    main()
