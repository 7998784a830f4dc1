#!/usr/bin/env bash
# Soak: MINUTES of mixed traffic against one dacld serve while jobs train:
# two paced read loops over the read routes, a submission every 3 s (30
# iterations each), a cancel every 7 s, an SSE stream opened every 5 s, the
# finished jobs deleted every 20 s. The daemon's RSS (VmRSS) is sampled every
# 10 s. Passes when no request failed and the daemon's idle RSS does not
# rise: a training job holds its model, data and batch buffers (about 30 MB
# here) while it runs and hands them back, so the RSS under load says more
# about how many jobs were running than about leaks. So the soak runs in two
# phases, a quarter of the time as warm-up (OpenBLAS buffers, SQLite page
# caches of every pooled connection, the allocator's arenas) and the rest,
# each ended by canceling every job and waiting until none runs; the idle
# RSS after the second phase may exceed that after the first by less than
# TOL_MB (default 8 MB). The whole series goes to rss.csv. Run from an
# ASan build (-DDACL_SANITIZE=ON), it also fails on any leak or error that
# LeakSanitizer/ASan reports at shutdown.
#
# Usage: soak.sh path/to/dacld MINUTES [OUT_DIR]
#   OUT_DIR receives rss.csv, counts and the daemon's log (default: a temp folder)
set -u
DACLD=$(realpath "${1:?usage: soak.sh path/to/dacld MINUTES [OUT_DIR]}")
MINUTES=${2:?usage: soak.sh path/to/dacld MINUTES [OUT_DIR]}
TOL_MB=${TOL_MB:-8}
W=$(mktemp -d /tmp/dacl-soak-XXXXXX)
OUT=${3:-$W/out}
mkdir -p "$OUT"
PID=
LOOPS=
cleanup() {
  for p in $LOOPS; do kill "$p" 2>/dev/null; done
  [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null
  if [ "${failed:-1}" -eq 0 ] && [ -z "${3:-}" ]; then rm -rf "$W"; else echo "left for a look: $W (figures in $OUT)"; fi
}
trap cleanup EXIT
. "$(dirname "$0")/lib.sh"
mkdir -p "$W/data"
make_dataset || { echo "dacld phantom failed"; exit 1; }
# ASan builds: report leaks at exit, keep going on the first report so the summary is whole
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=0:log_path=$OUT/asan}
export LSAN_OPTIONS=${LSAN_OPTIONS:-report_objects=0}

# idle_rss: the lowest of three samples 2 s apart (the sampling period)
idle_rss() {
  local a b c
  a=$(rss_kb "$PID"); sleep 2; b=$(rss_kb "$PID"); sleep 2; c=$(rss_kb "$PID")
  printf '%s\n' "$a" "$b" "$c" | sort -n | head -1
}
start_daemon "$OUT/dacld.log" --http-threads 4 || exit 1
submit "$(job_json seed 60 10 30)" >/dev/null
first=$(num id)
check "a first job runs to its end" test "$(wait_final "$first" 600)" = succeeded

