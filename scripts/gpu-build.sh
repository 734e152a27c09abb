#!/usr/bin/env bash
# Builds, on this machine, everything scripts/gpu-check.sh runs on a GPU machine (which has no
# Rust toolchain), into .gpu/ (git-ignored; under 64 MiB). Then carry `.gpu` to the device and
# run `bash .gpu/gpu-check.sh` there.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .gpu && mkdir -p .gpu/bin
json=$(cargo test --release --features nas-search/cuda,nas-kernels/cuda,nas-tensor/cuda \
  -p nas-kernels -p nas-tensor -p nas-search --no-run --message-format=json 2>/dev/null)
for t in cuda_kernels it cuda_alloc; do
  echo "$json" | python3 -c '
import json, sys
name = sys.argv[1]
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == name:
        print(m["executable"], m["package_id"])
' "$t" | while read -r exe pkg; do
    crate=$(echo "$pkg" | sed -E 's|.*/(nas-[a-z]+)#.*|\1|; s|.*(nas-[a-z]+)[ @].*|\1|')
    cp "$exe" ".gpu/bin/$crate-$t"
  done
done
cargo build --release --features nas-kernels/cuda -p nas-kernels --example cuda_bench
cp target/release/examples/cuda_bench .gpu/bin/
cargo build --release --features nas-search/cuda -p nas-search --example darts_step
cp target/release/examples/darts_step .gpu/bin/
# the SGEMM against cuBLAS (the benches crate's `cublas` feature: the yardstick only)
cargo build --release -p benches --features cublas --example sgemm_cublas
cp target/release/examples/sgemm_cublas .gpu/bin/
cp scripts/gpu-check.sh scripts/gpu_torch_ref.py benches/reference/darts_step_ref.py .gpu/
strip .gpu/bin/* 2>/dev/null || true
ls -la .gpu/bin && du -sh .gpu
