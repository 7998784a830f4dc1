#!/usr/bin/env bash
# dacld serve end to end: a real daemon on a loopback port with a temporary
# state folder, driven with curl. Covers a phantom job's lifecycle (queued ->
# running -> succeeded, metrics, evaluation, SSE, checkpoint download, predict
# on a phantom volume, a sample PNG), cancel, priority order, the bearer token,
# malformed requests answered in the one error shape while the daemon stays
# up, the OpenAPI document against the route table, SIGTERM (interrupted,
# resumed) and kill -9 (resumed, metric history continuous with no step twice).
# Usage: serve_test.sh path/to/dacld path/to/source
# Only ever talks to 127.0.0.1. Needs bash, curl, coreutils, sed, grep.
set -u
DACLD=${1:?usage: serve_test.sh path/to/dacld path/to/source}
SRC=${2:?usage: serve_test.sh path/to/dacld path/to/source}
W=$(mktemp -d /tmp/dacl-serve-XXXXXX)
PID=
cleanup() {
  [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null
  [ -n "${SSE_PID:-}" ] && kill "$SSE_PID" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok: $*"; }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; [ -f "$W/body" ] && echo "  body: $(head -c 600 "$W/body")"; }
check() { local desc=$1; shift; if "$@"; then ok "$desc"; else bad "$desc"; fi; }

TOKEN=test-token-$$
printf '%s\n' "$TOKEN" >"$W/token"
AUTH=(-H "Authorization: Bearer $TOKEN")
mkdir -p "$W/data/folder" "$W/outside"
ln -s "$W/outside" "$W/data/escape"

# start_daemon LOG: starts dacld on a port the kernel picks (no race with other
# tests for a "free" port) and waits, bounded, until /healthz answers.
start_daemon() {
  local log=$1
  "$DACLD" serve --listen 127.0.0.1:0 --state "$W/var" --data-root "$W/data" --token-file "$W/token" \
    --workers 1 >"$log" 2>&1 &
  PID=$!
  PORT=
  for _ in $(seq 1 200); do
    PORT=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -1)
    if [ -n "$PORT" ] && curl -sf --max-time 2 "http://127.0.0.1:$PORT/healthz" >/dev/null; then
      BASE=http://127.0.0.1:$PORT
      return 0
    fi
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "dacld did not come up:"; cat "$log"
  return 1
}

# req METHOD PATH [curl args]: the body goes to $W/body, the status is printed
req() {
  local m=$1 p=$2
  shift 2
  curl -s --max-time 20 -o "$W/body" -w '%{http_code}' -X "$m" "$@" "$BASE$p"
}
field() { grep -o "\"$1\":\"[^\"]*\"" "$W/body" | head -1 | sed 's/.*:"\(.*\)"/\1/'; }
num() { grep -o "\"$1\":[0-9.e+-]*" "$W/body" | head -1 | sed 's/.*://'; }
# is_error CODE FIELD: the one error shape; FIELD is a name or null
is_error() {
  local f=null
  [ "$2" != null ] && f="\"$2\""
  grep -q "^{\"error\":{\"code\":\"$1\",\"message\":\".*\",\"field\":$f}}\$" "$W/body"
}
job_status() { req GET "/api/v1/jobs/$1" >/dev/null; field status; }
# wait_status ID STATUS SECONDS
wait_status() {
  for _ in $(seq 1 $(($3 * 10))); do
    [ "$(job_status "$1")" = "$2" ] && return 0
    sleep 0.1
  done
  return 1
}
submit() { req POST /api/v1/jobs "${AUTH[@]}" -H 'Content-Type: application/json' --data-binary "$1"; }
tiny() { # tiny NAME ITERATIONS [PRIORITY]: a CPS job on 32x32 patches of the cardiac phantom
  printf '{"name": "%s", "priority": %s, "method": {"name": "cps"}, "train": {"iterations": %s, "batch": 4,
    "labeled_batch": 2, "patch": [32, 32], "val_every": 10, "checkpoint_every": 10, "threads": 1}}' \
    "$1" "${3:-0}" "$2"
}

start_daemon "$W/log1" || exit 1
ok "daemon up on 127.0.0.1:$PORT"

