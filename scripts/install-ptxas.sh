#!/usr/bin/env bash
# Installs NVIDIA's PTX assembler (ptxas) without CUDA, a GPU or root: the PyPI wheel
# nvidia-cuda-nvcc-cu12 ships it, and it assembles PTX for any sm_* target offline.
# Used by compiler/tests/all/ptx.rs to check the emitted PTX. Idempotent; prints the path.
#
#   scripts/install-ptxas.sh            # -> $SNNC_PTXAS_DIR or ~/.cache/snnc/ptxas
#   SNNC_PTXAS=$(scripts/install-ptxas.sh)
set -euo pipefail

VERSION="12.9.86"
DIR="${SNNC_PTXAS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/snnc/ptxas}"
BIN="$DIR/ptxas"
STAMP="$DIR/version"

if [[ -x "$BIN" && "$(cat "$STAMP" 2>/dev/null)" == "$VERSION" ]] && "$BIN" --version >/dev/null 2>&1; then
    echo "$BIN"
    exit 0
fi

PY="${PYTHON:-python3}"
mkdir -p "$DIR"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# Only the wheel (no dependencies, never a source build): ~40 MB.
"$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --dest "$TMP" "nvidia-cuda-nvcc-cu12==$VERSION" >&2
WHEEL="$(ls "$TMP"/nvidia_cuda_nvcc_cu12-*.whl | head -n 1)"

# A wheel is a zip; take the one file (python's zipfile: no dependency on `unzip`).
"$PY" - "$WHEEL" "$TMP/ptxas" <<'PYEOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    with z.open("nvidia/cuda_nvcc/bin/ptxas") as src, open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst)
PYEOF
chmod +x "$TMP/ptxas"
"$TMP/ptxas" --version >/dev/null
# Copy next to the target, then rename (atomic within one directory): a concurrent run
# never sees a half-written file.
cp "$TMP/ptxas" "$BIN.tmp.$$"
mv -f "$BIN.tmp.$$" "$BIN"
echo "$VERSION" > "$STAMP"
echo "$BIN"
