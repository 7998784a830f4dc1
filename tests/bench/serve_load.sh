#!/usr/bin/env bash
# Serving under load (issue #6): does answering the API slow training down?
# Starts dacld on a free loopback port with a temporary state folder, submits
# one long phantom training job, and measures the job's images/s in windows
# of SECONDS each: quiet, then under load and quiet again, CYCLES times. The load is wrk
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
# Accept-Encoding. CYCLES=N (default 3) runs N load windows, each followed by
# a quiet one, and compares each with its two quiet neighbours, so that a
# machine whose speed drifts by a few per cent from minute to minute is seen
# as drift; the mean's standard error is over this run's windows (separate
# runs differ by more: take several). LOAD_PATHS (space-
# separated, {id} the job's) replaces the two routes, e.g. "/healthz" for the
# floor of any answer. Also printed: interrupts and the training threads'
# context switches per second in each window. Builds nothing.
set -euo pipefail
DACLD=$(realpath "${1:?usage: serve_load.sh path/to/dacld [SECONDS] [RATE] [CONNECTIONS]}")
SECS=${2:-30}
HISTORY=${HISTORY:-30000}
ENCODING=${ENCODING-gzip, deflate, br}
RATE=${3:-500}
CONNS=${4:-25}
CYCLES=${CYCLES:-3}
[ -n "${LOAD_PATHS:-}" ] || LOAD_PATHS='/api/v1/jobs/{id} /api/v1/jobs/{id}/metrics?max_points=1000'
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
# the interrupts that stop a running thread (TLB shootdowns, function calls and
# rescheduling, summed over the cores) and the context switches of the
# daemon's other threads (the training's), voluntary + involuntary: what the
# load costs training beyond the CPU it takes
kstats() {
  local t sw=0 inv=0
  for t in /proc/"$PID"/task/*; do
    [ "$(cat "$t/comm" 2>/dev/null)" = MHD-worker ] && continue
    read -r a b < <(awk '/^voluntary_ctxt/ { v = $2 } /^nonvoluntary_ctxt/ { n = $2 } END { print v + 0, n + 0 }' "$t/status" 2>/dev/null) || continue
    sw=$((sw + a)) inv=$((inv + b))
  done
  awk -v sw="$sw" -v inv="$inv" '$1 ~ /^(TLB|CAL|RES):$/ { s = 0; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i; v[$1] = s }
    END { print v["TLB:"] + 0, v["CAL:"] + 0, v["RES:"] + 0, sw, inv }' /proc/interrupts
}
# window NAME CMD...: runs CMD (sleep or wrk) and records the job's images/s over it
window() {
  local name=$1 t0 i0 c0 h0 t1 i1 c1 h1 k0 k1
  shift
  t0=$(now) i0=$(iteration) c0=$(cpu_ticks) h0=$(http_ticks) k0=$(kstats)
  "$@"
  t1=$(now) i1=$(iteration) c1=$(cpu_ticks) h1=$(http_ticks) k1=$(kstats)
  awk -v n="$name" -v a="$k0" -v b="$k1" -v t0="$t0" -v t1="$t1" 'BEGIN { split(a, x, " "); split(b, y, " "); dt = t1 - t0
    printf "%s %.0f %.0f %.0f %.0f %.0f\n", n, (y[1] - x[1]) / dt, (y[2] - x[2]) / dt, (y[3] - x[3]) / dt, (y[4] - x[4]) / dt, (y[5] - x[5]) / dt }' >>"$W/kwindows"
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

# the paths the load cycles through ({id}: the job's)
read -r -a LOAD <<<"${LOAD_PATHS//\{id\}/$ID}"

DELAY_MS=$(awk -v c="$CONNS" -v r="$RATE" 'BEGIN { printf "%d", c * 1000 / r }')
cat >"$W/load.lua" <<EOF
-- cycles through the paths given after --; each connection waits $DELAY_MS ms between requests.
-- The requests are formatted once (wrk.format in request() would do it for every request:
-- CPU the client would take from the cores the training shares with it).
local reqs = {}
local n = 0
init = function(args)
  local headers = {}
  if "$ENCODING" ~= "" then headers["Accept-Encoding"] = "$ENCODING" end
  for i, p in ipairs(args) do reqs[i] = wrk.format("GET", p, headers) end
end
request = function()
  n = n + 1
  return reqs[n % #reqs + 1]
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

# quiet, then CYCLES times (load, quiet): each load window is compared with the
# quiet windows either side of it, so a machine that drifts over the run is
# seen as drift and not as the load's cost
window quiet-0 sleep "$SECS"
for c in $(seq 1 "$CYCLES"); do
  window "load-$c" run_wrk "$W/wrk-$c.out" "${LOAD[@]}"
  window "quiet-$c" sleep "$SECS"
done
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
read -r creqs cdur _ _ _ _ _ cp50 cp99 cpmax < <(grep '^WRK ' "$W/wrk-control.out" | cut -d' ' -f2-)

echo "serve_load: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, job batch $BATCH, windows of ${SECS} s, $CYCLES load window(s), history $HISTORY steps$([ "${HISTORY_AFTER:-0}" = 1 ] && echo ' after the live ones')"
echo "load: wrk -t1 -c$CONNS, ${DELAY_MS} ms between a connection's requests (offered ${RATE} req/s), Accept-Encoding: ${ENCODING:-none}"
echo "      on ${LOAD[*]}"
# per load window: requests, duration, errors, p50, p99, max
for c in $(seq 1 "$CYCLES"); do
  read -r reqs dur econn eread ewrite estatus etimeout p50 p99 pmax < <(grep '^WRK ' "$W/wrk-$c.out" | cut -d' ' -f2-)
  echo "$c $reqs $dur $((econn + eread + ewrite + estatus + etimeout)) $p50 $p99 $pmax $econn $eread $ewrite $estatus $etimeout"
done >"$W/loads"
# over the load windows: requests, seconds, errors, the worst p99 and the max
read -r reqs dur errors p99 pmax < <(awk '{ r += $2; d += $3; e += $4; if ($6 > p) p = $6; if ($7 > m) m = $7 }
  END { print r, d, e, p + 0, m + 0 }' "$W/loads")
awk -v r="$reqs" -v d="$dur" 'BEGIN { printf "  achieved    %.0f req/s (%d requests in %.1f s)\n", r / d, r, d }'
echo "  errors      $errors"
echo "  latency     p99 $p99 ms (the worst window)   max $pmax ms"
if [ "$CYCLES" -gt 1 ]; then awk '{ printf "              window %d: p50 %s ms, p99 %s ms, max %s ms; errors %d (connect %s, read %s, write %s, non-2xx/3xx %s, timeout %s)\n", $1, $5, $6, $7, $4, $8, $9, $10, $11, $12 }' "$W/loads"
else awk '{ printf "              p50 %s ms; errors: connect %s, read %s, write %s, non-2xx/3xx %s, timeout %s\n", $5, $8, $9, $10, $11, $12 }' "$W/loads"; fi
awk -v r="$creqs" -v d="$cdur" -v a="$cp50" -v b="$cp99" -v c="$cpmax" \
  'BEGIN { printf "  control     GET /healthz at the same rate, after: %.0f req/s, p50 %s ms, p99 %s ms, max %s ms\n", r / d, a, b, c }'
echo "  in dacld    job:     $(server_side '/api/v1/jobs/{id}')"
echo "              metrics: $(server_side '/api/v1/jobs/{id}/metrics') (each series had $points points at the end;"
echo "                       the first answer, before the windows, took $first_ms ms)"
echo "training (images/s; iterations in the window; CPU of the daemon, of its HTTP threads, in cores; wrk's CPU):"
while read -r n ips it _ cpu http; do
  c=${n#load-}
  extra=
  [ "$c" != "$n" ] && extra="; wrk used $(cat "$W/wrk-$c.out.cpu") s of CPU"
  printf '  %-9s %8s  (%d it; %s, HTTP %s%s)\n' "$n" "$ips" "$it" "$cpu" "$http" "$extra"
done <"$W/windows"
echo "per second (TLB shootdowns, function-call and rescheduling interrupts, all cores; the training threads' voluntary and involuntary switches):"
while read -r n tlb cal res sw inv; do
  printf '  %-9s TLB %s  CAL %s  RES %s  switches %s + %s\n' "$n" "$tlb" "$cal" "$res" "$sw" "$inv"
done <"$W/kwindows"
awk -v p99="$p99" -v e="$errors" -v cores="$(nproc)" '
  { ips[$1] = $2; http[$1] = $6 }
  END {
    for (c = 1; ("load-" c) in ips; c++) {
      a = ips["quiet-" (c - 1)]; b = ips["quiet-" c]; q = (a + b) / 2
      s[c] = 100 * (1 - ips["load-" c] / q); d = 100 * (a > b ? a - b : b - a) / q
      sum += s[c]; h += http["load-" c]; n = c
      printf "  slowdown      %.1f %% in load window %d against its quiet neighbours %.2f (which differ by %.1f %%)\n", s[c], c, q, d
    }
    m = sum / n; v = 0
    for (c = 1; c <= n; c++) v += (s[c] - m) ^ 2
    if (n > 1) printf "  mean          %.1f %% +- %.1f (standard error of %d windows)\n", m, sqrt(v / (n - 1) / n), n
    printf "  bound         the HTTP threads took %.1f %% of the %d cores: the slowdown on an idle machine\n",
      100 * h / n / cores, cores
    printf "targets: p99 < 10 ms %s, no errors %s, slowdown < 5 %% %s\n", p99 < 10 ? "met" : "MISSED",
      e == 0 ? "met" : "MISSED", m < 5 ? "met" : "MISSED"
  }' "$W/windows"
kill -TERM "$PID" && wait "$PID" 2>/dev/null || true
PID=