# reader K: every read route in one curl per round (one connection), paced
reader() {
  local out=$OUT/reads$1 id
  while [ $SECONDS -lt $END ]; do
    id=$(curl -s --max-time 10 "$BASE/api/v1/jobs?limit=1" | grep -o '"id":[0-9]*' | head -1 | cut -d: -f2)
    curl -s --max-time 30 -w '%{http_code}\n' \
      -o /dev/null "$BASE/api/v1/jobs?limit=20" -o /dev/null "$BASE/api/v1/jobs/${id:-$first}" \
      -o /dev/null "$BASE/api/v1/jobs/${id:-$first}/metrics?max_points=200" \
      -o /dev/null "$BASE/api/v1/jobs/${id:-$first}/evaluation" -o /dev/null "$BASE/api/v1/jobs/$first/metrics.csv" \
      -o /dev/null "$BASE/metrics" -o /dev/null "$BASE/healthz" -o /dev/null "$BASE/api/v1/datasets" >>"$out"
    sleep 0.2 # pacing: two cores are shared with the jobs and other work
  done
}
submitter() {
  while [ $SECONDS -lt $END ]; do
    curl -s --max-time 30 -o /dev/null -w '%{http_code}\n' -H 'Content-Type: application/json' \
      --data-binary "$(job_json soak 30 10 30)" "$BASE/api/v1/jobs" >>"$OUT/submits"
    sleep 3
  done
}
canceller() { # the newest job that is queued or running; 409 when it ended meanwhile
  local id
  while [ $SECONDS -lt $END ]; do
    sleep 7
    id=$(curl -s --max-time 10 "$BASE/api/v1/jobs?status=queued&limit=1" | grep -o '"id":[0-9]*' | head -1 | cut -d: -f2)
    [ -n "$id" ] || id=$(curl -s --max-time 10 "$BASE/api/v1/jobs?status=running&limit=1" | grep -o '"id":[0-9]*' | head -1 | cut -d: -f2)
    [ -n "$id" ] && curl -s --max-time 30 -o /dev/null -w '%{http_code}\n' -X POST "$BASE/api/v1/jobs/$id/cancel" >>"$OUT/cancels"
  done
}
streamer() { # an SSE stream on the running job for 3 s, then dropped
  local id
  while [ $SECONDS -lt $END ]; do
    id=$(curl -s --max-time 10 "$BASE/api/v1/jobs?status=running&limit=1" | grep -o '"id":[0-9]*' | head -1 | cut -d: -f2)
    curl -sN --max-time 3 -o /dev/null -w '%{http_code}\n' "$BASE/api/v1/jobs/${id:-$first}/events" >>"$OUT/streams"
    sleep 2
  done
}
deleter() { # the finished jobs but the few newest, which a reader may be reading
  local ids newest
  while [ $SECONDS -lt $END ]; do
    sleep 20
    newest=$(curl -s --max-time 10 "$BASE/api/v1/jobs?limit=1" | grep -o '"id":[0-9]*' | head -1 | cut -d: -f2)
    for st in succeeded canceled; do
      ids=$(curl -s --max-time 10 "$BASE/api/v1/jobs?status=$st&limit=100" | grep -o '"id":[0-9]*' | cut -d: -f2 |
        awk -v n="${newest:-0}" -v f="$first" '$1 < n - 3 && $1 != f')
      for id in $ids; do
        curl -s --max-time 30 -o /dev/null -w '%{http_code}\n' -X DELETE "$BASE/api/v1/jobs/$id" >>"$OUT/deletes"
      done
    done
  done
}
running_or_queued() {
  curl -s --max-time 10 "$BASE/api/v1/jobs?status=$1&limit=1000" | grep -o '"id":[0-9]*' | cut -d: -f2
}
# phase SECONDS: the traffic for that long, sampling RSS every 10 s; then
# every job canceled and the daemon left idle
echo "seconds,rss_kb" >"$OUT/rss.csv"
t0=$SECONDS
phase() {
  END=$((SECONDS + $1))
  for f in reader1 reader2 submitter canceller streamer deleter; do
    case $f in reader*) reader "${f#reader}" & ;; *) $f & ;; esac
    LOOPS="$LOOPS $!"
  done
  while [ $SECONDS -lt $END ]; do
    echo "$((SECONDS - t0)),$(rss_kb "$PID")" >>"$OUT/rss.csv"
    kill -0 "$PID" 2>/dev/null || break
    sleep 10 # the sampling period
  done
  for p in $LOOPS; do wait "$p"; done
  LOOPS=
  echo "$((SECONDS - t0)),$(rss_kb "$PID")" >>"$OUT/rss.csv"
  for id in $(running_or_queued queued) $(running_or_queued running); do
    curl -s --max-time 30 -o /dev/null -X POST "$BASE/api/v1/jobs/$id/cancel"
  done
  for _ in $(seq 1 600); do
    [ -z "$(running_or_queued running)$(running_or_queued queued)" ] && break
    sleep 0.2
  done
  check "every job stopped after the phase" test -z "$(running_or_queued running)$(running_or_queued queued)"
}
phase $((MINUTES * 15))
idle_start=$(idle_rss)
phase $((MINUTES * 45))
idle_end=$(idle_rss)
check "the daemon is still up after $MINUTES min" curl -sf --max-time 5 -o /dev/null "$BASE/healthz"

