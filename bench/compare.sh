#!/usr/bin/env bash
# Side-by-side benchmark of snnc against braintrace (training) and Brian2 (simulation).
#   bash bench/compare.sh            # default sizes (fits ~20 min on 2 cores)
#   bash bench/compare.sh --quick    # 1 repetition, small sizes
#   bash bench/compare.sh --full     # 5 repetitions, 400k neurons for 1 s, D-RTRL at T = 100
#   bash bench/compare.sh --help     # all options (--reps, --train-steps, --sim-sizes, --only ...)
# Installs what it needs first (GNU time, g++, a Python >= 3.12 venv with the peers in
# bench/.venv, snnc in release); results go to bench/results/, plots to docs/img/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

# braintrace 0.2.8 needs Python >= 3.12: take $PYTHON, one on PATH, or one under pyenv.
find_python() {
    local c
    for c in "${PYTHON:-}" python3.13 python3.12 python3 \
             "$(pyenv root 2>/dev/null)"/versions/3.1[2-9]*/bin/python3 \
             "$HOME"/.pyenv/versions/3.1[2-9]*/bin/python3; do
        [ -n "$c" ] || continue
        command -v "$c" >/dev/null 2>&1 || [ -x "$c" ] || continue
        if "$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
            echo "$c"; return 0
        fi
    done
    return 1
}

need_apt=()
[ -x /usr/bin/time ] || need_apt+=(time)
command -v g++ >/dev/null || need_apt+=(g++ make)
command -v lscpu >/dev/null || need_apt+=(util-linux)
if ! py="$(find_python)"; then
    # Debian 13 and later ship 3.12+; Debian 12's python3 is 3.11.
    need_apt+=(python3 python3-venv)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "compare.sh: apt-get install ${need_apt[*]}" >&2
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
py="${py:-$(find_python)}" || { echo "compare.sh: no Python >= 3.12 (braintrace 0.2.8 needs it); set PYTHON=/path/to/python3.12" >&2; exit 1; }

venv="$here/.venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
    rm -rf "$venv"
    "$py" -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import braintrace, brainstate, braintools, jax, brian2, matplotlib' 2>/dev/null; then
    echo "compare.sh: pip install the peers into $venv" >&2
    "$venv/bin/pip" install -q -r "$here/requirements.txt"
fi

echo "compare.sh: cargo build --release" >&2
(cd "$root" && cargo build --release --quiet --bin snnc)

exec "$venv/bin/python" "$here/compare.py" "$@"
