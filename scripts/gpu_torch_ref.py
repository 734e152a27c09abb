"""PyTorch yardsticks on the same GPU as `cuda_bench`: cuBLAS SGEMM 4096 (TF32 off) and cuDNN
conv 3x3 forward + backward (N=64, C=64, 32x32), median milliseconds, synchronised."""
import sys
import time

try:
    import torch
except ImportError:
    print("pytorch: not installed, no yardstick")
    sys.exit(0)


def median_ms(f, reps=20):
    f()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        s = time.perf_counter()
        f()
        torch.cuda.synchronize()
        ts.append((time.perf_counter() - s) * 1e3)
    return sorted(ts)[reps // 2]


torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
d = torch.device("cuda")
a = torch.full((4096, 4096), 0.5, device=d)
b = torch.full((4096, 4096), 0.25, device=d)
ms = median_ms(lambda: a @ b)
print(f"sgemm 4096 cublas (pytorch {torch.__version__}): {ms:.3f} ms, {2 * 4096**3 / ms / 1e6:.0f} GFLOP/s")
x = torch.full((64, 64, 32, 32), 0.1, device=d, requires_grad=True)
w = torch.full((64, 64, 3, 3), 0.01, device=d, requires_grad=True)
dy = torch.full((64, 64, 32, 32), 0.2, device=d)
fwd = median_ms(lambda: torch.nn.functional.conv2d(x, w, padding=1))


def fb():
    y = torch.nn.functional.conv2d(x, w, padding=1)
    y.backward(dy)


print(f"conv3x3 n64 c64 32x32 cudnn: forward {fwd:.3f} ms, forward+backward {median_ms(fb):.3f} ms")