count() { cat "$@" 2>/dev/null | wc -l; }
good() { cat "$@" 2>/dev/null | grep -c "^$2"; }
reads=$(count "$OUT"/reads*)
read_bad=$(cat "$OUT"/reads* 2>/dev/null | grep -vc '^200$')
submits=$(count "$OUT/submits"); submit_bad=$(grep -vc '^201$' "$OUT/submits")
cancels=$(count "$OUT/cancels"); cancel_bad=$(grep -vc '^20[02]$\|^409$' "$OUT/cancels")
streams=$(count "$OUT/streams"); stream_bad=$(grep -vc '^200$' "$OUT/streams")
deletes=$(count "$OUT/deletes"); delete_bad=$(grep -vc '^200$\|^404$' "$OUT/deletes")
req GET "/metrics" >/dev/null
served=$(grep '^dacld_http_requests_total' "$W/body" | awk '{ s += $2 } END { print s }')
echo "requests: $reads reads ($read_bad not 200), $submits submissions ($submit_bad not 201)," \
  "$cancels cancels ($cancel_bad unexpected), $streams SSE streams ($stream_bad not 200)," \
  "$deletes deletes ($delete_bad unexpected); the daemon counted $served requests"
check "every read answered 200" test "$read_bad" = 0 -a "$reads" -gt 0
check "every submission answered 201" test "$submit_bad" = 0 -a "$submits" -gt 0
check "every cancel answered 200/202 (or 409: it had ended)" test "$cancel_bad" = 0
check "every SSE stream opened with 200" test "$stream_bad" = 0
check "every delete answered 200 (or 404: deleted meanwhile)" test "$delete_bad" = 0

idle_growth=$((idle_end - idle_start))
echo "idle RSS: $idle_start kB after the warm-up phase, $idle_end kB after the soak: $idle_growth kB more"
check "the idle RSS grows less than $TOL_MB MB over the soak" test "$idle_growth" -lt $((TOL_MB * 1024))

# RSS under load: warm-up = first quarter; the floor (lowest sample) and mean
# of the second quarter against those of the last, for the record
n=$(($(wc -l <"$OUT/rss.csv") - 1))
stats=$(tail -n +2 "$OUT/rss.csv" | awk -F, -v n="$n" '
  { r[NR] = $2 } END {
    q = int(n / 4); if (q < 1) q = 1
    fa = fb = 1e12
    for (i = q + 1; i <= 2 * q; i++) { a += r[i]; na++; if (r[i] < fa) fa = r[i] }
    for (i = n - q + 1; i <= n; i++) { b += r[i]; nb++; if (r[i] < fb) fb = r[i] }
    max = 0; for (i = 1; i <= n; i++) if (r[i] > max) max = r[i]
    printf "%d %d %d %d %d %d %d", r[1], r[n], a / na, b / nb, fa, fb, max }')
read -r rss_first rss_last rss_q2 rss_q4 floor_q2 floor_q4 rss_max <<<"$stats"
echo "RSS under load (kB): start $rss_first, end $rss_last, max $rss_max; 2nd quarter floor $floor_q2 mean $rss_q2;" \
  "last quarter floor $floor_q4 mean $rss_q4 ($n samples, every 10 s)"

stop_daemon
rc=$?
check "SIGTERM: a clean stop (exit $rc)" test "$rc" = 0
if ls "$OUT"/asan* >/dev/null 2>&1; then
  echo "sanitizer reports:"; head -40 "$OUT"/asan*
  bad "ASan/LeakSanitizer reported problems"
elif grep -q 'Sanitizer' "$OUT/dacld.log"; then
  grep -A20 'Sanitizer' "$OUT/dacld.log" | head -40
  bad "ASan/LeakSanitizer reported problems"
else
  ok "no sanitizer report at shutdown"
fi
check "the database passes PRAGMA integrity_check" test "$(sqlite3 "$W/var/dacld.db" 'PRAGMA integrity_check')" = ok
echo "soak ($MINUTES min): $passed passed, $failed failed"
[ "$failed" -eq 0 ]
