#!/usr/bin/env python3
"""PyTorch CPU reference for one first-order DARTS search step (architecture step on a
validation batch, then weight step on a training batch with gradient clipping), on the DARTS
supernet of Liu et al. 2019 (C=16, 8 cells, 4 nodes, 14 mixed edges over 8 primitives, pools
followed by non-affine BN, non-affine preprocessing), batch 64, 3x32x32, 10 classes.

Written for nas-rs from the paper's description; the same structure as
nas_search::oneshot::Supernet. Reports each step's time and the peak RSS (VmHWM).

    /tmp/ref/bin/python benches/reference/darts_step_ref.py [steps] [threads] [--channels-last] [--cuda]

`--cuda` runs the step on the first GPU (timed with a synchronisation after each step; peak
memory is then torch.cuda.max_memory_allocated, not VmHWM).

For jemalloc: LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 (if installed).
"""
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRIMS = ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
         "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"]


def rcb(ci, co, k, s, p, affine=False):
    return nn.Sequential(nn.ReLU(), nn.Conv2d(ci, co, k, s, p, bias=False),
                         nn.BatchNorm2d(co, affine=affine))


def sep(c, k, s):
    p = k // 2
    return nn.Sequential(
        nn.ReLU(), nn.Conv2d(c, c, k, s, p, groups=c, bias=False), nn.Conv2d(c, c, 1, bias=False),
        nn.BatchNorm2d(c, affine=False),
        nn.ReLU(), nn.Conv2d(c, c, k, 1, p, groups=c, bias=False), nn.Conv2d(c, c, 1, bias=False),
        nn.BatchNorm2d(c, affine=False))


def dil(c, k, s):
    return nn.Sequential(
        nn.ReLU(), nn.Conv2d(c, c, k, s, k - 1, dilation=2, groups=c, bias=False),
        nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c, affine=False))


class FR(nn.Module):
    def __init__(self, ci, co):
        super().__init__()
        self.c1 = nn.Conv2d(ci, co // 2, 1, 2, bias=False)
        self.c2 = nn.Conv2d(ci, co - co // 2, 1, 2, bias=False)
        self.bn = nn.BatchNorm2d(co, affine=False)

    def forward(self, x):
        x = F.relu(x)
        return self.bn(torch.cat([self.c1(x), self.c2(x[:, :, 1:, 1:])], 1))


def make_op(name, c, s):
    if name == "max_pool_3x3":
        return nn.Sequential(nn.MaxPool2d(3, s, 1), nn.BatchNorm2d(c, affine=False))
    if name == "avg_pool_3x3":
        return nn.Sequential(nn.AvgPool2d(3, s, 1, count_include_pad=False),
                             nn.BatchNorm2d(c, affine=False))
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


class Mixed(nn.Module):
    def __init__(self, c, s):
        super().__init__()
        self.ops = nn.ModuleList([make_op(p, c, s) for p in PRIMS[1:]])  # `none` adds zero

    def forward(self, x, w):
        return sum(wi * op(x) for wi, op in zip(w[1:], self.ops))


class Cell(nn.Module):
    def __init__(self, cpp, cp, c, red, red_prev):
        super().__init__()
        self.red = red
        self.pre0 = FR(cpp, c) if red_prev else rcb(cpp, c, 1, 1, 0)
        self.pre1 = rcb(cp, c, 1, 1, 0)
        self.edges = nn.ModuleList()
        for i in range(4):
            for j in range(2 + i):
                self.edges.append(Mixed(c, 2 if red and j < 2 else 1))

    def forward(self, s0, s1, w):
        states = [self.pre0(s0), self.pre1(s1)]
        off = 0
        for _ in range(4):
            s = sum(self.edges[off + j](h, w[off + j]) for j, h in enumerate(states))
            off += len(states)
            states.append(s)
        return torch.cat(states[-4:], 1)


class Net(nn.Module):
    def __init__(self, c=16, layers=8, classes=10):
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
            self.cells.append(Cell(cpp, cp, cc, red, rp))
            rp = red
            cpp, cp = cp, 4 * cc
        self.fc = nn.Linear(cp, classes)
        self.alpha_n = (1e-3 * torch.randn(14, 8)).requires_grad_()
        self.alpha_r = (1e-3 * torch.randn(14, 8)).requires_grad_()

    def forward(self, x):
        wn = F.softmax(self.alpha_n, -1)
        wr = F.softmax(self.alpha_r, -1)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, wr if cell.red else wn)
        return self.fc(F.adaptive_avg_pool2d(s1, 1).flatten(1))


def vm_hwm_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def sync():
    if torch.cuda.is_available() and "--cuda" in sys.argv:
        torch.cuda.synchronize()


def peak():
    if "--cuda" in sys.argv:
        return f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
    return f"peak RSS {vm_hwm_mib():.0f} MiB"


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    steps = int(args[0]) if args else 3
    threads = int(args[1]) if len(args) > 1 else 2
    cl = "--channels-last" in sys.argv
    # --c=N and --batch=N: the small-shape comparison (C=4, batch 8) of docs/PERF.md
    opt = {a.split("=")[0]: int(a.split("=")[1]) for a in sys.argv[1:] if "=" in a}
    c, batch = opt.get("--c", 16), opt.get("--batch", 64)
    dev = torch.device("cuda" if "--cuda" in sys.argv else "cpu")
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = Net(c=c).to(dev)
    # the architecture weights are plain tensors, not parameters: move them by hand
    net.alpha_n = net.alpha_n.detach().to(dev).requires_grad_()
    net.alpha_r = net.alpha_r.detach().to(dev).requires_grad_()
    mf = torch.channels_last if cl else torch.contiguous_format
    net = net.to(memory_format=mf)
    w_opt = torch.optim.SGD(net.parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam([net.alpha_n, net.alpha_r], 3e-4, betas=(0.5, 0.999),
                             weight_decay=1e-3)
    print(f"PyTorch {torch.__version__} threads={torch.get_num_threads()} channels_last={cl} "
          f"params={sum(p.numel() for p in net.parameters())}")
    times = []
    for i in range(steps):
        xt = torch.randn(batch, 3, 32, 32).to(dev, memory_format=mf)
        yt = torch.randint(0, 10, (batch,)).to(dev)
        xv = torch.randn(batch, 3, 32, 32).to(dev, memory_format=mf)
        yv = torch.randint(0, 10, (batch,)).to(dev)
        sync()
        t = time.perf_counter()
        c0 = time.process_time()
        a_opt.zero_grad()
        F.cross_entropy(net(xv), yv).backward()
        a_opt.step()
        w_opt.zero_grad()
        F.cross_entropy(net(xt), yt).backward()
        nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        w_opt.step()
        sync()
        dt = time.perf_counter() - t
        dc = time.process_time() - c0
        times.append(dt)
        print(f"step {i}: {dt:.3f} s wall, {dc:.2f} s CPU  ({peak()})", flush=True)
    rest = sorted(times[1:])
    if rest:
        print(f"median of steps 1..{steps - 1}: {rest[len(rest) // 2]:.3f} s; {peak()}")


if __name__ == "__main__":
    main()
