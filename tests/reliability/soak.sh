#!/usr/bin/env bash
# Soak: MINUTES of mixed traffic against one dacld serve while jobs train:
# two paced read loops over the read routes, a submission every 3 s (30
# iterations each), a cancel every 7 s, an SSE stream opened every 5 s, the
# finished jobs deleted every 20 s. The daemon's RSS (VmRSS) is sampled every
# 10 s. Passes when no request failed, and RSS after the first quarter (the
# warm-up: SQLite page caches, the allocator's arenas) grows by less than
# TOL_MB (default 8 MB) between the mean of the second quarter and the mean
# of the last. Run from an ASan build (-DDACL_SANITIZE=ON), it also fails on
# any leak or error that LeakSanitizer/ASan reports at shutdown.
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

start_daemon "$OUT/dacld.log" --http-threads 4 || exit 1
END=$((SECONDS + MINUTES * 60))
submit "$(job_json seed 60 10 30)" >/dev/null
first=$(num id)

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
deleter() {
  local ids
  while [ $SECONDS -lt $END ]; do
    sleep 20
    for st in succeeded canceled; do
      ids=$(curl -s --max-time 10 "$BASE/api/v1/jobs?status=$st&limit=100" | grep -o '"id":[0-9]*' | cut -d: -f2 | grep -vx "$first")
      for id in $ids; do
        curl -s --max-time 30 -o /dev/null -w '%{http_code}\n' -X DELETE "$BASE/api/v1/jobs/$id" >>"$OUT/deletes"
      done
    done
  done
}
for f in reader1 reader2 submitter canceller streamer deleter; do
  case $f in reader*) reader "${f#reader}" & ;; *) $f & ;; esac
  LOOPS="$LOOPS $!"
done

echo "seconds,rss_kb" >"$OUT/rss.csv"
t0=$SECONDS
while [ $SECONDS -lt $END ]; do
  echo "$((SECONDS - t0)),$(rss_kb "$PID")" >>"$OUT/rss.csv"
  kill -0 "$PID" 2>/dev/null || break
  sleep 10 # the sampling period
done
for p in $LOOPS; do wait "$p"; done
LOOPS=
echo "$((SECONDS - t0)),$(rss_kb "$PID")" >>"$OUT/rss.csv"
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

# RSS: warm-up = first quarter; compare the second quarter's mean with the last quarter's
n=$(($(wc -l <"$OUT/rss.csv") - 1))
stats=$(tail -n +2 "$OUT/rss.csv" | awk -F, -v n="$n" '
  { r[NR] = $2 } END {
    q = int(n / 4); if (q < 1) q = 1
    for (i = q + 1; i <= 2 * q; i++) { a += r[i]; na++ }
    for (i = n - q + 1; i <= n; i++) { b += r[i]; nb++ }
    max = 0; for (i = 1; i <= n; i++) if (r[i] > max) max = r[i]
    printf "%d %d %d %d %d", r[1], r[n], a / na, b / nb, max }')
read -r rss_first rss_last rss_q2 rss_q4 rss_max <<<"$stats"
growth_kb=$((rss_q4 - rss_q2))
echo "RSS: start $((rss_first / 1024)) MB, end $((rss_last / 1024)) MB, max $((rss_max / 1024)) MB;" \
  "mean of the 2nd quarter $((rss_q2 / 1024)) MB, of the last $((rss_q4 / 1024)) MB: growth $((growth_kb / 1024)) MB ($n samples)"
check "RSS grows less than $TOL_MB MB after the warm-up" test "$growth_kb" -lt $((TOL_MB * 1024))

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
