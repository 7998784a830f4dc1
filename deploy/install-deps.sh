#!/usr/bin/env bash
# Installs every Debian 12 package dacld needs to build, test and benchmark.
# Idempotent: packages already present are left as they are.
#   deploy/install-deps.sh          build + test dependencies
#   deploy/install-deps.sh --bench  also PyTorch, jemalloc and wrk for tests/bench (about 1 GB)
#   deploy/install-deps.sh --fixtures  also PyTorch and SciPy to regenerate tests/reference
set -euo pipefail

want_bench=0
want_fixtures=0
for arg in "$@"; do
  case "$arg" in
    --bench) want_bench=1 ;;
    --fixtures) want_fixtures=1 ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "install-deps.sh: unknown option '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

pkgs=(
  build-essential cmake pkg-config
  libopenblas-dev libopenblas0-pthread
  libcjson-dev libsqlite3-dev sqlite3 libmicrohttpd-dev
  libpng-dev zlib1g-dev libhdf5-dev libnifti2-dev libznz-dev
  libcmocka-dev curl
  chromium nodejs
  clang libclang-rt-14-dev
)
# the dashboard test (tests/web): Debian's npm, unless the nodejs package brings its own
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
[ "$want_bench" = 1 ] && pkgs+=(python3-torch python3-numpy libjemalloc2 wrk)
[ "$want_fixtures" = 1 ] && pkgs+=(python3-torch python3-numpy python3-scipy python3-h5py)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
else
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# playwright-core for the dashboard test, from the npm registry, pinned by its package-lock.json
web_tests="$(dirname "$0")/../tests/web"
if [ ! -f "$web_tests/node_modules/playwright-core/package.json" ]; then
  echo "install-deps: npm ci in tests/web"
  npm ci --prefix "$web_tests" --no-audit --no-fund
fi
