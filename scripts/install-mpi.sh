#!/usr/bin/env bash
# Installs what `--features mpi` needs from Debian's packages: Open MPI (mpirun, the
# library and headers) and libclang (the `mpi` crate generates its bindings with
# bindgen). Nothing is done when they are there already. Exits non-zero when they
# cannot be installed (not root, no package registry).
set -euo pipefail
have() { command -v mpirun > /dev/null && [ -e /usr/include/x86_64-linux-gnu/mpi/mpi.h -o -e /usr/include/mpi.h -o -n "$(command -v mpicc)" ] && ls /usr/lib/*/libclang*.so* > /dev/null 2>&1; }
have && exit 0
[ "$(id -u)" = 0 ] || { echo "install-mpi: not root; install openmpi-bin libopenmpi-dev libclang-dev" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq openmpi-bin libopenmpi-dev libclang-dev > /dev/null 2>&1 \
    || { apt-get update -qq > /dev/null && apt-get install -y -qq openmpi-bin libopenmpi-dev libclang-dev > /dev/null; }
have
