#!/usr/bin/env bash
# Benchmark dacld's engine (dacl-bench) against its PyTorch peer, in one run so
# the ratios are comparable (these shared machines move +-10 % between runs).
#
# Usage (from the repository root):
#   tests/bench/run.sh [--threads T] [--quick] [--peer-only]
#
#   --threads T   threads for every implementation (default 2)
#   --quick       1 warmup + 1 timed iteration everywhere (a smoke test, not a figure)
#   --peer-only   run only the PyTorch peers (no dacl-bench needed)
#
# Environment:
#   DACL_BENCH    dacl-bench binary (default build/tests/bench/dacl-bench)
#   OUT_DIR       where bench-<date>.jsonl goes (default build/bench)
#   TORCH_PYTHON  python with torch (default /usr/bin/python3, Debian's python3-torch)
#   JEMALLOC      jemalloc shared object (default /usr/lib/x86_64-linux-gnu/libjemalloc.so.2)
#
# Configurations, all at 256x256: forward batch 8, train step batch 8, train step
# batch 24; each for dacld, PyTorch as installed (glibc malloc) and PyTorch with
# jemalloc (no page decay: docs/performance.md explains why that matters). Every
# configuration runs in its own process, so peak RSS is per configuration.
#
# dacl-bench contract: it accepts
#   --mode forward|train --batch N --patch P --threads T --iters K --warmup W
# and prints one JSON line on stdout with the keys torch_peer.py prints, with
# "impl": "dacld". Anything else it prints to stdout is ignored unless it is
# the last line starting with '{'.
#
# OPENBLAS_CORETYPE is passed through untouched on purpose.
set -u -o pipefail

THREADS=2
QUICK=0
PEER_ONLY=0
while [ $# -gt 0 ]; do
    case "$1" in
        --threads) [ $# -ge 2 ] || { echo "run.sh: --threads needs a value" >&2; exit 2; }
                   THREADS="$2"; shift 2 ;;
        --threads=*) THREADS="${1#--threads=}"; shift ;;
        --quick) QUICK=1; shift ;;
        --peer-only) PEER_ONLY=1; shift ;;
        -h|--help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done
case "$THREADS" in ''|*[!0-9]*|0) echo "run.sh: --threads must be a positive integer" >&2; exit 2 ;; esac

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PEER="$HERE/torch_peer.py"
DACL_BENCH="${DACL_BENCH:-build/tests/bench/dacl-bench}"
OUT_DIR="${OUT_DIR:-build/bench}"
TORCH_PYTHON="${TORCH_PYTHON:-/usr/bin/python3}"
JEMALLOC="${JEMALLOC:-/usr/lib/x86_64-linux-gnu/libjemalloc.so.2}"
PATCH=256

# Check everything before spending minutes on measurements.
if [ "$PEER_ONLY" -eq 0 ] && [ ! -x "$DACL_BENCH" ]; then
    cat >&2 <<EOF
run.sh: dacl-bench not found or not executable at '$DACL_BENCH'.
        Build it first (cmake --build build --target dacl-bench), point DACL_BENCH at it,
        or pass --peer-only to measure just the PyTorch peers.
EOF
    exit 2
fi
if ! "$TORCH_PYTHON" -c 'import torch' 2>/dev/null; then
    echo "run.sh: '$TORCH_PYTHON' cannot import torch (Debian's /usr/bin/python3 with python3-torch is expected; set TORCH_PYTHON)" >&2
    exit 2
fi
if [ ! -r "$JEMALLOC" ]; then
    echo "run.sh: jemalloc not found at '$JEMALLOC' (apt install libjemalloc2, or set JEMALLOC)" >&2
    exit 2
fi
mkdir -p "$OUT_DIR" || exit 2
JSONL="$OUT_DIR/bench-$(date +%Y%m%d-%H%M%S).jsonl"
: > "$JSONL" || exit 2

# name mode batch warmup iters. Counts keep the whole run near 10 minutes on 2
# cores: PyTorch as installed needs ~2.2 s per forward batch 8, ~7 s per train
# step batch 8 and ~22 s per train step batch 24 there.
if [ "$QUICK" -eq 1 ]; then
    CONFIGS=("fwd-b8 forward 8 1 1" "train-b8 train 8 1 1" "train-b24 train 24 1 1")
else
    CONFIGS=("fwd-b8 forward 8 2 10" "train-b8 train 8 1 5" "train-b24 train 24 1 3")