# ---- 1. lifecycle: queued -> running -> succeeded, with its results
code=$(submit "$(tiny life 20)")
id=$(num id)
check "submit answers 201 with the job queued" test "$code" = 201 -a "$(field status)" = queued
curl -sN --max-time 60 -H "Last-Event-ID: 0.0" "$BASE/api/v1/jobs/$id/events" >"$W/sse" &
SSE_PID=$!
check "the job runs" wait_status "$id" running 20
check "the job succeeds" wait_status "$id" succeeded 60
wait "$SSE_PID"; SSE_PID=
check "SSE: status running, then succeeded, then the stream ends" \
  test "$(grep -o '"status":"[a-z]*"' "$W/sse" | tail -2 | tr -d '\n')" = '"status":"running""status":"succeeded"'
check "SSE: one metric event per iteration, ids in order" \
  test "$(grep '^id: [0-9]*\.0$' "$W/sse" | sed 's/id: //; s/\.0//' | tr '\n' ' ')" = "$(seq -s ' ' 1 20) "
check "SSE: validation rounds of both models" test "$(grep -c '^event: evaluation' "$W/sse")" = 4
curl -s --max-time 10 -H 'Last-Event-ID: 15.0' "$BASE/api/v1/jobs/$id/events" >"$W/sse2"
check "SSE: Last-Event-ID 15.0 replays iterations 16..20 and the round at 20" \
  test "$(grep '^id:' "$W/sse2" | tr '\n' ' ')" = "id: 16.0 id: 17.0 id: 18.0 id: 19.0 id: 20.0 id: 20.1 id: 20.2 "
req GET "/api/v1/jobs/$id" >/dev/null
check "the job shows iteration 20 of 20 and a best round" \
  grep -q '"iteration":20,"total":20,"progress":1' "$W/body"
check "... and its best and latest metrics" grep -q '"best":{"iteration":[0-9]*,"model":"[ab]"' "$W/body"
# the stored records go into the answer as they are, once checked: one damaged by hand
# (a number cut short) shows as null, and the rest of the answer is intact
sqlite3 "$W/var/dacld.db" "PRAGMA busy_timeout = 10000;
  UPDATE jobs SET latest = '{\"values\":{\"loss\":1e}' WHERE id = $id;" >/dev/null
code=$(req GET "/api/v1/jobs/$id")
check "a damaged stored record: 200, latest null, best and config as stored" sh -c \
  "[ $code = 200 ] && grep -q '\"latest\":null,\"best\":{\"iteration\"' '$W/body' && grep -q '\"config\":{\"name\"' '$W/body'"
code=$(req GET "/api/v1/jobs/$id/metrics?names=loss,lr")
check "metrics: 20 points of loss" test "$code" = 200 -a "$(grep -o '"loss":{"step":\[[0-9,]*\]' "$W/body" | tr -cd , | wc -c)" = 19
code=$(req GET "/api/v1/jobs/$id/metrics?names=loss&max_points=4")
check "metrics: max_points=4 keeps 4 and says it folded 16" grep -q '"points":20,"folded":16' "$W/body"
# gzip'd for a client that takes it (browsers do), the same JSON once unpacked. The first such
# request gets the JSON (compressing would delay it) and compresses it for the cache after its
# answer is sent; the later ones get the compressed copy. q=0 refuses gzip.
cp "$W/body" "$W/plain"
gzip_same() {
  local code n
  for n in $(seq 1 50); do
    code=$(req GET "/api/v1/jobs/$id/metrics?names=loss&max_points=4" -H "Accept-Encoding: $1" -D "$W/hdr")
    [ "$code" = 200 ] && grep -qi '^vary: accept-encoding' "$W/hdr" || return 1
    if grep -qi '^content-encoding: gzip' "$W/hdr"; then
      gzip -dc <"$W/body" | cmp -s - "$W/plain"
      return
    fi
    cmp -s "$W/body" "$W/plain" || return 1
  done
  return 1
}
check "metrics: gzip'd for Accept-Encoding: gzip, deflate, br; the same JSON unpacked" gzip_same 'gzip, deflate, br'
check "... with weights too" gzip_same 'deflate;q=0.5, gzip;q=0.8'
code=$(req GET "/api/v1/jobs/$id/metrics?names=loss&max_points=4" -H 'Accept-Encoding: gzip;q=0, *' -D "$W/hdr")
check "metrics: plain JSON when gzip is refused (q=0, even with *)" \
  eval 'test "$code" = 200 && ! grep -qi "^content-encoding" "$W/hdr" && cmp -s "$W/body" "$W/plain"'
