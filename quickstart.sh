#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install what dacld needs, build
# it, and train a small default job (CPS co-training on the built-in cardiac
# phantom, 2 labeled cases, 1000 iterations at 64x64, about 2-3 minutes on
# 2 cores) with `dacld train`, then print the best validation metrics.
# Extra arguments go to `dacld train` (e.g. --threads 4). The daemon takes
# over this role when `dacld serve` lands.
set -euo pipefail
cd "$(dirname "$0")"
deploy/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
out=${DACLD_OUT:-var/quickstart}
mkdir -p "$out"
./build/dacld train deploy/jobs/quickstart.json --out "$out" "$@"
echo
echo "best validation metrics ($out/summary.json):"
cat "$out/summary.json"
