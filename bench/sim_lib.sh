# Shared by bench/ceiling.sh, sim_ab.sh, sim_pairs.sh and sim_pinned.sh (sourced, from
# the repository root, after `net`, `n` and `dur` are set): a scratch directory `work`
# removed on exit, the network NET scaled to N neurons as bench/compare.py scales it
# (p = 80/N, weights x 4000/N) in `file`, and `run_s SNNC THREADS`, the run loop's
# seconds of one `snnc bench sim` of it for DURATION.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
file=$(python3 -c "import sys; sys.path.insert(0, 'bench'); import compare; print(compare.scaled_network('$net', $n, '$work'))")
# (SNNC may carry environment settings before the binary and options after it, split at
# spaces: "target/release/snnc --even-chunks", "SNNC_X86=off target/release/snnc".)
run_s() {
    local words env=() cmd=()
    read -ra words <<< "$1"
    for w in "${words[@]}"; do
        if [ ${#cmd[@]} -eq 0 ] && [[ $w == *=* ]]; then env+=("$w"); else cmd+=("$w"); fi
    done
    env "${env[@]}" "${cmd[0]}" bench sim "$file" --method euler --duration "$dur" --threads "$2" "${cmd[@]:1}" | grep -o '"run_s":[0-9.]*' | cut -d: -f2
}
