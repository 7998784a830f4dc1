#!/usr/bin/env bash
# Fault injection against a real dacld serve. Storage faults come from
# faultfs.so (an LD_PRELOAD shim, see faultfs.c) switched on mid-run by
# creating a trigger file, so no root, full disk or read-only mount is needed.
#
#   storage  ENOSPC, then EROFS, while checkpoints are written: the job fails
#            naming the cause, the previous checkpoint still reads back, the
#            daemon stays up
#   db       ENOSPC, then EROFS (DB_ERRNOS picks), on the database while
#            metric batches are written, then
#            the database locked by another process (sqlite3 BEGIN EXCLUSIVE):
#            the job shows a warning and waits at its next checkpoint,
#            submissions get 503 with Retry-After, reads keep working; after
#            the fault every step is there exactly once
#   dataset  a dataset file deleted and another truncated mid-run: the running
#            job (data in memory) goes on; the resume after a restart and new
#            jobs fail naming the file; the daemon stays up
#   http     30 SSE clients killed mid-stream (no descriptor leak), a silent
#            connection and a body trickled a byte a second (slowloris) are
#            cut after connection_timeout / request_timeout, and one address
#            gets at most max_connections_per_ip connections
#
# Usage: fault_test.sh path/to/dacld path/to/faultfs.so [SECTION...]
set -u
DACLD=$(realpath "${1:?usage: fault_test.sh path/to/dacld path/to/faultfs.so [SECTION...]}")
SHIM=$(realpath "${2:?usage: fault_test.sh path/to/dacld path/to/faultfs.so [SECTION...]}")
shift 2
SECTIONS=${*:-storage db dataset http}
W=$(mktemp -d /tmp/dacl-fault-XXXXXX)
PID=
LOCK_PID=
cleanup() {
  [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null
  [ -n "$LOCK_PID" ] && kill -9 "$LOCK_PID" 2>/dev/null
  jobs -p | xargs -r kill 2>/dev/null
  if [ "${failed:-1}" -eq 0 ]; then rm -rf "$W"; else echo "left for a look: $W"; fi
}
trap cleanup EXIT
. "$(dirname "$0")/lib.sh"
mkdir -p "$W/data"
make_dataset || { echo "dacld phantom failed"; exit 1; }
DAEMON_ENV=(LD_PRELOAD="$SHIM")
ck_info() { "$DACLD" info --checkpoint "$1" 2>&1; }
ck_iter() { ck_info "$1" | sed -n 's/.*"iteration":[^0-9]*\([0-9]*\).*/\1/p' | head -1; }
# wait_ckpt FILE MIN SECONDS: until FILE is a checkpoint of iteration >= MIN
wait_ckpt() {
  local end=$((SECONDS + $3))
  while [ $SECONDS -le $end ]; do
    [ "$(ck_iter "$1")" -ge "$2" ] 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
error_of() { req GET "/api/v1/jobs/$1" >/dev/null; sed -n 's/.*"error":"\([^"]*\)".*/\1/p' "$W/body"; }
warning_of() { req GET "/api/v1/jobs/$1" >/dev/null; sed -n 's/.*"warning":"\([^"]*\)".*/\1/p' "$W/body"; }
# wait_warning ID SECONDS: until the job shows a warning; prints it
wait_warning() {
  local end=$((SECONDS + $2)) w=
  while [ $SECONDS -le $end ]; do
    w=$(warning_of "$1")
    [ -n "$w" ] && { echo "$w"; return 0; }
    sleep 0.1
  done
  return 1
}
steps_once() { # ID N: metrics.csv has steps 1..N, each once, no series missing
  req GET "/api/v1/jobs/$1/metrics.csv" >/dev/null
  [ "$(tail -n +2 "$W/body" | cut -d, -f1 | tr '\n' ' ')" = "$(seq -s ' ' 1 "$2") " ] &&
    ! tail -n +2 "$W/body" | grep -q ',,\|,$'
}
up() { curl -sf --max-time 5 -o /dev/null "$BASE/healthz"; }
wait_log() { # FILE TEXT SECONDS
  local end=$((SECONDS + $3))
  while [ $SECONDS -le $end ]; do grep -q "$2" "$1" && return 0; sleep 0.1; done
  return 1
}

# ------------------------------------------------------------ storage --
storage() {
  echo "== storage: ENOSPC and EROFS while a checkpoint is written"
  local errno pattern trig id it0 st err
  for errno in ENOSPC EROFS; do
    trig=$W/trigger-$errno
    # ENOSPC: the checkpoint's bytes do not fit; EROFS: nothing under jobs/ can be written
    pattern='*/jobs/*/checkpoint-*'
    [ "$errno" = EROFS ] && pattern="$W/var/jobs/*"
    DAEMON_ENV=(LD_PRELOAD="$SHIM" FAULTFS_PATTERN="$pattern" FAULTFS_ERRNO=$errno FAULTFS_TRIGGER="$trig")
    start_daemon "$W/log-storage-$errno" || return
    submit "$(job_json "disk-$errno" 100000 5 100000)" >/dev/null
    id=$(num id)
    check "$errno: a checkpoint is written before the fault" wait_ckpt "$W/var/jobs/$id/checkpoint-last.bin" 10 120
    touch "$trig"
    it0=$(ck_iter "$W/var/jobs/$id/checkpoint-last.bin")
    st=$(wait_final "$id" 60)
    err=$(error_of "$id")
    echo "$errno: the job ended $st: $err"
    check "$errno: the job fails" test "$st" = failed
    case $errno in
    ENOSPC) check "... and says the disk is full, naming the checkpoint" \
      sh -c "echo '$err' | grep -q 'checkpoint-last.bin' && echo '$err' | grep -q 'No space left on device'" ;;
    EROFS) check "... and says the file system is read-only, naming the checkpoint" \
      sh -c "echo '$err' | grep -q 'checkpoint-last.bin' && echo '$err' | grep -q 'Read-only file system'" ;;
    esac
    check "$errno: the previous checkpoint still reads back (iteration $(ck_iter "$W/var/jobs/$id/checkpoint-last.bin") >= $it0)" \
      test "$(ck_iter "$W/var/jobs/$id/checkpoint-last.bin")" -ge "$it0"
    check "$errno: no temporary file is left behind" test -z "$(find "$W/var/jobs/$id" -name 'checkpoint-*.bin.*')"
    check "$errno: the daemon is up" up
    rm -f "$trig"
    code=$(submit "$(job_json "after-$errno" 10 5 100000)")
    id=$(num id)
    check "$errno: once the disk is back, a new job runs to the end" \
      sh -c "[ $code = 201 ]" && check "$errno: ... and succeeds" test "$(wait_final "$id" 120)" = succeeded
    stop_daemon
    check "$errno: a clean stop" test $? = 0
  done
  DAEMON_ENV=(LD_PRELOAD="$SHIM")
}