req GET "/api/v1/jobs/$id/metrics?since=18&names=loss" >/dev/null
check "metrics: since=18 gives steps 19 and 20" grep -q '"step":\[19,20\]' "$W/body"
code=$(req GET "/api/v1/jobs/$id/metrics.csv")
check "metrics.csv: a header and 20 rows" test "$code" = 200 -a "$(head -1 "$W/body" | cut -d, -f1)" = step -a "$(wc -l <"$W/body")" = 21
code=$(req GET "/api/v1/jobs/$id/evaluation")
check "evaluation: 4 rounds with per-class and per-case scores" \
  test "$code" = 200 -a "$(grep -o '"is_best"' "$W/body" | wc -l)" = 4 -a "$(grep -c '"cases":{"case' "$W/body")" = 1
code=$(curl -s --max-time 20 -o "$W/best.bin" -w '%{http_code}' "$BASE/api/v1/jobs/$id/checkpoint?which=best")
check "the best checkpoint downloads and reads back" \
  sh -c "[ $code = 200 ] && '$DACLD' info --checkpoint '$W/best.bin' | grep -q '\"iteration\"'"
img=$(ls "$W/var/jobs/$id/phantom-cardiac/images/"*.nii.gz | tail -1)
code=$(curl -s --max-time 60 -o "$W/pred.nii.gz" -w '%{http_code}' "${AUTH[@]}" --data-binary @"$img" \
  "$BASE/api/v1/jobs/$id/predict")
check "predict on a phantom volume gives a NIfTI label map that scores against its truth" \
  sh -c "[ $code = 200 ] && '$DACLD' metrics --pred '$W/pred.nii.gz' --gt '${img%/images/*}/labels/${img##*/}' --json | grep -q dice"
code=$(req POST "/api/v1/jobs/$id/predict" "${AUTH[@]}" --data-binary 'not a volume')
check "predict on text: 415" test "$code" = 415 && is_error unsupported_format null
# a damaged HDF5 upload is read in a child process: 400 naming the problem, the daemon stays up
{ printf '\211HDF\r\n\032\n'; head -c 3000 /dev/urandom; } >"$W/bad.h5"
code=$(req POST "/api/v1/jobs/$id/predict" "${AUTH[@]}" --data-binary @"$W/bad.h5")
check "predict on a damaged HDF5 file: 400 invalid_volume" test "$code" = 400 && is_error invalid_volume null
check "the daemon is up after the damaged upload" curl -sf --max-time 5 "$BASE/healthz" -o /dev/null
code=$(curl -s --max-time 60 -o "$W/sample.png" -w '%{http_code}' "$BASE/api/v1/jobs/$id/samples/0.png")
check "samples/0.png is a PNG" sh -c "[ $code = 200 ] && head -c 4 '$W/sample.png' | grep -q PNG"
code=$(req GET "/api/v1/jobs/$id/samples/99.png")
check "samples/99.png: 404" test "$code" = 404 && is_error not_found null
code=$(req GET "/api/v1/jobs/$id/checkpoint?which=worst")
check "checkpoint ?which=worst: 400 naming which" sh -c "[ $code = 400 ]" && is_error invalid_parameter which

# ---- 2. the token, malformed requests and unknown routes, each in the error shape
code=$(req POST /api/v1/jobs --data-binary '{}')
check "no token: 401" test "$code" = 401 && is_error unauthorized null
code=$(req POST /api/v1/jobs -H 'Authorization: Bearer nope' --data-binary '{}')
check "wrong token: 401" test "$code" = 401
code=$(req GET /api/v1/jobs)
check "reads need no token" test "$code" = 200
code=$(submit '{"name": "x", ')
check "bad JSON: 400" test "$code" = 400 && is_error invalid_json null
code=$(submit '{"train": {"iterations": "many"}}')
check "wrong type: 400 naming train.iterations" test "$code" = 400 && is_error invalid_config train.iterations
code=$(submit '{"method": {"tua": 0.4}}')
check "unknown field: 400 naming method.tua" test "$code" = 400 && is_error invalid_config method.tua
code=$(submit '{"priority": "high"}')
check "bad priority: 400 naming priority" test "$code" = 400 && is_error invalid_config priority
code=$(submit '[1, 2]')
check "not an object: 400" test "$code" = 400 && is_error invalid_config null
for p in ../outside /etc escape phantom:nope folder/../../outside; do
  code=$(submit "{\"dataset\": {\"path\": \"$p\"}}")
  check "dataset.path '$p' refused: 400 naming dataset.path" test "$code" = 400 && is_error invalid_config dataset.path
