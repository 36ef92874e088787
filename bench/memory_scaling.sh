#!/usr/bin/env bash
# Peak memory against synapse count (issue 17's benchmarks), from `snnc` itself:
#  1. COBA with `procedural` connectivity at 10^7, 10^8 and 10^9 synapses (50,000
#     neurons, p from 0.004 to 0.4, conductances scaled by 0.02 / p so the network stays
#     driven alike), and the stored `sparse` variant where it fits;
#  2. training with ES-D-RTRL through a sparse trained recurrent projection (DMS task,
#     AdLIF layer) at two synapse counts: bytes per synapse from the difference.
# Prints one line per run: what, synapses, peak RSS (from /usr/bin/time), seconds.
# Usage: bench/memory_scaling.sh [path/to/snnc] (default: target/release/snnc)
set -euo pipefail
cd "$(dirname "$0")/.."
SNNC=${1:-target/release/snnc}
[ -x "$SNNC" ] || { echo "no $SNNC: cargo build --release first" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (GNU time)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

peak() { # label synapses command...: one line "label synapses peak_MB seconds"
    local label=$1 syn=$2; shift 2
    /usr/bin/time -f "%M %e" -o "$tmp/time" "$@" > "$tmp/out" 2>&1 || { echo "$label failed:"; tail -5 "$tmp/out"; return; }
    read -r kb secs < "$tmp/time"
    printf '%-40s %12s synapses  peak %8.1f MB  %7.1f s\n' "$label" "$syn" "$(echo "$kb / 1024" | bc -l)" "$secs"
}

coba() { # topology p file
    local topo=$1 p=$2 scale
    scale=$(echo "0.02 / $p" | bc -l)
    cat > "$3" <<EOF
import "stdlib/coba.snn"
network coba {
    dt = 0.1 ms
    layer E = COBALIF[40000] { v = normal(-55 mV, 5 mV) }
    layer I = COBALIF[10000] { v = normal(-55 mV, 5 mV) }
    drive E.I = 200 pA
    drive I.I = 200 pA
    connect E -> E.I via ExpCond { tau = 5 ms, E = 0 mV } $topo p = $p weight $(printf '%.6f' "$(echo "6 * $scale" | bc -l)") nS
    connect E -> I.I via ExpCond { tau = 5 ms, E = 0 mV } $topo p = $p weight $(printf '%.6f' "$(echo "6 * $scale" | bc -l)") nS
    connect I -> E.I via ExpCond { tau = 10 ms, E = -80 mV } $topo p = $p weight $(printf '%.6f' "$(echo "67 * $scale" | bc -l)") nS
    connect I -> I.I via ExpCond { tau = 10 ms, E = -80 mV } $topo p = $p weight $(printf '%.6f' "$(echo "67 * $scale" | bc -l)") nS
}
EOF
}

echo "# COBA, 50,000 neurons, 5 ms (50 steps), f32, one thread"
for p in 0.004 0.04 0.4; do
    syn=$(printf '%.0e' "$(echo "$p * 50000 * 50000" | bc -l)")
    coba procedural $p "$tmp/proc.snn"
    peak "procedural p = $p" "$syn" "$SNNC" run "$tmp/proc.snn" --duration 5ms
    if [ "$p" != 0.4 ]; then # 10^9 stored synapses need ~8 GB (weights + columns)
        coba sparse $p "$tmp/stored.snn"
        peak "sparse (stored) p = $p" "$syn" "$SNNC" run "$tmp/stored.snn" --duration 5ms
    fi
done

echo "# training, ES-D-RTRL, DMS (100 inputs), AdLIF layer with a sparse trained recurrent projection, batch 8, 1 batch of 200 ms"
for n in 4000 8000; do
    sed -e "s/AdLIF\[200\]/AdLIF[$n]/" \
        -e "s|connect rec -> rec.I dense init normal(0, 1 / sqrt(200))|connect rec -> rec.I sparse p = 0.0625 init normal(0, 1 / sqrt($n * 0.0625))|" \
        examples/dms.snn > "$tmp/dms.snn"
    grep -q "sparse p = 0.0625" "$tmp/dms.snn" || { echo "examples/dms.snn changed: update this script" >&2; exit 1; }
    syn=$(printf '%.2e' "$(echo "0.0625 * $n * $n" | bc -l)")
    peak "ES-D-RTRL, AdLIF[$n] sparse recurrent" "$syn" "$SNNC" train "$tmp/dms.snn" -I examples --epochs 1 --batches 1 --batch 8 --delay 100ms --sample 50ms --test-period 50ms --test-batches 1
done