# ----------------------------------------------------------------- db --
db() {
  echo "== db: ENOSPC, then EROFS, on the database during metric batches; then a lock held by another process"
  local trig=$W/trigger-db id w code t0 t1 e why
  for e in ${DB_ERRNOS:-ENOSPC EROFS}; do
    DAEMON_ENV=(LD_PRELOAD="$SHIM" FAULTFS_PATTERN="$W/var/dacld.db*" FAULTFS_ERRNO=$e FAULTFS_TRIGGER="$trig")
    start_daemon "$W/log-db-$e" || return
    submit "$(job_json "db-$e" 60 10 100000)" >/dev/null
    id=$(num id)
    check "$e: the job runs" wait_iteration "$id" 15 120
    touch "$trig"
    w=$(wait_warning "$id" 20)
    echo "$e: the job says: $w"
    why='full'
    [ "$e" = EROFS ] && why='I/O error'
    check "$e: the running job warns that its metrics are not saved" sh -c "echo '$w' | grep -q 'not saved yet.*$why'"
    code=$(req POST /api/v1/jobs -D "$W/headers" --data-binary "$(job_json refused 10)")
    echo "$e: a submission answered $code: $(head -c 300 "$W/body")"
    check "$e: a submission gets 503 'unavailable' with Retry-After ($code)" \
      sh -c "[ $code = 503 ] && grep -q '\"code\":\"unavailable\"' '$W/body' && grep -qi '^Retry-After: 5' '$W/headers'"
    check "$e: reads still answer" test "$(req GET /api/v1/jobs)" = 200
    check "$e: the job waits at its next checkpoint until its metrics are saved" \
      wait_log "$W/log-db-$e" "job $id: waiting for the database before the checkpoint" 60
    rm -f "$trig"
    check "$e: once the disk is back the job succeeds" test "$(wait_final "$id" 120)" = succeeded
    check "$e: every step 1..60 exactly once" steps_once "$id" 60
    check "$e: the warning is gone" test -z "$(warning_of "$id")"
    stop_daemon
    check "$e: a clean stop" test $? = 0
  done
  DAEMON_ENV=(LD_PRELOAD="$SHIM")
  start_daemon "$W/log-db" || return

  echo "-- the database locked by another process"
  submit "$(job_json locked 60 10 100000)" >/dev/null
  id=$(num id)
  check "lock: the job runs" wait_iteration "$id" 15 120
  mkfifo "$W/lockin"
  sqlite3 "$W/var/dacld.db" <"$W/lockin" >"$W/lockout" 2>&1 &
  LOCK_PID=$!
  exec 7>"$W/lockin"
  printf '.timeout 20000\nBEGIN EXCLUSIVE;\nSELECT %s;\n' "'held'" >&7
  for _ in $(seq 1 100); do grep -q held "$W/lockout" && break; sleep 0.05; done
  check "lock: sqlite3 holds an exclusive lock" grep -q held "$W/lockout"
  t0=$(date +%s%N)
  code=$(submit "$(job_json refused 10)")
  t1=$(date +%s%N)
  echo "lock: a submission answered $code after $(((t1 - t0) / 1000000)) ms"
  check "lock: a submission waits busy_timeout, then gets 503 naming the lock" \
    sh -c "[ $code = 503 ] && grep -q 'locked' '$W/body'"
  check "lock: reads still answer" test "$(req GET "/api/v1/jobs/$id")" = 200
  w=$(wait_warning "$id" 30)
  echo "lock: the job says: $w"
  check "lock: the job warns that the database is locked" sh -c "echo '$w' | grep -q locked"
  echo "COMMIT;" >&7
  exec 7>&-
  wait "$LOCK_PID"
  LOCK_PID=
  check "lock: after the release the job succeeds" test "$(wait_final "$id" 120)" = succeeded
  check "lock: every step 1..60 exactly once" steps_once "$id" 60
  code=$(submit "$(job_json accepted 10)")
  check "lock: submissions are accepted again" test "$code" = 201
  stop_daemon
  check "a clean stop" test $? = 0
  check "the database passes PRAGMA integrity_check" test "$(sqlite3 "$W/var/dacld.db" 'PRAGMA integrity_check')" = ok
  DAEMON_ENV=(LD_PRELOAD="$SHIM")
}

