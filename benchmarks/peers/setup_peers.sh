#!/usr/bin/env bash
# Create the peers' virtual environments for bench_peers.py: .venvs/pssr and .venvs/careamics.
#   usage: benchmarks/peers/setup_peers.sh [PYTHON]      (default: python3.11)
# Each peer gets its own torch: torch and torchvision are installed first, as the pinned pair
# its requirements file names, so the peer's own install cannot replace them; every other
# package is pinned by the constraints file (a pip freeze of a working venv).
# Needs about 6 GB (pssr) + 5 GB (careamics) of disk: both torch builds are CUDA builds.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${1:-python3.11}
for peer in pssr careamics; do
    venv=.venvs/$peer
    [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
    "$venv/bin/pip" install --quiet -c "constraints-$peer.txt" $(grep -E '^torch(vision)?==' "requirements-$peer.txt")
    "$venv/bin/pip" install --quiet -c "constraints-$peer.txt" -r "requirements-$peer.txt"
    "$venv/bin/pip" check
    "$venv/bin/python" -c "import torch, torchvision; print('$peer:', torch.__version__, torchvision.__version__)"
done
