#!/usr/bin/env python3
"""Times the GEMM shapes of benches/benches/gemm.rs in numpy (OpenBLAS) and PyTorch (CPU).

Usage (the venv from DESIGN.md; unset the two OpenBLAS tuning variables for the benchmark):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /tmp/ref/bin/python benches/reference/gemm_ref.py \
        [--rounds 3] [--threads 1,2] [--libs numpy,torch] [--shapes all|square|conv]

Prints one JSON object per line: first an "info" record (library versions, what threadpoolctl
reports: BLAS implementation, version, internal kernel / architecture), then one record per
shape, library and thread count with the median milliseconds and GFLOP/s over rounds. Each
round times every contender on the shape back to back (interleaved), each as the median of
repeated calls over ~0.25 s, with the output preallocated (`out=`) so that no contender pays
for allocating C. Transposed operands are transposed views, which both libraries hand to BLAS
as transpose flags. `cpu_ms` is the calling thread's CPU time (meaningful for one thread on a
loaded machine).

Shapes: squares 64..1024 (NN), and for a 3x3 convolution at batch 64 in three CIFAR-ResNet
stages (16 ch @ 32x32, 32 @ 16x16, 64 @ 8x8): forward NN (M=C_out, K=9 C_in, N=batch*H*W),
weight gradient NT (M=C_out, N=9 C_in, contraction over batch*H*W) and input gradient TN
(M=9 C_in, N=batch*H*W, K=C_out).
"""

import argparse
import json
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits


def shapes(which):
    out = []
    if which in ("all", "square"):
        for s in (64, 128, 256, 512, 1024):
            out.append((f"square{s}", False, False, s, s, s))
    if which in ("all", "conv"):
        for ch, side in ((16, 32), (32, 16), (64, 8)):
            kdim, bhw = 9 * ch, 64 * side * side
            out.append((f"conv{ch}_fwd_NN", False, False, ch, bhw, kdim))
            out.append((f"conv{ch}_dW_NT", False, True, ch, kdim, bhw))
            out.append((f"conv{ch}_dX_TN", True, False, kdim, bhw, ch))
    return out


def time_median(fn, budget=0.25):
    """Median wall and thread-CPU seconds per call over ~budget seconds (after a warm-up)."""
    fn()
    walls, cpus = [], []
    start = time.perf_counter()
    while len(walls) < 3 or (time.perf_counter() - start < budget and len(walls) < 2000):
        c0, t0 = time.thread_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.thread_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def operands(ta, tb, m, n, k, rng):
    a = rng.uniform(-1, 1, size=(k, m) if ta else (m, k)).astype(np.float32)
    b = rng.uniform(-1, 1, size=(n, k) if tb else (k, n)).astype(np.float32)
    return (a.T if ta else a), (b.T if tb else b)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--libs", default="numpy,torch")
    ap.add_argument("--shapes", default="all", choices=("all", "square", "conv"))
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    libs = args.libs.split(",")

    torch = None
    if "torch" in libs:
        import torch as _torch

        torch = _torch
    info = {
        "info": True,
        "numpy": np.__version__,
        "torch": torch.__version__ if torch else None,
        "torch_blas": (torch.__config__.show().split("BLAS_INFO=")[1].split(",")[0] if torch and "BLAS_INFO=" in torch.__config__.show() else None),
        "threadpools": [
            {k: p.get(k) for k in ("user_api", "internal_api", "version", "threading_layer", "architecture", "num_threads", "filepath")}
            for p in threadpool_info()
        ],
    }
    print(json.dumps(info), flush=True)

    rng = np.random.default_rng(0)
    for name, ta, tb, m, n, k in shapes(args.shapes):
        a, b = operands(ta, tb, m, n, k, rng)
        c = np.empty((m, n), dtype=np.float32)
        contenders = []
        for t in threads:
            if "numpy" in libs:
                contenders.append(("numpy", t, lambda: np.matmul(a, b, out=c)))
            if torch is not None:
                ta_, tb_, tc_ = torch.from_numpy(a.T if ta else a), torch.from_numpy(b.T if tb else b), torch.from_numpy(c)
                ta_ = ta_.t() if ta else ta_
                tb_ = tb_.t() if tb else tb_
                contenders.append(("torch", t, (lambda x, y, z: (lambda: torch.matmul(x, y, out=z)))(ta_, tb_, tc_)))
        res = {(lib, t): ([], []) for lib, t, _ in contenders}
        for _ in range(args.rounds):
            for lib, t, fn in contenders:
                if lib == "torch":
                    torch.set_num_threads(t)
                    w, cpu = time_median(fn)
                else:
                    with threadpool_limits(limits=t, user_api="blas"):
                        w, cpu = time_median(fn)
                res[(lib, t)][0].append(w)
                res[(lib, t)][1].append(cpu)
        flops = 2.0 * m * n * k
        for (lib, t), (walls, cpus) in res.items():
            w, cpu = statistics.median(walls), statistics.median(cpus)
            print(json.dumps({
                "shape": name, "m": m, "n": n, "k": k, "ta": ta, "tb": tb, "lib": lib, "threads": t,
                "ms": round(w * 1e3, 4), "gflops": round(flops / w / 1e9, 2),
                "cpu_ms": round(cpu * 1e3, 4), "rounds": args.rounds,
            }), flush=True)


if __name__ == "__main__":
    main()