done
head -c 2000000 /dev/zero | tr '\0' ' ' >"$W/huge"
code=$(req POST /api/v1/jobs "${AUTH[@]}" --data-binary @"$W/huge")
check "2 MB body: 413" test "$code" = 413 && is_error body_too_large null
code=$(req POST /api/v1/jobs "${AUTH[@]}" -H 'Transfer-Encoding: chunked' --data-binary @"$W/huge")
check "2 MB chunked body: 413" test "$code" = 413 && is_error body_too_large null
code=$(req GET "/api/v1/$(head -c 3000 /dev/zero | tr '\0' a)")
check "3 kB path: 414" test "$code" = 414 && is_error uri_too_long null
code=$(req GET /api/v1/nothing)
check "unknown route: 404" test "$code" = 404 && is_error not_found null
code=$(req GET /api/v1/jobs/999999)
check "unknown job: 404" test "$code" = 404 && is_error not_found null
code=$(req GET /api/v1/jobs/abc)
check "non-numeric job id: 404" test "$code" = 404 && is_error not_found null
code=$(curl -s --max-time 10 -o "$W/body" -D "$W/headers" -w '%{http_code}' -X PUT "$BASE/api/v1/jobs")
check "PUT /api/v1/jobs: 405 with Allow: POST, GET" \
  sh -c "[ $code = 405 ] && grep -qi '^Allow: POST, GET' '$W/headers'" && is_error method_not_allowed null
code=$(req GET "/api/v1/jobs?limit=0")
check "limit=0: 400 naming limit" test "$code" = 400 && is_error invalid_parameter limit
code=$(req GET "/api/v1/jobs?status=sleeping")
check "status=sleeping: 400 naming status" test "$code" = 400 && is_error invalid_parameter status
check "the daemon is still up" curl -sf --max-time 5 "$BASE/healthz" -o /dev/null

# ---- 3. OpenAPI: every route of the table in server/http.c is documented
req GET /api/v1/openapi.json >/dev/null
check "openapi.json is OpenAPI 3.1" grep -q '^{"openapi":"3.1.0"' "$W/body"
routes=$(sed -n 's/^ *{"\(GET\|POST\|DELETE\|PUT\|PATCH\)", "\(\/[^"]*\)".*/\1 \2/p' "$SRC/server/http.c")
nroutes=0
missing=
while read -r m p; do
  nroutes=$((nroutes + 1))
  opid=$(printf '%s%s' "$m" "$p" | tr -c 'A-Za-z0-9' '_' | tr 'A-Z' 'a-z')
  grep -q "\"$p\":{" "$W/body" && grep -q "\"operationId\":\"$opid\"" "$W/body" || missing="$missing $m $p;"
done <<<"$routes"
check "openapi.json documents all $nroutes routes of the table${missing:+ (missing:$missing)}" \
  test "$nroutes" -ge 15 -a -z "$missing"
req GET /metrics >/dev/null
check "/metrics: jobs by status and request counters" \
  sh -c "grep -q '^dacld_jobs{status=\"succeeded\"} 1' '$W/body' && grep -q '^dacld_http_requests_total{method=\"POST\",route=\"/api/v1/jobs\",code=\"4xx\"}' '$W/body'"

