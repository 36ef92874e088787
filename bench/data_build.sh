#!/usr/bin/env bash
# Networks defined by data, and building on several threads (docs/benchmarks.md,
# "Building networks"): loading a 50-million-synapse COO connectivity file, and building
# a large random network (COBA at 400,000 neurons, in-degree 80: 32 million synapses), each
# on 1 and 2 build threads (SNNC_BUILD_THREADS), interleaved, REPS times. Prints one JSON
# line of `snnc bench sim` per run (build_s: plan + connectivity + JIT; jit_s apart)
# followed by the peak RSS that /usr/bin/time -v measured.
#
#   cargo build --release -p snnc -p snnc-runtime --examples
#   bash bench/data_build.sh [OUT_DIR] [REPS]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/snnc-data-bench}
reps=${2:-3}
mkdir -p "$out"
snnc=target/release/snnc
gen=target/release/examples/make_connectivity
# FlyWire-sized: 139,000 neurons, 50 million synapses (int32 pre/post, float32 counts).
[ -f "$out/conn50m.npz" ] || /usr/bin/time -f "generated in %e s, peak RSS %M kB" "$gen" "$out/conn50m.npz" 139000 50000000
cat > "$out/fly.snn" <<'SNN'
import "stdlib/lif.snn"
network fly {
    dt = 0.2 ms
    layer N = LIF[139000] { tau = load("conn50m.npz", "tau_ms") * 1 ms }
    connect N -> N.I from "conn50m.npz" weight 0.001 delay 1.8 ms
}
SNN
cat > "$out/coba400k.snn" <<'SNN'
import "stdlib/coba.snn"
network coba400k {
    dt = 0.1 ms
    layer E = COBALIF[320000] { v = normal(-55 mV, 5 mV) }
    layer I = COBALIF[80000] { v = normal(-55 mV, 5 mV) }
    drive E.I = 200 pA
    drive I.I = 200 pA
    connect E -> E.I via ExpCond { tau = 5 ms, E = 0 mV } sparse p = 0.0002 weight 6 nS
    connect E -> I.I via ExpCond { tau = 5 ms, E = 0 mV } sparse p = 0.0002 weight 6 nS
    connect I -> E.I via ExpCond { tau = 10 ms, E = -80 mV } sparse p = 0.0002 weight 67 nS
    connect I -> I.I via ExpCond { tau = 10 ms, E = -80 mV } sparse p = 0.0002 weight 67 nS
}
SNN
ls -l "$out/conn50m.npz"
for rep in $(seq "$reps"); do
    for net in fly coba400k; do
        for threads in 1 2; do
            SNNC_BUILD_THREADS=$threads /usr/bin/time -v "$snnc" bench sim "$out/$net.snn" --duration 1ms 2> "$out/time.txt" \
                | sed "s/^{/{\"build_threads\":$threads,/"
            grep -E "Maximum resident" "$out/time.txt" | sed "s/^\s*/    /"
        done
    done
done
