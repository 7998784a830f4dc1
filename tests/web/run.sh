#!/usr/bin/env bash
# The dashboard in a real browser: starts a dacld on a free loopback port with
# a temporary state folder and a copy of web/ as its --web-root, checks the
# static file serving with curl (types, caching, traversal, symlinks out),
# then drives Debian's headless Chromium with playwright-core
# (dashboard.test.mjs). The daemon is always killed.
# Usage: tests/web/run.sh path/to/dacld path/to/source
#   OUT_DIR  where screenshots go (default ./web-test-out)
#   CHROMIUM the browser (default /usr/bin/chromium, else chromium on PATH)
# Exit 77 (skipped) only when Chromium or Node.js is not installed;
# deploy/install-deps.sh installs both.
set -u
DACLD=${1:?usage: run.sh path/to/dacld path/to/source}
SRC=${2:?usage: run.sh path/to/dacld path/to/source}
DACLD=$(realpath "$DACLD")
SRC=$(realpath "$SRC")
OUT_DIR=$(realpath -m "${OUT_DIR:-$PWD/web-test-out}")

CHROMIUM=${CHROMIUM:-}
if [ -z "$CHROMIUM" ]; then
  for c in /usr/bin/chromium "$(command -v chromium 2>/dev/null)" "$(command -v chromium-browser 2>/dev/null)"; do
    [ -n "$c" ] && [ -x "$c" ] && { CHROMIUM=$c; break; }
  done
fi
if [ -z "$CHROMIUM" ] || ! command -v node >/dev/null; then
  echo "SKIP: the dashboard test needs Chromium and Node.js (found chromium='${CHROMIUM:-none}'," \
       "node='$(command -v node || echo none)'); run deploy/install-deps.sh" >&2
  exit 77
fi

# playwright-core from the npm registry, pinned by package-lock.json
if [ ! -f "$SRC/tests/web/node_modules/playwright-core/package.json" ]; then
  echo "installing tests/web's node modules (npm ci)"
  npm ci --prefix "$SRC/tests/web" --no-audit --no-fund || { echo "FAIL: npm ci" >&2; exit 1; }
fi

W=$(mktemp -d /tmp/dacl-web-XXXXXX)
PID=
cleanup() {
  [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP # a ctest timeout still kills the daemon
mkdir -p "$W/data" "$OUT_DIR"
TOKEN=web-token-$$
printf '%s\n' "$TOKEN" >"$W/token"

# A copy of web/ with two symlinks that lead out of it: neither may be served.
cp -r "$SRC/web" "$W/web"
printf 'not-for-the-web-%s\n' $$ >"$W/secret.txt"
ln -s "$W/secret.txt" "$W/web/escape.txt"
ln -s "$W" "$W/web/vendor/up"

"$DACLD" serve --listen 127.0.0.1:0 --state "$W/var" --data-root "$W/data" --web-root "$W/web" \
  --token-file "$W/token" >"$W/log" 2>&1 &
PID=$!
BASE=
for _ in $(seq 200); do # bounded: 20 s
  BASE=$(sed -n 's/^dacld: listening on \(http:[^ ]*\)$/\1/p' "$W/log")
  [ -n "$BASE" ] && curl -sf --max-time 2 "$BASE/healthz" -o /dev/null && break
  kill -0 "$PID" 2>/dev/null || break
  BASE=
  sleep 0.1
done
if [ -z "$BASE" ]; then
  echo "FAIL: dacld did not start" >&2
  cat "$W/log" >&2
  exit 1
fi

passed=0
failed=0
check() { local desc=$1; shift; if "$@"; then passed=$((passed + 1)); echo "ok: $desc"; else failed=$((failed + 1)); echo "FAIL: $desc"; fi; }
# fetch PATH: prints "status content-type", body in $W/body, headers in $W/headers
fetch() { curl -s --path-as-is --max-time 10 -o "$W/body" -D "$W/headers" -w '%{http_code} %{content_type}' "$BASE$1"; }
header() { grep -i "^$1:" "$W/headers" | cut -d' ' -f2- | tr -d '\r'; }

check "GET /: the dashboard, text/html" test "$(fetch /)" = "200 text/html; charset=utf-8"
check "... revalidated, not stored" test "$(header Cache-Control)" = no-cache
etag=$(header ETag)
code=$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "$BASE/")
check "... 304 for the same ETag" test "$code" = 304
check "app.js: text/javascript" test "$(fetch /app.js)" = "200 text/javascript; charset=utf-8"
check "style.css: text/css" test "$(fetch /style.css)" = "200 text/css; charset=utf-8"
check "vendored uPlot: text/javascript, cached a day" \
  sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code} %{content_type}' '$BASE/vendor/uplot/uPlot.esm.js')\" = '200 text/javascript; charset=utf-8' ]"
fetch /vendor/uplot/uPlot.min.css >/dev/null
check "... its stylesheet, max-age" test "$(header Cache-Control)" = "public, max-age=86400"
check "a missing file: 404 JSON" \
  sh -c "[ \"\$(curl -s -o '$W/body' -w '%{http_code} %{content_type}' '$BASE/missing.js')\" = '404 application/json' ] && grep -q '\"code\":\"not_found\"' '$W/body'"
for p in /.. /../secret.txt /%2e%2e/secret.txt /vendor/..%2f..%2fsecret.txt /vendor/up/secret.txt \
         /escape.txt /.hidden.js /vendor/uplot/..; do
  check "$p: 404, nothing outside the web root" sh -c "[ \"\$(curl -s --path-as-is -o '$W/body' -w '%{http_code}' '$BASE$p')\" = 404 ] && ! grep -q not-for-the-web '$W/body'"
done
check "/healthz is still the API's" sh -c "curl -s '$BASE/healthz' | grep -q '\"status\":\"ok\"'"

echo "== the dashboard in headless Chromium ($CHROMIUM)"
BASE="$BASE" TOKEN="$TOKEN" OUT_DIR="$OUT_DIR" CHROMIUM="$CHROMIUM" \
  node "$SRC/tests/web/dashboard.test.mjs"
rc=$?
if [ "$rc" != 0 ]; then
  failed=$((failed + 1))
  echo "--- dacld log (tail)"
  tail -n 30 "$W/log"
fi
echo "web: $passed shell checks passed, $failed failed; browser test exit $rc; screenshots in $OUT_DIR/screenshots"
[ "$failed" = 0 ]
