#!/usr/bin/env bash
# Builds dacld and runs the default test suite (ctest). Extra arguments go to
# ctest, e.g. ./test.sh -L grad   or   ./test.sh -R reference
set -euo pipefail
cd "$(dirname "$0")"
deploy/install-deps.sh >/dev/null
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -LE slow "$@"