# ---- 4. cancel and priority: one worker, a long job holds it
submit "$(tiny hold 100000)" >/dev/null; hold=$(num id)
submit "$(tiny low 100000 0)" >/dev/null; low=$(num id)
submit "$(tiny high 100000 5)" >/dev/null; high=$(num id)
check "the long job runs" wait_status "$hold" running 20
# A running job's series are kept in memory and topped up per flush; ?since=0
# reads the same points straight from the store. Compared at one flushed
# iteration: the in-memory answer twice, unchanged, around the store's,
# after reads at successive flushes have topped the series up.
same_series() {
  local seen=0
  : >"$W/m0"
  for _ in $(seq 1 200); do # 4 different answers: 4 flushes, the later ones topped up
    req GET "/api/v1/jobs/$hold/metrics?max_points=6" >/dev/null
    cmp -s "$W/body" "$W/m0" || seen=$((seen + 1))
    cp "$W/body" "$W/m0"
    [ "$seen" -ge 4 ] && break
    sleep 0.1
  done
  for _ in $(seq 1 50); do
    req GET "/api/v1/jobs/$hold/metrics?max_points=6" >/dev/null; cp "$W/body" "$W/m1"
    req GET "/api/v1/jobs/$hold/metrics?since=0&max_points=6" >/dev/null; cp "$W/body" "$W/m2"
    req GET "/api/v1/jobs/$hold/metrics?max_points=6" >/dev/null
    if cmp -s "$W/m1" "$W/body" && grep -q '"points":[1-9]' "$W/m1"; then
      cmp -s "$W/m1" "$W/m2"
      return
    fi
    sleep 0.1
  done
  return 1
}
check "metrics of a running job: the in-memory series answer as the store does" same_series
req GET "/api/v1/jobs/$high" >/dev/null
check "priority 5 is first in the queue" test "$(num queue_position)" = 0
req GET "/api/v1/jobs/$low" >/dev/null
check "priority 0 is second" test "$(num queue_position)" = 1
req GET "/api/v1/jobs?status=queued" >/dev/null
check "the list shows each job's method and dataset" \
  grep -q '"method":"[a-z]*","dataset":{"path":"[^"]*","labeled":[0-9]*}' "$W/body"
code=$(req POST "/api/v1/jobs/$hold/cancel" "${AUTH[@]}")
check "cancel of a running job: 202" test "$code" = 202
check "it stops as canceled" wait_status "$hold" canceled 20
check "the higher priority runs next" wait_status "$high" running 20
check "... while the lower one waits" test "$(job_status "$low")" = queued
check "... now first in the queue (its answer follows the other jobs' changes)" test "$(num queue_position)" = 0
code=$(req POST "/api/v1/jobs/$low/cancel" "${AUTH[@]}")
check "cancel of a queued job: 200, canceled" test "$code" = 200 -a "$(field status)" = canceled
check "... and so it reads at once" test "$(job_status "$low")" = canceled
req POST "/api/v1/jobs/$high/cancel" "${AUTH[@]}" >/dev/null
check "the third one is canceled too" wait_status "$high" canceled 20
code=$(req POST "/api/v1/jobs/$low/cancel" "${AUTH[@]}")
check "cancel of a finished job: 409" test "$code" = 409 && is_error conflict null
code=$(req DELETE "/api/v1/jobs/$low" "${AUTH[@]}")
check "delete a finished job" test "$code" = 200
check "... it is gone" test "$(req GET "/api/v1/jobs/$low")" = 404
check "the running job's folder has its checkpoint" test -s "$W/var/jobs/$hold/checkpoint-last.bin"

# ---- 5. SIGTERM mid-job: interrupted, resumed at the next start; then kill -9
submit "$(tiny crash 160)" >/dev/null; crash=$(num id)
wait_iteration() { # ID MIN SECONDS: until the job has flushed MIN iterations
  for _ in $(seq 1 $(($3 * 10))); do
    req GET "/api/v1/jobs/$1" >/dev/null
    [ "$(num iteration)" -ge "$2" ] 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
check "the job reaches iteration 25" wait_iteration "$crash" 25 60
kill -TERM "$PID"; wait "$PID"; rc=$?; PID=
check "SIGTERM: dacld exits 0" test "$rc" = 0
check "... after the job is marked interrupted" grep -q "job $crash interrupted at iteration" "$W/log1"
start_daemon "$W/log2" || exit 1
check "the interrupted job resumes at the next start" wait_iteration "$crash" 60 60
check "... from its checkpoint, not from 0" grep -q "job $crash: resuming at iteration [1-9]" "$W/log2"
kill -9 "$PID"; wait "$PID" 2>/dev/null; PID=
start_daemon "$W/log3" || exit 1
check "after kill -9 the job succeeds" wait_status "$crash" succeeded 90
check "... resumed from its checkpoint" grep -q "job $crash: resuming at iteration [1-9]" "$W/log3"
req GET "/api/v1/jobs/$crash/metrics.csv" >/dev/null
check "its metric history has every step 1..160 exactly once" \
  test "$(tail -n +2 "$W/body" | cut -d, -f1 | tr '\n' ' ')" = "$(seq -s ' ' 1 160) "
req GET "/api/v1/jobs/$crash/evaluation" >/dev/null
check "and 16 validation rounds, none twice" test "$(grep -o '"is_best"' "$W/body" | wc -l)" = 32
check "the first job is still there" test "$(job_status "$id")" = succeeded

kill -TERM "$PID"; wait "$PID"; PID=
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
