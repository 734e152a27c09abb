#!/usr/bin/env bash
# Run on a GPU machine from the repository root, after scripts/gpu-build.sh built .gpu/ here:
#   bash .gpu/gpu-check.sh
# Writes every log and a results table under $OUT (default .gpu/out).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-$here/out}
mkdir -p "$out"
nvrtc=$(ls /usr/local/cuda/lib64/libnvrtc.so* 2>/dev/null | head -1)
[ -z "$nvrtc" ] && nvrtc=$(find / -name 'libnvrtc.so*' 2>/dev/null | head -1)
export LD_LIBRARY_PATH="$(dirname "${nvrtc:-/usr/local/cuda/lib64/x}"):${LD_LIBRARY_PATH:-}"
export NAS_TEST_DEVICE=cuda:0 NAS_CUDA_POISON=1
nvidia-smi -L | tee "$out/device.txt"
status=()
run() {  # name, command...
  local name=$1; shift
  if "$@" >"$out/$name.log" 2>&1; then status+=("$name: ok"); else status+=("$name: FAILED (see $name.log)"); fi
}
b=$here/bin
# every kernel against the CPU (poisoned outputs), relative error <= 1e-4
run kernels "$b/nas-kernels-cuda_kernels" --test-threads 1
# the backend-generic suite on cuda:0: ops, gradcheck, training loop vs CPU
run tensor-suite "$b/nas-tensor-it" --ignored --test-threads 1 backends::cuda::
# no driver allocation in steady-state training
run alloc "$b/nas-tensor-cuda_alloc"
# an NB201 training epoch and DARTS steps (architecture weights and gradients) vs CPU
run search-suite "$b/nas-search-it" --ignored --test-threads 1 --nocapture backends::cuda::
# timings, side by side with PyTorch (cuBLAS, cuDNN) on the same card
run bench "$b/cuda_bench" cuda:0
# SGEMM 4096 against cuBLAS in the same process, f32 (CUBLAS_DEFAULT_MATH) and TF32 tensor
# cores (ours: mm_sgemm_tf32; cuBLAS: CUBLAS_TF32_TENSOR_OP_MATH), interleaved
run cublas "$b/sgemm_cublas" cuda:0 20 4096
run torch python3 "$here/gpu_torch_ref.py"
# one first-order DARTS step (C=16, 8 cells, batch 64): nas-rs on the GPU and on this
# machine's CPU, PyTorch on the same GPU (TF32 off)
run darts-gpu env NAS_DEVICE=cuda:0 "$b/darts_step" 6 64 16 8 darts
run darts-cpu env NAS_DEVICE=cpu "$b/darts_step" 4 64 16 8 darts
run darts-torch python3 "$here/darts_step_ref.py" 6 16 --cuda
{
  echo "## GPU check: $(head -1 "$out/device.txt")"
  printf '%s\n' "${status[@]}"
  grep -h -E "sgemm|conv3x3|relative" "$out/bench.log" "$out/torch.log" "$out/search-suite.log" 2>/dev/null
  grep -h -E "vs cuBLAS|speed-up|check:|cuBLAS unavailable|TF32:" "$out/cublas.log" 2>/dev/null
  for d in gpu cpu torch; do echo "darts step $d: $(grep -h median "$out/darts-$d.log" 2>/dev/null)"; done
} | tee "$out/results.md"
