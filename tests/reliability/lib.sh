# Shared by the reliability scripts: start/stop a dacld serve on a loopback
# port the kernel picks, poll (bounded) instead of sleeping, count checks.
# Expects DACLD and W (a scratch folder) to be set by the caller.

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok: $*"; }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; [ -f "$W/body" ] && echo "  body: $(head -c 600 "$W/body")"; }
check() { local desc=$1; shift; if "$@"; then ok "$desc"; else bad "$desc"; fi; }

# start_daemon LOG [extra serve flags...]: sets PID, PORT, BASE; waits (bounded)
# until /healthz answers. DAEMON_ENV (an array) is put before the command,
# e.g. DAEMON_ENV=(LD_PRELOAD=... FAULTFS_PATTERN=...).
start_daemon() {
  local log=$1
  shift
  env ${DAEMON_ENV[@]+"${DAEMON_ENV[@]}"} "$DACLD" serve --listen 127.0.0.1:0 --state "$W/var" --data-root "$W/data" \
    --workers "${WORKERS:-1}" "$@" >"$log" 2>&1 &
  PID=$!
  PORT=
  for _ in $(seq 1 600); do
    PORT=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" 2>/dev/null | head -1)
    if [ -n "$PORT" ] && curl -sf --max-time 2 "http://127.0.0.1:$PORT/healthz" >/dev/null; then
      BASE=http://127.0.0.1:$PORT
      return 0
    fi
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "dacld did not come up:"
  tail -20 "$log"
  return 1
}

# stop_daemon: SIGTERM and wait for it; prints its exit status
stop_daemon() {
  [ -n "$PID" ] || return 0
  kill -TERM "$PID" 2>/dev/null
  wait "$PID"
  local rc=$?
  PID=
  return $rc
}

# req METHOD PATH [curl args]: the body goes to $W/body, the status is printed
req() {
  local m=$1 p=$2
  shift 2
  curl -s --max-time 30 -o "$W/body" -w '%{http_code}' -X "$m" "$@" "$BASE$p"
}
field() { grep -o "\"$1\":\"[^\"]*\"" "$W/body" | head -1 | sed 's/.*:"\(.*\)"/\1/'; }
num() { grep -o "\"$1\":[0-9.e+-]*" "$W/body" | head -1 | sed 's/.*://'; }
submit() { req POST /api/v1/jobs -H 'Content-Type: application/json' --data-binary "$1"; }
job_status() { req GET "/api/v1/jobs/$1" >/dev/null; field status; }
# wait_status ID STATUS SECONDS
wait_status() {
  local end=$((SECONDS + $3))
  while [ $SECONDS -le $end ]; do
    [ "$(job_status "$1")" = "$2" ] && return 0
    sleep 0.1
  done
  return 1
}
# wait_final ID SECONDS: until the job is succeeded, failed or canceled; prints it
wait_final() {
  local end=$((SECONDS + $2)) st=
  while [ $SECONDS -le $end ]; do
    st=$(job_status "$1")
    case $st in succeeded | failed | canceled) echo "$st"; return 0 ;; esac
    sleep 0.1
  done
  echo "$st"
  return 1
}
# wait_iteration ID MIN SECONDS: until the job has flushed MIN iterations
wait_iteration() {
  local end=$((SECONDS + $3))
  while [ $SECONDS -le $end ]; do
    req GET "/api/v1/jobs/$1" >/dev/null
    [ "$(num iteration)" -ge "$2" ] 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}
# a CPS job on 32x32 patches: job_json NAME ITERATIONS [CKPT_EVERY] [VAL_EVERY]. The dataset
# is $DATASET: make_dataset writes a small phantom under the data root once, which spares
# each job generating the built-in one into its folder (the default, phantom:cardiac).
job_json() {
  printf '{"name": "%s", "dataset": {"path": "%s", "labeled": 2}, "method": {"name": "cps"},
    "train": {"iterations": %s, "batch": 4, "labeled_batch": 2, "patch": [32, 32], "val_every": %s,
    "checkpoint_every": %s, "threads": 1, "seed": 7}}' "$1" "${DATASET:-phantom:cardiac}" "$2" "${4:-25}" "${3:-7}"
}
make_dataset() {
  "$DACLD" phantom --kind cardiac --cases 10 --size 64 --out "$W/data/ph" >/dev/null && DATASET=ph
}
rss_kb() { sed -n 's/^VmRSS:[^0-9]*\([0-9]*\).*/\1/p' "/proc/$1/status" 2>/dev/null; }
