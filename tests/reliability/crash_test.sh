#!/usr/bin/env bash
# Crash test: a phantom job under dacld serve, the daemon killed with SIGKILL
# at KILLS moments spread over the job and restarted each time. At the end the
# job must have succeeded, its metric history must hold every step exactly
# once with the values of an uninterrupted run, every validation round once,
# and its final weights must equal those of `dacld train` on the same job
# (weights_sha256 of `dacld info --checkpoint`). The moments come from a seeded
# RNG, so a failure reproduces with the same SEED.
#
# The job checkpoints every 7 iterations and validates every 25, so most
# checkpoints are not preceded by a validation round's metric flush.
#
# Usage: crash_test.sh path/to/dacld [KILLS (20)] [ITERATIONS (200)] [SEED (1)]
set -u
DACLD=$(realpath "${1:?usage: crash_test.sh path/to/dacld [KILLS] [ITERATIONS] [SEED]}")
KILLS=${2:-20}
ITERS=${3:-200}
SEED=${4:-1}
W=$(mktemp -d /tmp/dacl-crash-XXXXXX)
PID=
REF_PID=
cleanup() {
  [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null
  [ -n "$REF_PID" ] && kill -9 "$REF_PID" 2>/dev/null
  if [ "${failed:-1}" -eq 0 ] || [ -n "${KEEP_GOING:-}" ]; then rm -rf "$W"; else echo "left for a look: $W"; fi
}
trap cleanup EXIT
. "$(dirname "$0")/lib.sh"
mkdir -p "$W/data"
make_dataset || { echo "dacld phantom failed"; exit 1; }
# the moments: a delay of 0..499 ms past each target, and whether to kill
# right after the restart instead (one in five), from awk's seeded RNG
awk -v seed="$SEED" -v n="$KILLS" 'BEGIN { srand(seed); for (i = 0; i < n; i++) printf "%d %d\n", int(rand() * 500), rand() < 0.2 }' >"$W/moments"

job_json crash "$ITERS" 7 25 >"$W/job.json"
# the uninterrupted run, alongside
"$DACLD" train "$W/job.json" --out "$W/ref" --data-root "$W/data" >"$W/ref.log" 2>&1 &
REF_PID=$!

start_daemon "$W/log0" || exit 1
code=$(submit "$(cat "$W/job.json")")
id=$(num id)
check "the job is accepted" test "$code" = 201

# Kill k at a moment past iteration ITERS*k/(KILLS+1), plus a random
# 0..499 ms; some kills land while the daemon is still recovering.
survived=0
for k in $(seq 1 "$KILLS"); do
  target=$((ITERS * k / (KILLS + 1)))
  read -r delay_ms early < <(sed -n "${k}p" "$W/moments")
  if [ "$early" = 0 ] && ! wait_iteration "$id" "$target" 120; then
    bad "kill $k: the job never reached iteration $target"
    break
  fi
  sleep "$(printf '0.%03d' "$delay_ms")" # the random moment itself, not a wait for anything
  req GET "/api/v1/jobs/$id" >/dev/null
  at=$(num iteration)
  kill -9 "$PID"
  wait "$PID" 2>/dev/null
  PID=
  echo "kill $k: SIGKILL at flushed iteration ${at:-?} (target $target, +${delay_ms} ms, early=$early)"
  # what a kill in the middle of a checkpoint write leaves, made sure of once
  [ "$k" = 1 ] && head -c 1000 /dev/zero >"$W/var/jobs/$id/checkpoint-last.bin.Zz9Yy8"
  if start_daemon "$W/log$k"; then
    survived=$((survived + 1))
  else
    bad "restart after kill $k"
    break
  fi
done
check "the daemon came back after all $KILLS kills" test "$survived" = "$KILLS"

final=$(wait_final "$id" 300)
check "the job succeeded (it is $final)" test "$final" = succeeded
resumes=$(cat "$W"/log* | grep -c "job $id: resuming at iteration")
echo "resumed $resumes times"
req GET "/api/v1/jobs/$id/metrics.csv" >/dev/null
cp "$W/body" "$W/metrics.csv"
check "metrics.csv has every step 1..$ITERS exactly once" \
  test "$(tail -n +2 "$W/metrics.csv" | cut -d, -f1 | tr '\n' ' ')" = "$(seq -s ' ' 1 "$ITERS") "
check "... and no step lacks a series" sh -c "! tail -n +2 '$W/metrics.csv' | grep -q ',,\|,\$'"
req GET "/api/v1/jobs/$id/evaluation" >/dev/null
rounds=$(((ITERS + 24) / 25)) # every 25 and at the end
check "every validation round once ($rounds rounds x 2 models)" \
  test "$(grep -o '"iteration":[0-9]*,"model":"[ab]","mean_dice"' "$W/body" | sort -u | wc -l)" = $((rounds * 2)) \
  -a "$(grep -o '"is_best"' "$W/body" | wc -l)" = $((rounds * 2))
code=$(curl -s --max-time 30 -o "$W/final.bin" -w '%{http_code}' "$BASE/api/v1/jobs/$id/checkpoint?which=last")
check "the final checkpoint downloads" test "$code" = 200

wait "$REF_PID"
ref_rc=$?
REF_PID=
check "the uninterrupted dacld train run succeeded" test "$ref_rc" = 0
sha() { "$DACLD" info --checkpoint "$1" | sed -n 's/.*"weights_sha256":[^"]*"\([0-9a-f]*\)".*/\1/p'; }
got=$(sha "$W/final.bin")
want=$(sha "$W/ref/checkpoint-last.bin")
echo "weights_sha256: after $KILLS kills $got, uninterrupted $want"
check "final weights equal the uninterrupted run's" test -n "$got" -a "$got" = "$want"
# the loss of every step, as the API stores it (%.9g), against the uninterrupted run's
col=$(head -1 "$W/metrics.csv" | tr ',' '\n' | grep -nx loss | cut -d: -f1)
tail -n +2 "$W/metrics.csv" | cut -d, -f1,"$col" >"$W/loss.serve"
sed -n 's/^{"event":"metrics","iteration":\([0-9]*\),"loss":\([^,]*\),.*/\1 \2/p' "$W/ref/metrics.jsonl" |
  awk '{ printf "%d,%.9g\n", $1, $2 }' >"$W/loss.ref"
check "every step's loss equals the uninterrupted run's" cmp -s "$W/loss.serve" "$W/loss.ref"
stop_daemon
check "the database passes PRAGMA integrity_check" \
  test "$(sqlite3 "$W/var/dacld.db" 'PRAGMA integrity_check')" = ok
removed=$(cat "$W"/log* | grep -c "job $id: removed checkpoint-.*, left by a crash")
echo "temporary checkpoint files left by kills mid-write, removed at the next start: $removed"
check "no temporary checkpoint file is left" test -z "$(find "$W/var/jobs" -name '*.bin.*')"
echo "crash test: $KILLS kills, $survived restarts, $resumes resumes; $passed passed, $failed failed"
[ "$failed" -eq 0 ]
