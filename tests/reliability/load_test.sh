#!/usr/bin/env bash
# Load: while two jobs train, a burst of N submissions (16 at a time). Every
# one must get 201 (there is no queue cap: a valid job is always accepted and
# queued), all must appear in the list, reads keep answering during the burst
# (wrk when installed), cancelling them all works, and the database passes
# PRAGMA integrity_check after a clean stop.
# Usage: load_test.sh path/to/dacld [N (200)] [WRK_SECONDS (10)]
set -u
DACLD=$(realpath "${1:?usage: load_test.sh path/to/dacld [N] [WRK_SECONDS]}")
N=${2:-200}
WRK_S=${3:-10}
W=$(mktemp -d /tmp/dacl-load-XXXXXX)
PID=
cleanup() {
  [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null
  if [ "${failed:-1}" -eq 0 ]; then rm -rf "$W"; else echo "left for a look: $W"; fi
}
trap cleanup EXIT
. "$(dirname "$0")/lib.sh"
mkdir -p "$W/data"
make_dataset || { echo "dacld phantom failed"; exit 1; }

start_daemon "$W/log" --http-threads 4 || exit 1
submit "$(job_json train1 300 50 100)" >/dev/null; t1=$(num id)
submit "$(job_json train2 300 50 100)" >/dev/null; t2=$(num id)
check "a job trains while the burst comes" wait_status "$t1" running 60

# the burst: N submissions, 16 in flight; each line of codes is "HTTP_CODE SECONDS"
job_json burst 1000000 1000 1000 >"$W/burst.json"
t0=$(date +%s.%N)
seq 1 "$N" | xargs -P 16 -I{} curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 60 \
  -H 'Content-Type: application/json' --data-binary @"$W/burst.json" "$BASE/api/v1/jobs" >"$W/codes"
t1_=$(date +%s.%N)
n201=$(grep -c '^201 ' "$W/codes")
slowest=$(sort -k2 -n "$W/codes" | tail -1 | cut -d' ' -f2)
echo "burst: $N submissions in $(awk -v a="$t0" -v b="$t1_" 'BEGIN { printf "%.2f", b - a }') s; codes: $(cut -d' ' -f1 "$W/codes" | sort | uniq -c | tr '\n' ' '); slowest $slowest s"
check "all $N submissions answered 201" test "$n201" = "$N"
# the list's own total is its last "total" (each job has one too)
list_total() { req GET "/api/v1/jobs?limit=1$1" >/dev/null; grep -o '"total":[0-9]*' "$W/body" | tail -1 | cut -d: -f2; }
total=$(list_total "")
check "the list holds them all ($((N + 2)) jobs; it says $total)" test "$total" = $((N + 2))
queued=$(list_total "&status=queued")
check "all $N wait in the queue ($queued queued, with the second training job)" test "$queued" -ge "$N"

# reads while training (wrk on the list and one job, when wrk is there)
if command -v wrk >/dev/null && [ "$WRK_S" -gt 0 ]; then
  for path in "/api/v1/jobs?limit=20" "/api/v1/jobs/$t1" /healthz; do
    wrk -t 2 -c 16 -d "${WRK_S}s" --latency "$BASE$path" >"$W/wrk" 2>&1
    reqs=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$W/wrk")
    rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$W/wrk")
    p99=$(sed -n 's/^ *99% *\([0-9.a-z]*\).*/\1/p' "$W/wrk")
    errs=$(sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p; s/^ *Socket errors: *\(.*\)/\1/p' "$W/wrk" | tr '\n' ' ')
    echo "wrk GET $path: $reqs requests, $rps req/s, p99 $p99, errors: ${errs:-none}"
    check "wrk GET $path: requests served, none failed" test "${reqs:-0}" -gt 0 -a -z "$errs"
  done
fi

# cancel every burst job, 16 at a time
req GET "/api/v1/jobs?status=queued&limit=1000" >/dev/null
grep -o '"id":[0-9]*' "$W/body" | cut -d: -f2 >"$W/queued"
xargs -P 16 -I{} curl -s -o /dev/null -w '%{http_code}\n' --max-time 60 -X POST "$BASE/api/v1/jobs/{}/cancel" \
  <"$W/queued" >"$W/cancel_codes"
check "every queued job cancels (200)" test "$(grep -c '^200$' "$W/cancel_codes")" = "$(wc -l <"$W/queued")"
check "the training jobs were not disturbed" test "$(job_status "$t1")" != failed -a "$(job_status "$t2")" != failed
check "the daemon answers" curl -sf --max-time 5 -o /dev/null "$BASE/healthz"
stop_daemon
check "SIGTERM: a clean stop" test $? = 0
check "the database passes PRAGMA integrity_check" test "$(sqlite3 "$W/var/dacld.db" 'PRAGMA integrity_check')" = ok
check "... and holds all $((N + 2)) jobs" test "$(sqlite3 "$W/var/dacld.db" 'SELECT COUNT(*) FROM jobs')" = $((N + 2))
echo "load test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
