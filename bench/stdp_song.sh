#!/usr/bin/env bash
# Song, Miller & Abbott 2000 side by side: snnc (examples/song2000.snn) and Brian2
# (bench/peers/brian2_stdp.py, C++ standalone), the same model and parameters, each
# written in its own language, one thread each; then the final weight distributions
# compared (bench/stdp_compare.py) and the histogram drawn.
#
#   bench/stdp_song.sh [DURATION_S] [PYTHON]
#
# PYTHON: an interpreter with brian2, matplotlib (default target/venv-brian2/bin/python:
# python3 -m venv target/venv-brian2 && target/venv-brian2/bin/pip install brian2 matplotlib).
# Needs a release build (cargo build --release -p snnc).
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-100}
py=${2:-target/venv-brian2/bin/python}
out=target/stdp_song
mkdir -p "$out"
echo "== snnc (release, cranelift, 1 thread, f64)"
/usr/bin/time -f "snnc wall %e s, max RSS %M KB" target/release/snnc run examples/song2000.snn \
    --input x=poisson:15Hz --duration "${dur}s" --threads 1 --precision f64 --out "$out/snnc" --plot
echo "== Brian2"
"$py" bench/peers/brian2_stdp.py --duration "$dur" --dir "$out/brian2_build" --out "$out/brian2_w.npy"
echo "== comparison"
"$py" bench/stdp_compare.py "$out/snnc/S.w.npy" "$out/brian2_w.npy" --png docs/img/song2000_weights.png