# ------------------------------------------------------------ dataset --
dataset() {
  echo "== dataset: files deleted and truncated mid-run"
  # a copy of its own, since this one gets damaged
  cp -r "$W/data/ph" "$W/data/phd"
  check "a phantom dataset on disk" test -f "$W/data/phd/dataset.json"
  start_daemon "$W/log-ds1" || return
  local body id gone cut err st
  body='{"name": "ds", "dataset": {"path": "phd", "labeled": 2}, "method": {"name": "cps"}, "train": {"iterations": 100000, "batch": 4, "labeled_batch": 2, "patch": [32, 32], "val_every": 100000, "checkpoint_every": 5, "threads": 1}}'
  submit "$body" >/dev/null
  id=$(num id)
  check "the job on it runs" wait_ckpt "$W/var/jobs/$id/checkpoint-last.bin" 5 120
  gone=$(ls "$W/data/phd/images/"*.nii.gz | head -1)
  cut=$(ls "$W/data/phd/labels/"*.nii.gz | sed -n 2p)
  cp "$gone" "$W/saved.nii.gz"
  cp "$cut" "$W/saved-label.nii.gz"
  rm "$gone"
  truncate -s 200 "$cut"
  local it=$(ck_iter "$W/var/jobs/$id/checkpoint-last.bin")
  check "the running job goes on (its data is in memory)" wait_ckpt "$W/var/jobs/$id/checkpoint-last.bin" $((it + 5)) 60
  kill -9 "$PID"; wait "$PID" 2>/dev/null; PID=
  start_daemon "$W/log-ds2" || return
  st=$(wait_final "$id" 60)
  err=$(error_of "$id")
  echo "after a restart the resume ended $st: $err"
  check "the resume fails, naming the missing file" sh -c "[ $st = failed ] && echo '$err' | grep -q '$(basename "$gone")'"
  cp "$W/saved.nii.gz" "$gone"
  submit "${body/\"ds\"/\"ds2\"}" >/dev/null
  id=$(num id)
  st=$(wait_final "$id" 60)
  err=$(error_of "$id")
  echo "a new job on the truncated file ended $st: $err"
  check "a new job fails, naming the truncated file" sh -c "[ $st = failed ] && echo '$err' | grep -q '$(basename "$cut")'"
  cp "$W/saved-label.nii.gz" "$cut"
  local bad=$(ls "$W/data/phd/images/"*.nii.gz | sed -n 3p)
  head -c 3000 "$bad" >"$W/x" && head -c 4000 /dev/urandom >>"$W/x" && cat "$W/x" >"$bad"
  submit "${body/\"ds\"/\"ds3\"}" >/dev/null
  id=$(num id)
  st=$(wait_final "$id" 60)
  err=$(error_of "$id")
  echo "a new job on a file with garbage inside ended $st: $err"
  check "a job on a corrupted file fails, naming it" sh -c "[ $st = failed ] && echo '$err' | grep -q '$(basename "$bad")'"
  check "the daemon is up" up
  stop_daemon
  check "a clean stop" test $? = 0
}

