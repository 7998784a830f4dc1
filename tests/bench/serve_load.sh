#!/usr/bin/env bash
# Serving under load (issue #6): does answering the API slow training down?
# Starts dacld on a free loopback port with a temporary state folder, submits
# one long phantom training job, and measures the job's images/s in three
# windows of SECONDS each: quiet, under load, quiet again. The load is wrk
# (Debian package `wrk`, `deploy/install-deps.sh --bench`) offering RATE req/s
# in total, alternating GET /api/v1/jobs/{id} and
# GET /api/v1/jobs/{id}/metrics?max_points=1000; every connection waits
# CONNECTIONS/RATE seconds between its requests (wrk has no fixed-rate mode).
# Prints the achieved rate, p50/p99 latency, requests, errors (socket errors
# and non-2xx/3xx answers), images/s in each window, the slowdown against the
# mean of the two quiet windows, and the CPU the daemon, its HTTP threads and
# wrk used. Two figures make it readable on a shared machine: a control, the
# same load on GET /healthz (a route that does nothing) after the windows,
# which is the latency the machine gives any answer; and the HTTP threads'
# CPU, which bounds the slowdown on an otherwise idle machine (they take
# that much of the cores the training would have).
# Targets: p99 < 10 ms, no errors, slowdown < 5 %.
# Usage: serve_load.sh path/to/dacld [SECONDS=30] [RATE=500] [CONNECTIONS=25]
# Environment: JOB overrides the training job (JSON). HISTORY=N (default 30000,
# the paper's iteration count; 0: none) gives every series of the job N steps
# before the windows, as if it were late in a long run: they are written into
# its database with sqlite3 at steps 1..N (the steps it has trained keep their
# values; the ones it trains in the windows replace theirs), so each /metrics
# answer folds N points, as the dashboard's would on a long job, and the rows a
# flush brings are as cheap to take in as the appended ones of a real long job.
# HISTORY_AFTER=1 writes them at steps 1000001.. instead (before 2026-11-26
# 11:00 the only way): then every flushed row lands in front of the history, a
# path a real job never takes (dacld inserts it in order, moving the 30000
# points behind it). ENCODING (default "gzip, deflate, br", what
# the browser showing the dashboard sends; "" for none) is the requests'
# Accept-Encoding. Builds nothing.
set -euo pipefail
DACLD=$(realpath "${1:?usage: serve_load.sh path/to/dacld [SECONDS] [RATE] [CONNECTIONS]}")
SECS=${2:-30}
HISTORY=${HISTORY:-30000}
ENCODING=${ENCODING-gzip, deflate, br}
RATE=${3:-500}
CONNS=${4:-25}
command -v wrk >/dev/null || { echo "serve_load: wrk is missing (deploy/install-deps.sh --bench)" >&2; exit 2; }
# The quickstart's CPS job on the cardiac phantom, long enough for every window,
# with no validation round or checkpoint inside them to blur the rate.
JOB=${JOB:-'{"name": "serve-load", "dataset": {"path": "phantom:cardiac", "labeled": 2},
  "method": {"name": "cps"}, "train": {"iterations": 1000000, "batch": 8, "labeled_batch": 4,
  "patch": [64, 64], "val_every": 1000000, "checkpoint_every": 1000000, "threads": 2}}'}
BATCH=$(printf '%s' "$JOB" | grep -o '"batch": *[0-9]*' | grep -o '[0-9]*$')

