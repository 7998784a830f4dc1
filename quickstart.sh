#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install what dacld needs, build
# it, start the daemon (`dacld serve`) in the background, submit a small
# default job over HTTP (DACL co-training on the built-in cardiac phantom, 2
# labeled cases, 1000 iterations at 64x64, about 2-3 minutes on 2 cores) and
# print where to watch it.
#   bash quickstart.sh [JOB.json]     (default deploy/jobs/quickstart.json)
# Run it again: a daemon already answering on the port is reused, and the
# default job, if still queued or running, is shown instead of submitted twice.
# The daemon keeps its state in ./var (log var/dacld.log, pid var/dacld.pid).
# Environment: DACLD_PORT (default 8080), DACLD_BUILD_DIR (default build).
set -euo pipefail
cd "$(dirname "$0")"
job=${1:-deploy/jobs/quickstart.json}
port=${DACLD_PORT:-8080}
build=${DACLD_BUILD_DIR:-build}
base=http://127.0.0.1:$port

deploy/install-deps.sh
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)"

# Phantom datasets ("dataset": {"path": "phantom:cardiac"}) are generated into
# the job's own folder: nothing to download. ./data is where real ones go.
mkdir -p var data

is_dacld() { curl -sf --max-time 2 "$base/api/v1/version" 2>/dev/null | grep -q '"name":"dacld"'; }

stop="kill \$(cat var/dacld.pid)"
if is_dacld; then
  echo "quickstart: dacld already answers on $base; using it"
  [ -f var/dacld.pid ] && kill -0 "$(cat var/dacld.pid)" 2>/dev/null ||
    stop="stop it the way it was started (SIGTERM)"
elif curl -s --max-time 2 -o /dev/null "$base/" 2>/dev/null; then
  echo "quickstart: something else listens on port $port; set DACLD_PORT to a free port" >&2
  exit 1
else
  # setsid + nohup: the daemon outlives this script and the terminal
  nohup setsid "$build/dacld" serve --listen "127.0.0.1:$port" --state var --data-root data \
    >>var/dacld.log 2>&1 </dev/null &
  echo $! >var/dacld.pid
  echo "quickstart: started dacld (pid $(cat var/dacld.pid)), log in var/dacld.log"
  up=0
  for _ in $(seq 1 100); do # up to ~30 s, usually well under one
    if curl -sf --max-time 2 "$base/healthz" >/dev/null 2>&1; then
      up=1
      break
    fi
    kill -0 "$(cat var/dacld.pid)" 2>/dev/null || break
    sleep 0.3
  done
  if [ "$up" != 1 ]; then
    echo "quickstart: dacld did not come up; the end of var/dacld.log:" >&2
    tail -n 20 var/dacld.log >&2
    exit 1
  fi
fi

name= # the default job's name, to find it again; another job file is always submitted
[ -z "${1:-}" ] && name=$(sed -n 's/^ *"name": *"\([^"]*\)".*/\1/p' "$job" | head -1)
id=
found=
for st in running queued; do
  [ -n "$name" ] || break
  id=$(curl -sf --max-time 5 "$base/api/v1/jobs?status=$st" |
    grep -o "\"id\":[0-9]*,\"name\":\"$name\"" | head -1 | sed 's/"id":\([0-9]*\).*/\1/') || true
  if [ -n "$id" ]; then
    found=$st
    break
  fi
done
if [ -n "$id" ]; then
  echo "quickstart: job $id '$name' is already $found; not submitting it again"
else
  answer=$(curl -sS --max-time 10 -X POST -H 'Content-Type: application/json' --data-binary @"$job" \
    "$base/api/v1/jobs")
  id=$(printf '%s' "$answer" | sed -n 's/^{"id":\([0-9]*\),.*/\1/p')
  if [ -z "$id" ]; then
    echo "quickstart: the daemon refused $job: $answer" >&2
    exit 1
  fi
  echo "quickstart: submitted $job as job $id"
fi

cat <<EOF

  dashboard:   $base/
  the job:     curl -s $base/api/v1/jobs/$id
  live events: curl -N $base/api/v1/jobs/$id/events
  loss curve:  curl -s '$base/api/v1/jobs/$id/metrics?names=loss&max_points=50'
  validation:  curl -s $base/api/v1/jobs/$id/evaluation
  stop dacld:  $stop    (running jobs checkpoint and resume at the next start)
EOF