fi
IMPLS=(pytorch-glibc pytorch-jemalloc)
[ "$PEER_ONLY" -eq 0 ] && IMPLS=(dacld "${IMPLS[@]}")

FAILED=0
run_one() {  # impl mode batch warmup iters -> appends one JSON line, or returns 1
    local impl="$1" mode="$2" batch="$3" warmup="$4" iters="$5" out rc line
    local args=(--mode "$mode" --batch "$batch" --patch "$PATCH" --threads "$THREADS"
                --iters "$iters" --warmup "$warmup")
    case "$impl" in
        dacld)            out="$("$DACL_BENCH" "${args[@]}")" ;;
        pytorch-glibc)    out="$(env -u LD_PRELOAD "$TORCH_PYTHON" "$PEER" "${args[@]}")" ;;
        pytorch-jemalloc) out="$(LD_PRELOAD="$JEMALLOC" \
                                 MALLOC_CONF="dirty_decay_ms:-1,muzzy_decay_ms:-1" \
                                 "$TORCH_PYTHON" "$PEER" "${args[@]}")" ;;
    esac
    rc=$?
    line="$(printf '%s\n' "$out" | grep '^{' | tail -n 1)"
    if [ "$rc" -ne 0 ] || [ -z "$line" ] || \
       ! printf '%s' "$line" | "$TORCH_PYTHON" -c 'import json,sys; json.loads(sys.stdin.read())' 2>/dev/null; then
        echo "run.sh: $impl $mode batch $batch failed (exit $rc, output: ${out:-<none>})" >&2
        return 1
    fi
    printf '%s\n' "$line" >> "$JSONL"
}

START=$(date +%s)
echo "dacld bench: ${PATCH}x${PATCH}, $THREADS thread(s)$([ "$QUICK" -eq 1 ] && echo ', quick')$([ "$PEER_ONLY" -eq 1 ] && echo ', peers only') -> $JSONL" >&2
for cfg in "${CONFIGS[@]}"; do
    read -r name mode batch warmup iters <<<"$cfg"
    for impl in "${IMPLS[@]}"; do
        t0=$(date +%s)
        if run_one "$impl" "$mode" "$batch" "$warmup" "$iters"; then
            echo "  $name $impl: done in $(( $(date +%s) - t0 )) s" >&2
        else
            FAILED=$((FAILED + 1))
        fi
    done
done
echo "total $(( $(date +%s) - START )) s" >&2

"$TORCH_PYTHON" - "$JSONL" "$PATCH" "${CONFIGS[@]}" <<'EOF'
import json, sys

path, patch, configs = sys.argv[1], int(sys.argv[2]), [c.split() for c in sys.argv[3:]]
recs = [json.loads(l) for l in open(path) if l.strip()]

def key(r):
    impl = r.get("impl")
    return impl if impl == "dacld" else f"{impl}-{r.get('allocator', '?')}"

def find(mode, batch, impl):
    for r in recs:
        if r.get("mode") == mode and r.get("batch") == batch and r.get("patch") == patch \
                and key(r) == impl:
            return r
    return None

head = ["config", "impl", "img/s", "GFLOP/s", "peak RSS MB", "dacld/peer img/s", "dacld/peer RSS"]
rows = []
for name, mode, batch, _, _ in configs:
    batch = int(batch)
    d = find(mode, batch, "dacld")
    for impl in ("dacld", "pytorch-glibc", "pytorch-jemalloc"):
        r = find(mode, batch, impl)
        if r is None:
            if impl == "dacld" and not any(key(x) == "dacld" for x in recs):
                continue  # --peer-only, or dacld failed everywhere
            rows.append([name, impl, "FAILED", "", "", "", ""])
            continue
        speed = rss = "-"
        if impl != "dacld" and d is not None:
            speed = f"{d['img_per_s'] / r['img_per_s']:.2f}x"
            rss = f"{d['peak_rss_mb'] / r['peak_rss_mb']:.2f}x"
        rows.append([name, impl, f"{r['img_per_s']:.2f}", f"{r['gflops']:.1f}",
                     f"{r['peak_rss_mb']:.0f}", speed, rss])

w = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
fmt = lambda row: " | ".join(str(c).ljust(w[i]) if i < 2 else str(c).rjust(w[i])
                             for i, c in enumerate(row))
print(fmt(head))
print("-+-".join("-" * x for x in w))
for row in rows:
    print(fmt(row))
print(f"\nraw JSON lines: {path}")
EOF

if [ "$FAILED" -ne 0 ]; then
    echo "run.sh: $FAILED run(s) failed" >&2
    exit 1
fi
