#!/usr/bin/env python3
"""PyTorch CPU reference for nas-search/examples/infer.rs: inference (forward only, evaluation
mode, under torch.inference_mode) of the networks a search hands to deployment, batch 1 and 64 of
3x32x32, 10 classes:

  nb201_conv3x3  the NAS-Bench-201 network (C = 16, N = 5), all six edges nor_conv_3x3
  nb201_best     the same network of the cell
                 |nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|
  darts_v2_c36   the DARTS-V2 genotype's CIFAR-10 evaluation network (C = 36, 20 cells; the
                 auxiliary head is not run at inference and is not built)
  darts_v2_c16   the same genotype at C = 16, 8 cells

The NB201 networks are main_job_ref.py's (imported); the DARTS network is written here from the
DARTS paper's description (NetworkCIFAR: stem conv3x3 to 3C + BN; ReLU-conv1x1-BN or
factorized-reduce preprocessing; reduction cells at layers/3 and 2*layers/3; nodes concatenated;
global average pool, linear), the same structure as nas_search::nets::darts::DartsNetwork.
Batch norms use their running statistics (eval mode); weights are PyTorch's default init.

Each configuration: `warmup` forwards, then `reps` timed (reps / 4, at least 3, for darts_v2_c36
at batch 64, as the nas-rs example); one line each, median and minimum in milliseconds, in
contiguous NCHW and channels_last. For PyTorch's best configuration preload jemalloc:

  LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 /tmp/ref/bin/python \
      benches/reference/infer_ref.py --threads 1 2
"""
import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from main_job_ref import Net as Nb201Net  # noqa: E402

ALL_3X3 = ["nor_conv_3x3"] * 6
BEST = ["nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3", "skip_connect", "nor_conv_3x3",
        "nor_conv_3x3"]

# DARTS_V2 (Liu et al. 2019): per node, two (op, input) pairs; output concat of nodes 2..5
DARTS_V2_NORMAL = [[("sep_conv_3x3", 0), ("sep_conv_3x3", 1)],
                   [("sep_conv_3x3", 0), ("sep_conv_3x3", 1)],
                   [("sep_conv_3x3", 1), ("skip_connect", 0)],
                   [("skip_connect", 0), ("dil_conv_3x3", 2)]]
DARTS_V2_REDUCE = [[("max_pool_3x3", 0), ("max_pool_3x3", 1)],
                   [("skip_connect", 2), ("max_pool_3x3", 1)],
                   [("max_pool_3x3", 0), ("skip_connect", 2)],
                   [("skip_connect", 2), ("max_pool_3x3", 1)]]


def rcb(ci, co, k, s, p):
    return nn.Sequential(nn.ReLU(), nn.Conv2d(ci, co, k, s, p, bias=False), nn.BatchNorm2d(co))


def sep(c, k, s):
    p = k // 2
    return nn.Sequential(
        nn.ReLU(), nn.Conv2d(c, c, k, s, p, groups=c, bias=False), nn.Conv2d(c, c, 1, bias=False),
        nn.BatchNorm2d(c),
        nn.ReLU(), nn.Conv2d(c, c, k, 1, p, groups=c, bias=False), nn.Conv2d(c, c, 1, bias=False),
        nn.BatchNorm2d(c))


def dil(c, k, s):
    return nn.Sequential(
        nn.ReLU(), nn.Conv2d(c, c, k, s, k - 1, dilation=2, groups=c, bias=False),
        nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))


