#!/usr/bin/env python3
"""PyTorch CPU reference for nas-search/examples/main_step.rs: one training step of the network
the main job (`nas search` with no arguments) trains per candidate, the NAS-Bench-201 network
with C = 8, one cell per stage, 1x28x28 Fashion-MNIST, 10 classes, batch 64, with its recipe
(SGD lr 0.1 Nesterov momentum 0.9, weight decay 5e-4, cosine schedule stepped per step).

The network, data loading and recipe are main_job_ref.py's (imported). As in the nas-rs
example, the data is the first 64 examples of the training split, so every epoch is one step:
shuffle, batch gather, forward, cross-entropy, loss read-back (.item(), as nas-rs's trainer
reads the loss for its divergence check), zero-grad, backward, SGD step, scheduler step.
`warmup` steps, then `reps` timed; prints the median and minimum in milliseconds per thread
count and memory format.

  LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 /tmp/ref/bin/python \
      benches/reference/main_step_ref.py --threads 1 2 [--cell CELL]
"""
import argparse
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from main_job_ref import Net, load  # noqa: E402

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--cell", default=BEST)
    ap.add_argument("--formats", nargs="+", default=["nchw", "channels_last"],
                    choices=["nchw", "channels_last"])
    args = ap.parse_args()
    ops = [tok.split("~")[0] for tok in args.cell.strip("|").replace("|+|", "|").split("|")]
    if len(ops) != 6:
        sys.exit(f"--cell {args.cell!r}: need six edges, got {len(ops)}")
    print(f"PyTorch {torch.__version__} LD_PRELOAD={os.environ.get('LD_PRELOAD', '')}", flush=True)
    (xtr, ytr), _, _ = load()
    x_all, y_all = xtr[:64], ytr[:64]
    batch = 64
    formats = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
    for t in args.threads:
        torch.set_num_threads(t)
        for fmt_name in args.formats:
            fmt = formats[fmt_name]
            torch.manual_seed(0)
            net = Net(ops).to(memory_format=fmt)
            net.train()
            opt = torch.optim.SGD(net.parameters(), 0.1, momentum=0.9, nesterov=True,
                                  weight_decay=5e-4)
            steps = args.warmup + args.reps
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
            g = torch.Generator().manual_seed(0)
            ts = []
            for step in range(steps):
                t0 = time.perf_counter()
                perm = torch.randperm(len(y_all), generator=g)
                for i in range(0, len(y_all), batch):
                    b = perm[i:i + batch]
                    x = x_all[b].contiguous(memory_format=fmt)
                    opt.zero_grad(set_to_none=True)
                    loss = F.cross_entropy(net(x), y_all[b])
                    loss_value = loss.item()
                    loss.backward()
                    opt.step()
                    sched.step()
                dt = (time.perf_counter() - t0) * 1e3
                if step >= args.warmup:
                    ts.append(dt)
            print(f"main_step/batch={batch}/threads={t}/{fmt_name} median_ms "
                  f"{statistics.median(ts):.3f} min_ms {min(ts):.3f} reps {args.reps} "
                  f"last_loss {loss_value:.4f} cell {args.cell}", flush=True)


if __name__ == "__main__":
    main()
