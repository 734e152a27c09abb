"""PyTorch CPU reference timings for benches/benches/nb201_net.rs.

The NAS-Bench-201 CIFAR-10 network (C = 16, N = 5 cells per stage, 10 classes) with all six
cell edges nor_conv_3x3 (ReLU, conv 3x3 without bias, affine BN), written here from the
benchmark's definition: stem conv3x3 + BN; 5 cells; ResNet basic block (ReLU-conv-BN stride 2,
ReLU-conv-BN, shortcut avg-pool 2x2 + conv1x1); 5 cells; basic block; 5 cells; BN, ReLU,
global average pool, linear. Batch 64 of 3x32x32.

Times at each thread count, in contiguous NCHW and channels_last:
  fwd_bwd   forward, cross-entropy, backward
  sgd_step  the same plus an SGD step (momentum 0.9 Nesterov, weight decay 5e-4)
and prints one JSON object with the median and minimum (milliseconds). For PyTorch's best
configuration preload jemalloc:

  LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 /tmp/ref/bin/python \
      benches/reference/nb201_net_ref.py --threads 1 2
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

EDGES = [(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)]


def relu_conv_bn(c_in, c_out, k, stride, pad):
    return nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(c_in, c_out, k, stride=stride, padding=pad, bias=False),
        nn.BatchNorm2d(c_out, affine=True),
    )


class Cell(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layers = nn.ModuleList([relu_conv_bn(c, c, 3, 1, 1) for _ in EDGES])

    def forward(self, x):
        nodes = [x]
        for t in range(1, 4):
            s = None
            for e, (i, j) in enumerate(EDGES):
                if j == t:
                    y = self.layers[e](nodes[i])
                    s = y if s is None else s + y
            nodes.append(s)
        return nodes[3]


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv_a = relu_conv_bn(c_in, c_out, 3, 2, 1)
        self.conv_b = relu_conv_bn(c_out, c_out, 3, 1, 1)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, 1, bias=False),
        )

    def forward(self, x):
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class Net(nn.Module):
    def __init__(self, c=16, n=5, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        cells = []
        cp = c
        for stage in range(3):
            cs = c << stage
            if stage > 0:
                cells.append(BasicBlock(cp, cs))
            cells += [Cell(cs) for _ in range(n)]
            cp = cs
        self.cells = nn.ModuleList(cells)
        self.lastact = nn.Sequential(nn.BatchNorm2d(cp), nn.ReLU(inplace=False))
        self.classifier = nn.Linear(cp, classes)

    def forward(self, x):
        h = self.stem(x)
        for cell in self.cells:
            h = cell(h)
        h = self.lastact(h)
        return self.classifier(F.adaptive_avg_pool2d(h, 1).flatten(1))


def time_it(fn, reps, warmup=2):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(ts), "min_ms": min(ts), "reps": reps}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--formats", nargs="+", default=["nchw", "channels_last"],
                    choices=["nchw", "channels_last"])
    args = ap.parse_args()
    torch.manual_seed(0)
    out = {
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "ld_preload": os.environ.get("LD_PRELOAD", ""),
        "results": {},
    }
    net = Net()
    out["params"] = sum(p.numel() for p in net.parameters())
    x0 = torch.randn(64, 3, 32, 32)
    labels = torch.tensor([(i * 7) % 10 for i in range(64)])
    formats = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
    for fmt_name in args.formats:
        fmt = formats[fmt_name]
        net = Net().to(memory_format=fmt)
        x = x0.to(memory_format=fmt)
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)

        def fwd_bwd():
            net.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(x), labels)
            loss.backward()

        def sgd_step():
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(x), labels)
            loss.backward()
            opt.step()

        for t in args.threads:
            torch.set_num_threads(t)
            for name, fn in [("fwd_bwd", fwd_bwd), ("sgd_step", sgd_step)]:
                key = f"{fmt_name}/threads={t}/{name}"
                out["results"][key] = time_it(fn, args.reps, args.warmup)
                print(key, json.dumps(out["results"][key]), file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
