"""PyTorch CPU reference timings for benches/benches/conv.rs.

Times, at each thread count, the same three workloads as the Rust criterion bench:
  conv3x3_fwd_bwd_64x16x32x32      conv 3x3 16->16, pad 1, batch 64, 32x32: forward, input and
                                   weight gradients (no bias), 0.91 GFLOP
  sepconv_block_fwd_bwd_64x16x32x32  DARTS SepConv(16, 16, 3, 1, 1, affine=False): ReLU,
                                   depthwise 3x3, pointwise 1x1, BN, twice; forward + backward
                                   to the input and all weights
  batchnorm_fwd_bwd_64x16x32x32    BatchNorm2d(16) training, affine: forward + backward

in both memory formats (contiguous NCHW and channels_last), and prints one JSON object with
the median and minimum wall time (milliseconds) of each, and the calling thread's on-CPU time
per step (meaningful at one thread). Run it with jemalloc preloaded for PyTorch's
best configuration:

  LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 /tmp/ref/bin/python \
      benches/reference/conv_ref.py --threads 1 2
"""

import argparse
import json
import os
import platform
import statistics
import time

import torch
import torch.nn as nn


def conv3x3(fmt):
    x = torch.randn(64, 16, 32, 32).to(memory_format=fmt).requires_grad_(True)
    conv = nn.Conv2d(16, 16, 3, padding=1, bias=False).to(memory_format=fmt)
    dy = torch.randn(64, 16, 32, 32).to(memory_format=fmt)

    def step():
        x.grad = None
        conv.weight.grad = None
        y = conv(x)
        y.backward(dy)

    return step


def sepconv(fmt):
    c = 16
    block = nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(c, c, 3, stride=1, padding=1, groups=c, bias=False),
        nn.Conv2d(c, c, 1, padding=0, bias=False),
        nn.BatchNorm2d(c, affine=False),
        nn.ReLU(inplace=False),
        nn.Conv2d(c, c, 3, stride=1, padding=1, groups=c, bias=False),
        nn.Conv2d(c, c, 1, padding=0, bias=False),
        nn.BatchNorm2d(c, affine=False),
    ).to(memory_format=fmt)
    block.train()
    x = torch.randn(64, c, 32, 32).to(memory_format=fmt).requires_grad_(True)
    dy = torch.randn(64, c, 32, 32).to(memory_format=fmt)

    def step():
        x.grad = None
        for p in block.parameters():
            p.grad = None
        y = block(x)
        y.backward(dy)

    return step


def batchnorm(fmt):
    bn = nn.BatchNorm2d(16).to(memory_format=fmt)
    bn.train()
    x = torch.randn(64, 16, 32, 32).to(memory_format=fmt).requires_grad_(True)
    dy = torch.randn(64, 16, 32, 32).to(memory_format=fmt)

    def step():
        x.grad = None
        bn.weight.grad = None
        bn.bias.grad = None
        y = bn(x)
        y.backward(dy)

    return step


def measure(step, reps, warmup):
    for _ in range(warmup):
        step()
    times = []
    c0 = time.thread_time()
    for _ in range(reps):
        t = time.perf_counter()
        step()
        times.append((time.perf_counter() - t) * 1e3)
    cpu = (time.thread_time() - c0) * 1e3 / reps
    # thread_cpu_ms: on-CPU time of the calling thread per step; with one thread all work runs
    # there, so it excludes time the scheduler gave to other processes on a loaded machine
    return {"median_ms": statistics.median(times), "min_ms": min(times), "thread_cpu_ms": cpu, "reps": reps}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    formats = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
    results = []
    for t in args.threads:
        torch.set_num_threads(t)
        for name, make in [
            ("conv3x3_fwd_bwd_64x16x32x32", conv3x3),
            ("sepconv_block_fwd_bwd_64x16x32x32", sepconv),
            ("batchnorm_fwd_bwd_64x16x32x32", batchnorm),
        ]:
            for fname, fmt in formats.items():
                r = measure(make(fmt), args.reps, args.warmup)
                r.update({"bench": name, "threads": t, "memory_format": fname})
                results.append(r)
    best = {}
    for r in results:
        key = f"{r['bench']}/threads={r['threads']}"
        if key not in best or r["median_ms"] < best[key]["median_ms"]:
            best[key] = {"median_ms": r["median_ms"], "memory_format": r["memory_format"]}
    print(
        json.dumps(
            {
                "torch": torch.__version__,
                "jemalloc": "jemalloc" in os.environ.get("LD_PRELOAD", ""),
                "machine": platform.processor() or platform.machine(),
                "results": results,
                "best": best,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