class FR(nn.Module):
    def __init__(self, ci, co):
        super().__init__()
        self.c1 = nn.Conv2d(ci, co // 2, 1, 2, bias=False)
        self.c2 = nn.Conv2d(ci, co - co // 2, 1, 2, bias=False)
        self.bn = nn.BatchNorm2d(co)

    def forward(self, x):
        x = F.relu(x)
        return self.bn(torch.cat([self.c1(x), self.c2(x[:, :, 1:, 1:])], 1))


def darts_op(name, c, s):
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, s, 1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, s, 1, count_include_pad=False)
    if name == "skip_connect":
        return nn.Identity() if s == 1 else FR(c, c)
    if name == "sep_conv_3x3":
        return sep(c, 3, s)
    if name == "sep_conv_5x5":
        return sep(c, 5, s)
    if name == "dil_conv_3x3":
        return dil(c, 3, s)
    if name == "dil_conv_5x5":
        return dil(c, 5, s)
    raise ValueError(name)


class DartsCell(nn.Module):
    def __init__(self, genotype, cpp, cp, c, red, red_prev):
        super().__init__()
        self.pre0 = FR(cpp, c) if red_prev else rcb(cpp, c, 1, 1, 0)
        self.pre1 = rcb(cp, c, 1, 1, 0)
        self.inputs = [j for node in genotype for _, j in node]
        self.ops = nn.ModuleList(
            [darts_op(name, c, 2 if red and j < 2 else 1) for node in genotype for name, j in node])

    def forward(self, s0, s1):
        states = [self.pre0(s0), self.pre1(s1)]
        for k in range(len(self.ops) // 2):
            a, b = 2 * k, 2 * k + 1
            states.append(self.ops[a](states[self.inputs[a]]) + self.ops[b](states[self.inputs[b]]))
        return torch.cat(states[2:], 1)


class DartsNet(nn.Module):
    def __init__(self, c, layers, classes=10):
        super().__init__()
        cs = 3 * c
        self.stem = nn.Sequential(nn.Conv2d(3, cs, 3, padding=1, bias=False), nn.BatchNorm2d(cs))
        cpp, cp, cc = cs, cs, c
        self.cells = nn.ModuleList()
        rp = False
        for i in range(layers):
            red = i in (layers // 3, 2 * layers // 3)
            if red:
                cc *= 2
            g = DARTS_V2_REDUCE if red else DARTS_V2_NORMAL
            self.cells.append(DartsCell(g, cpp, cp, cc, red, rp))
            rp = red
            cpp, cp = cp, 4 * cc
        self.fc = nn.Linear(cp, classes)

    def forward(self, x):
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.fc(F.adaptive_avg_pool2d(s1, 1).flatten(1))


NETS = {
    "nb201_conv3x3": lambda: Nb201Net(ALL_3X3, c=16, n=5, cin=3),
    "nb201_best": lambda: Nb201Net(BEST, c=16, n=5, cin=3),
    "darts_v2_c36": lambda: DartsNet(36, 20),
    "darts_v2_c16": lambda: DartsNet(16, 8),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--formats", nargs="+", default=["nchw", "channels_last"],
                    choices=["nchw", "channels_last"])
    ap.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    args = ap.parse_args()
    print(f"PyTorch {torch.__version__} LD_PRELOAD={os.environ.get('LD_PRELOAD', '')}", flush=True)
    formats = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
    for t in args.threads:
        torch.set_num_threads(t)
        for name in args.nets:
            torch.manual_seed(0)
            net = NETS[name]().eval()
            params = sum(p.numel() for p in net.parameters())
            for fmt_name in args.formats:
                fmt = formats[fmt_name]
                net = net.to(memory_format=fmt)
                for batch in (1, 64):
                    x = torch.randn(batch, 3, 32, 32).to(memory_format=fmt)
                    reps = max(3, args.reps // 4) if name == "darts_v2_c36" and batch == 64 \
                        else args.reps
                    ts = []
                    with torch.inference_mode():
                        for rep in range(args.warmup + reps):
                            t0 = time.perf_counter()
                            y = net(x)
                            dt = (time.perf_counter() - t0) * 1e3
                            if rep >= args.warmup:
                                ts.append(dt)
                    print(f"{name}/batch={batch}/threads={t}/{fmt_name} median_ms "
                          f"{statistics.median(ts):.3f} min_ms {min(ts):.3f} reps {reps} "
                          f"params {params} logit0 {y[0, 0].item():.4f}", flush=True)


if __name__ == "__main__":
    main()