W=$(mktemp -d /tmp/dacl-serve-load-XXXXXX)
PID=
cleanup() {
  [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W/data"
: >"$W/log"
"$DACLD" serve --listen 127.0.0.1:0 --state "$W/var" --data-root "$W/data" --workers 1 >"$W/log" 2>&1 &
PID=$!
PORT=
for _ in $(seq 1 200); do
  PORT=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$W/log" | head -1) || true
  [ -n "$PORT" ] && curl -sf --max-time 2 "http://127.0.0.1:$PORT/healthz" >/dev/null && break
  PORT=
  kill -0 "$PID" 2>/dev/null || break
  sleep 0.1
done
[ -n "$PORT" ] || { echo "serve_load: dacld did not come up:" >&2; cat "$W/log" >&2; exit 1; }
BASE=http://127.0.0.1:$PORT

ID=$(curl -sf --max-time 10 -X POST --data-binary "$JOB" "$BASE/api/v1/jobs" | sed -n 's/^{"id":\([0-9]*\),.*/\1/p')
[ -n "$ID" ] || { echo "serve_load: the job was refused" >&2; exit 1; }

now() { date +%s.%N; }
iteration() { curl -sf --max-time 5 "$BASE/api/v1/jobs/$ID" | grep -o '"iteration":[0-9]*' | head -1 | cut -d: -f2; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; } # the daemon's user + system time
# the same for libmicrohttpd's threads alone (named MHD-worker): what answering costs
http_ticks() {
  local t n=0
  for t in /proc/"$PID"/task/*; do
    [ "$(cat "$t/comm" 2>/dev/null)" = MHD-worker ] && n=$((n + $(awk '{print $14 + $15}' "$t/stat")))
  done
  echo "$n"
}
HZ=$(getconf CLK_TCK)
# window NAME CMD...: runs CMD (sleep or wrk) and records the job's images/s over it
window() {
  local name=$1 t0 i0 c0 h0 t1 i1 c1 h1
  shift
  t0=$(now) i0=$(iteration) c0=$(cpu_ticks) h0=$(http_ticks)
  "$@"
  t1=$(now) i1=$(iteration) c1=$(cpu_ticks) h1=$(http_ticks)
  awk -v n="$name" -v di=$((i1 - i0)) -v b="$BATCH" -v t0="$t0" -v t1="$t1" -v dc=$((c1 - c0)) -v dh=$((h1 - h0)) \
    -v hz="$HZ" 'BEGIN { dt = t1 - t0; printf "%s %.3f %d %.2f %.2f %.3f\n", n, di * b / dt, di, dt, dc / hz / dt, dh / hz / dt }' \
    >>"$W/windows"
}

# warm-up: the phantom is generated and the first iterations run
for _ in $(seq 1 600); do
  it=$(iteration || true)
  [ "${it:-0}" -ge 20 ] && break
  sleep 0.2
done
[ "${it:-0}" -ge 20 ] || { echo "serve_load: the job does not train:" >&2; tail -5 "$W/log" >&2; exit 1; }

if [ "$HISTORY" -gt 0 ]; then
  command -v sqlite3 >/dev/null || { echo "serve_load: HISTORY needs sqlite3 (deploy/install-deps.sh)" >&2; exit 2; }
  sqlite3 "$W/var/dacld.db" "PRAGMA busy_timeout = 10000;
    WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < $HISTORY)
    INSERT OR IGNORE INTO metrics (job, name, step, value)
      SELECT $ID, n.name, $([ "${HISTORY_AFTER:-0}" = 1 ] && echo '1000000 +') s.i, 1.0 / (1 + s.i) + (abs(random()) % 1000) / 1e5
      FROM s, metric_names n WHERE n.job = $ID;" >/dev/null
fi

# The first /metrics answer of a job reads its whole history (later ones only
# what was flushed since): timed on its own, before the windows, which then
# measure the steady state a dashboard polling the job sees.
first_ms=$(curl -sf -o /dev/null -w '%{time_total}' "$BASE/api/v1/jobs/$ID/metrics?max_points=1000" |
  awk '{ printf "%.1f", $1 * 1000 }')

DELAY_MS=$(awk -v c="$CONNS" -v r="$RATE" 'BEGIN { printf "%d", c * 1000 / r }')
cat >"$W/load.lua" <<EOF
-- cycles through the paths given after --; each connection waits $DELAY_MS ms between requests
local paths = {}
local n = 0
init = function(args) paths = args end
local headers = {}
if "$ENCODING" ~= "" then headers["Accept-Encoding"] = "$ENCODING" end
request = function()
  n = n + 1
  return wrk.format("GET", paths[n % #paths + 1], headers)
end
delay = function() return $DELAY_MS end
done = function(s, latency, requests)
  local e = s.errors
  io.write(string.format("WRK %d %.3f %d %d %d %d %d %.3f %.3f %.3f\\n", s.requests, s.duration / 1e6,
    e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(50) / 1e3,
    latency:percentile(99) / 1e3, latency.max / 1e3))
end
EOF
# CPU seconds of this shell's finished children, from bash's `times` (run in this
# shell, and not in a pipeline: a subshell would count its own children only)
children_cpu() { awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); print u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$1"; }
run_wrk() { # OUT PATH...: wrk at the offered rate on the paths, its CPU time in OUT.cpu
  local out=$1
  shift
  times >"$W/times0"
  # in a session of its own: with autogroup scheduling (Debian's default) a
  # session shares the CPU as one, and the load would otherwise be charged to
  # the daemon's share; in a deployment the clients are elsewhere
  setsid -w wrk -t1 -c"$CONNS" -d"${SECS}s" --timeout 2s -s "$W/load.lua" "$BASE" -- "$@" >"$out" 2>&1
  times >"$W/times1"
  awk -v a="$(children_cpu "$W/times0")" -v b="$(children_cpu "$W/times1")" 'BEGIN { printf "%.1f", b - a }' \
    >"$out.cpu"
}

window quiet-before sleep "$SECS"
window load run_wrk "$W/wrk.out" "/api/v1/jobs/$ID" "/api/v1/jobs/$ID/metrics?max_points=1000"
window quiet-after sleep "$SECS"
# the control: the same load on a route that does nothing (GET /healthz), under
# the same training: the latency this machine gives any answer right now
run_wrk "$W/wrk-control.out" /healthz

points=$(curl -sf "$BASE/api/v1/jobs/$ID/metrics?names=loss&max_points=2" | grep -o '"points":[0-9]*' | cut -d: -f2)
# the daemon's own view (its Prometheus histograms): time in the handler, without the network and wrk
curl -sf "$BASE/metrics" >"$W/prom"
server_side() { # ROUTE: mean ms and the share answered within 1 ms
  awk -v r="route=\"$1\"" 'index($0, "method=\"GET\"," r) {
    if ($0 ~ /_sum\{/) sum = $2; if ($0 ~ /_count\{/) cnt = $2; if ($0 ~ /le="0.001"/) fast = $2 }
    END { if (cnt) printf "mean %.3f ms, %.1f %% within 1 ms (%d requests)", 1000 * sum / cnt, 100 * fast / cnt, cnt }' "$W/prom"
}
read -r reqs dur econn eread ewrite estatus etimeout p50 p99 pmax < <(grep '^WRK ' "$W/wrk.out" | cut -d' ' -f2-)
read -r _ ips_before it_before _ cpu_before http_before < <(grep '^quiet-before ' "$W/windows")
read -r _ ips_load it_load _ cpu_load http_load < <(grep '^load ' "$W/windows")
read -r _ ips_after it_after _ cpu_after http_after < <(grep '^quiet-after ' "$W/windows")
wrk_cpu=$(cat "$W/wrk.out.cpu")
read -r creqs cdur _ _ _ _ _ cp50 cp99 cpmax < <(grep '^WRK ' "$W/wrk-control.out" | cut -d' ' -f2-)
errors=$((econn + eread + ewrite + estatus + etimeout))

echo "serve_load: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, job batch $BATCH, windows of ${SECS} s, history $HISTORY steps$([ "${HISTORY_AFTER:-0}" = 1 ] && echo ' after the live ones')"
echo "load: wrk -t1 -c$CONNS, ${DELAY_MS} ms between a connection's requests (offered ${RATE} req/s), Accept-Encoding: ${ENCODING:-none}"
awk -v r="$reqs" -v d="$dur" 'BEGIN { printf "  achieved    %.0f req/s (%d requests in %.1f s)\n", r / d, r, d }'
echo "  latency     p50 ${p50} ms   p99 ${p99} ms   max ${pmax} ms"
awk -v r="$creqs" -v d="$cdur" -v a="$cp50" -v b="$cp99" -v c="$cpmax" \
  'BEGIN { printf "  control     GET /healthz at the same rate, after: %.0f req/s, p50 %s ms, p99 %s ms, max %s ms\n", r / d, a, b, c }'
echo "  errors      $errors (connect $econn, read $eread, write $ewrite, non-2xx/3xx $estatus, timeout $etimeout)"
echo "  in dacld    job:     $(server_side '/api/v1/jobs/{id}')"
echo "              metrics: $(server_side '/api/v1/jobs/{id}/metrics') (each series had $points points at the end;"
echo "                       the first answer, before the windows, took $first_ms ms)"
echo "training (images/s; iterations in the window; CPU of the daemon, of its HTTP threads, in cores):"
echo "  quiet before  $ips_before  ($it_before it; $cpu_before, HTTP $http_before)"
echo "  under load    $ips_load  ($it_load it; $cpu_load, HTTP $http_load; wrk used ${wrk_cpu} s of CPU)"
echo "  quiet after   $ips_after  ($it_after it; $cpu_after, HTTP $http_after)"
awk -v a="$ips_before" -v b="$ips_after" -v l="$ips_load" -v p99="$p99" -v e="$errors" -v h="$http_load" \
  -v cores="$(nproc)" 'BEGIN {
  q = (a + b) / 2; s = 100 * (1 - l / q); d = 100 * (a > b ? a - b : b - a) / q
  printf "  slowdown      %.1f %% against the quiet mean %.2f (the quiet windows differ by %.1f %%%s)\n", s, q, d,
    (d > 5 ? ": more than the target, which is noise from the machine" : "")
  printf "  bound         the HTTP threads took %.1f %% of the %d cores: the slowdown on an idle machine\n",
    100 * h / cores, cores
  printf "targets: p99 < 10 ms %s, no errors %s, slowdown < 5 %% %s\n", p99 < 10 ? "met" : "MISSED",
    e == 0 ? "met" : "MISSED", s < 5 ? "met" : "MISSED"
}'
kill -TERM "$PID" && wait "$PID" 2>/dev/null || true
PID=
