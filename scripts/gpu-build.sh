#!/usr/bin/env bash
# Builds here (Rust, no GPU needed) everything scripts/gpu-tests.sh runs on the GPU
# machine, which has no Rust toolchain and no network (../shared/GPU.md):
#   .gpu/bin/snnc            the CLI with the CUDA backend (`bench train --backend cuda`)
#   .gpu/bin/runtime-tests   snnc-runtime's test binary (its ignored `cuda::` tests need a GPU)
#   .gpu/bin/cuda_coba       the COBA benchmark (runtime/benches/cuda_coba.rs)
#   .gpu/build_dir           where they were built: the tests find examples/ through it
#   .gpu/whl/                the peers' wheels (braintrace, BrainPy; pure Python), if PyPI answers
# All stripped (line tables: 90 MB -> 12 MB); the folder is ignored by git and must stay
# under the 64 MiB a carried tree may hold. Then, there: `scripts/gpu-tests.sh OUTDIR`.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.gpu
rm -rf "$out/bin"
mkdir -p "$out/bin"

# The executable cargo reports for a target (from its JSON messages).
executable() {
    python3 -c '
import json, sys
name = sys.argv[1]
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == name:
        print(m["executable"])' "$1" | tail -1
}

cargo build --release --features cuda
cp target/release/snnc "$out/bin/snnc"
tests=$(cargo test --release --features cuda -p snnc-runtime --test all --no-run --message-format=json | executable all)
cp "$tests" "$out/bin/runtime-tests"
coba=$(cargo bench -p snnc-runtime --features cuda --bench cuda_coba --no-run --message-format=json | executable cuda_coba)
cp "$coba" "$out/bin/cuda_coba"
strip "$out"/bin/*
pwd > "$out/build_dir"

if [ ! -d "$out/whl" ]; then
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 -d "$out/whl.tmp" \
        braintrace==0.2.8 brainstate==0.6.0 braintools==0.4.0 brainunit==0.6.0 brainevent==0.3.0 saiunit==0.6.0 brainpy==2.9.0 array-api-compat==1.16.0 \
        && mv "$out/whl.tmp" "$out/whl" \
        || echo "gpu-build: the peers' wheels could not be downloaded; gpu-tests.sh will skip the peers"
fi
du -sh "$out"