# --------------------------------------------------------------- http --
http() {
  echo "== http: SSE clients killed, slowloris, connection limits"
  start_daemon "$W/log-sse" || return
  local id fds0 fds1 i t0 el
  submit "$(job_json sse 100000 1000 100000)" >/dev/null
  id=$(num id)
  check "a job runs" wait_iteration "$id" 2 120
  fds0=$(ls "/proc/$PID/fd" | wc -l)
  for i in $(seq 1 30); do
    curl -sN --max-time 60 "$BASE/api/v1/jobs/$id/events" >"$W/sse$i" 2>/dev/null &
    local c=$!
    for _ in $(seq 1 100); do grep -q '^event: ' "$W/sse$i" && break; sleep 0.05; done
    kill -9 "$c" 2>/dev/null
    wait "$c" 2>/dev/null
  done
  check "30 SSE clients got events before they were killed" \
    test "$(grep -l '^event: ' "$W"/sse* | wc -l)" = 30
  for _ in $(seq 1 100); do
    fds1=$(ls "/proc/$PID/fd" | wc -l)
    [ "$fds1" -le "$fds0" ] && break
    sleep 0.1
  done
  echo "descriptors: $fds0 before the SSE clients, $fds1 after"
  check "no descriptor is left from the killed SSE clients" test "$fds1" -le "$fds0"
  check "the job still runs" test "$(job_status "$id")" = running
  req POST "/api/v1/jobs/$id/cancel" >/dev/null
  check "the job cancels" wait_status "$id" canceled 30
  stop_daemon
  check "a clean stop" test $? = 0

  start_daemon "$W/log-http" --connection-timeout 2 --request-timeout 4 --max-connections 64 \
    --max-connections-per-ip 12 || return

  # a silent connection: closed after connection_timeout (2 s)
  t0=$(date +%s%N)
  exec 8<>"/dev/tcp/127.0.0.1/$PORT"
  timeout 20 cat <&8 >/dev/null
  exec 8<&-
  el=$((($(date +%s%N) - t0) / 1000000))
  echo "a silent connection was closed after $el ms"
  check "a silent connection is closed within 2 s + slack" test "$el" -lt 5000

  # slowloris: a POST whose body comes one byte a second, cut by request_timeout (4 s)
  t0=$(date +%s%N)
  (
    trap '' PIPE
    exec 9<>"/dev/tcp/127.0.0.1/$PORT"
    printf 'POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 600\r\n\r\n' >&9
    for _ in $(seq 1 600); do
      printf ' ' >&9 2>/dev/null || exit 0
      sleep 1 # the attack's own pace
    done
  ) &
  local slow=$!
  up && ok "the daemon answers others while a body trickles in" || bad "the daemon answers others meanwhile"
  timeout 30 tail --pid=$slow -f /dev/null
  el=$((($(date +%s%N) - t0) / 1000000))
  echo "a body sent a byte a second was cut after $el ms"
  check "slowloris: the trickling body is cut within 4 s + slack" test "$el" -lt 9000
  grep -q 'the body took over 4 s' "$W/log-http" && ok "... and the log says why" || bad "the log says why"

  # connection count: 30 at once from one address, at most 12 are kept
  # (a refused one is closed at once: EOF within 1 s, before connection_timeout)
  mkdir -p "$W/conn"
  local pids=
  for i in $(seq 1 30); do
    ( exec 3<>"/dev/tcp/127.0.0.1/$PORT" || exit 0
      if timeout 1 cat <&3 >/dev/null; then echo closed; else echo kept; fi >"$W/conn/$i" ) &
    pids="$pids $!"
  done
  wait $pids
  local kept=$(cat "$W"/conn/* | grep -c kept)
  echo "30 connections from one address: $kept kept open, $(cat "$W"/conn/* | grep -c closed) closed at once"
  check "at most max_connections_per_ip (12) are kept" test "$kept" -le 12 -a "$kept" -ge 1
  for _ in $(seq 1 100); do up && break; sleep 0.1; done
  check "the daemon answers again once they are gone" up
  stop_daemon
  check "a clean stop" test $? = 0
}

for s in $SECTIONS; do "$s"; done
echo "fault test ($SECTIONS): $passed passed, $failed failed"
[ "$failed" -eq 0 ]
