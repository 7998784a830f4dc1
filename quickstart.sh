#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install what dacld needs, build
# it, and run it. Today that is the engine's benchmark against PyTorch
# (tests/bench/run.sh); it becomes `dacld serve` with a default job as the
# daemon lands.
set -euo pipefail
cd "$(dirname "$0")"
deploy/install-deps.sh --bench
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
./build/dacld info --model unet --in-channels 1 --classes 4 --batch 24 --patch 256
exec tests/bench/run.sh "$@"
