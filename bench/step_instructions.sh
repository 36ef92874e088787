#!/usr/bin/env bash
# Instructions per simulation step of COBA / CUBA (forward Euler, f32, one thread),
# counted by callgrind: independent of the machine's load, unlike wall time.
# Each network runs for two step counts; the difference of the totals divided by the
# difference of the steps is the cost of one step without the setup (parsing, JIT,
# connectivity). The 40,000-neuron networks are examples/{coba,cuba}.snn scaled as
# bench/compare.py scales them (p = 80/N, weights x 4000/N).
#
#   bash bench/step_instructions.sh [SIZES] [THREADS]     # default: "4000 40000" 1
#   SNNC=/path/to/other/snnc bash bench/step_instructions.sh 4000   # another build
#
# Needs valgrind and a release build (cargo build --release -p snnc).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SNNC=${SNNC:-${CARGO_TARGET_DIR:-$ROOT/target}/release/snnc}
SIZES=${1:-"4000 40000"}
THREADS=${2:-1}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

total() { # FILE STEPS -> instructions of the whole process
    valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" "$SNNC" bench sim "$1" --method euler \
        --duration "$(python3 -c "print($2 / 10)")ms" --threads "$THREADS" >/dev/null 2>"$WORK/cg.err"
    grep -m1 '^summary:' "$WORK/cg.out" | awk '{print $2}'
}

printf '| network | N | steps | instructions per step |\n|---|---|---|---|\n'
for n in $SIZES; do
    for net in coba cuba; do
        file=$(python3 - "$ROOT" "$net" "$n" "$WORK" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1] + "/bench")
import compare
print(compare.scaled_network(sys.argv[2], int(sys.argv[3]), sys.argv[4]))
EOF
)
        if [ "$n" -ge 40000 ]; then a=20; b=120; else a=100; b=600; fi
        lo=$(total "$file" $a)
        hi=$(total "$file" $b)
        printf '| %s | %s | %s-%s | %s |\n' "$net" "$n" "$a" "$b" "$(( (hi - lo) / (b - a) ))"
    done
done
