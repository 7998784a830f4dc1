#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan, -DDACL_FUZZ=ON) in their own build folder and
# runs each for SECONDS, one after another on one core, then prints executions, exec/s and any
# crash per target. Exit status 1 if a target crashed, leaked, hung or ran out of memory.
#   tests/fuzz/run.sh SECONDS [TARGET...]      targets: config http h5 nifti png manifest checkpoint
# Environment: DACL_FUZZ_BUILD (default build-fuzz), JOBS (build jobs, default 2).
# Each run starts from the committed seeds (corpus/<target>) and regression inputs
# (regressions/<target>) plus what earlier runs found (<build>/fuzz-corpus/<target>, where new
# inputs go; the committed corpus is never written). A crashing input is saved as
# <build>/fuzz-artifacts/<target>/crash-*: fix the bug, then commit the input under
# regressions/<target>/ so the replay test in the default build keeps it fixed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
secs="${1:-}"
if ! [[ "$secs" =~ ^[0-9]+$ ]]; then
  sed -n '2,11p' "$0" >&2
  exit 2
fi
shift
all=(config http h5 nifti png manifest checkpoint)
targets=("$@")
[ "${#targets[@]}" -eq 0 ] && targets=("${all[@]}")
build="${DACL_FUZZ_BUILD:-$root/build-fuzz}"

# the most bytes worth mutating per input: a little above the largest seed
max_len() {
  case "$1" in
    config|http|png) echo 4096 ;;
    manifest|nifti) echo 8192 ;;
    h5|checkpoint) echo 32768 ;;
  esac
}
# per-target libFuzzer flags; see BENCHMARKS.md, Reliability, for why any is there
extra_flags() {
  case "$1" in
    # libhdf5 1.10.8 is not safe on hostile files: it trusts size fields of a crafted file's
    # object headers and allocates (and clears) gigabytes, reads through NULL on some corrupt
    # local heaps, and loses a few hundred bytes on others (direct leaks allocated inside it, after
    # every id we opened was closed). None of that is in our code and any of it would end a run,
    # so this target runs in a child process that libFuzzer restarts after such an input, and
    # every crash it saved is replayed and judged by its stack afterwards (triage below): one
    # whose first frame of ours or libhdf5's is ours fails the run. Leak detection is off for this
    # target only (here and in its ASAN_OPTIONS: LeakSanitizer also checks at exit). Our reader's
    # own largest buffers after its size checks are ~300 MB, under the 512 MB malloc limit.
    h5) echo "-fork=1 -ignore_ooms=1 -ignore_timeouts=1 -ignore_crashes=1 -malloc_limit_mb=512 -detect_leaks=0" ;;
    *) echo "" ;;
  esac
}

CC="${CC:-clang}" cmake -S "$root" -B "$build" -DDACL_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 -g" >/dev/null
cmake --build "$build" -j"${JOBS:-2}" --target "${targets[@]/#/fuzz_}" >/dev/null

# the inputs' files (fuzz_util.h): in memory, and removed however the targets end
scratch="$(mktemp -d "$( [ -w /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")/dacl-fuzz-run.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
export DACL_FUZZ_TMP="$scratch"
export OPENBLAS_NUM_THREADS=1
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
# Which code an input crashes in: "ours" or "libhdf5", by the first stack frame in either.
# A smashed stack is the exception: glibc's "stack smashing detected" aborts from the function
# whose canary was overwritten, and the overwrite usually takes the frames above it too, so no
# frame of libhdf5's is left to see. Only code built with a stack protector checks canaries; ours
# is built with AddressSanitizer instead (an overflow of ours is a stack-buffer-overflow report),
# so when the fuzz binary itself never calls __stack_chk_fail, the smash happened in a shared
# library, and in this target the only one that reads the input is libhdf5 (with its filters).
calls_stack_chk() { objdump -d --no-show-raw-insn "$1" 2>/dev/null | grep -qE 'call.*<__stack_chk_fail'; }
# An input that runs clean on its own ("none") crashed only after what earlier inputs left in the
# same child (libhdf5 keeps state between files; our reader keeps none): kept, reported, not judged.
triage() {
  local out frame rc=0
  out=$(ASAN_OPTIONS="$2" "$1" "$3" 2>&1) || rc=$?
  if [ "$rc" -eq 0 ]; then
    echo none
    return
  fi
  frame=$(grep -E '^ +#[0-9]+ ' <<<"$out" | grep -m1 -E "libhdf5|$root/[^ ]+\.c:[0-9]+" || true)
  if [ -z "$frame" ] && grep -q 'stack smashing detected' <<<"$out" && ! calls_stack_chk "$1"; then
    echo libhdf5
    return
  fi
  case "$frame" in *libhdf5*) echo libhdf5 ;; *) echo ours ;; esac
}

failed=0
summary=""
for t in "${targets[@]}"; do
  bin="$build/tests/fuzz/fuzz_$t"
  work="$build/fuzz-corpus/$t"
  art="$build/fuzz-artifacts/$t"
  log="$build/fuzz-logs/$t.log"
  mkdir -p "$work" "$art" "$(dirname "$log")"
  echo "== fuzz_$t for ${secs}s (max_len $(max_len "$t")) =="
  touch "$log.start"
  asan="$ASAN_OPTIONS"
  [ "$t" = h5 ] && asan="$asan:detect_leaks=0"
  set +e
  # shellcheck disable=SC2046
  ASAN_OPTIONS="$asan" "$bin" -max_total_time="$secs" -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$art/" $(extra_flags "$t") \
    "$work" "$here/corpus/$t" "$here/regressions/$t" >"$log" 2>&1
  rc=$?
  set -e
  if [ "$rc" -ne 0 ]; then
    # a crash that kills the signal handlers too (a smashed stack) leaves no crash-* file; the
    # input being read is still in the scratch folder
    find "$scratch" -type f -name 'input*' -exec sh -c 'cp "$1" "$2/last-input-$(date +%s)-$(basename "$1")"' _ {} "$art" \;
  fi
  if [ "$t" = h5 ]; then # crashes were skipped, not fatal: judge each one saved by this run
    rc=0 # -fork exits non-zero when it skipped any; the triage decides
    n_lib=0
    n_none=0
    while IFS= read -r -d '' a; do
      case "$(triage "$bin" "$asan" "$a")" in
        ours)
          echo "fuzz_$t: $a crashes in our code" | tee -a "$log"
          rc=1
          ;;
        none)
          n_none=$((n_none + 1))
          mv "$a" "$art/unreproduced-$(basename "$a")"
          ;;
        *)
          n_lib=$((n_lib + 1))
          mv "$a" "$art/libhdf5-$(basename "$a")"
          ;;
      esac
    done < <(find "$art" -maxdepth 1 -name 'crash-*' -newer "$log.start" -print0)
    if [ "$n_lib" -gt 0 ]; then
      echo "fuzz_$t: $n_lib crash input(s) inside libhdf5 kept as $art/libhdf5-crash-*"
    fi
    if [ "$n_none" -gt 0 ]; then
      echo "fuzz_$t: $n_none crash input(s) that run clean on their own kept as $art/unreproduced-crash-*"
    fi
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  if [ -z "$execs" ]; then # -fork mode prints "#N: cov: ... exec/s: R oom/timeout/crash: a/b/c ..."
    execs=$(grep -oE '^#[0-9]+: cov' "$log" | tail -1 | tr -dc 0-9 || true)
    rate=$(grep -oE '^#[0-9]+: .*exec/s [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+$' || true)
    otc=$(grep -oE 'oom/timeout/crash: [0-9/]+' "$log" | tail -1 | cut -d' ' -f2 || true)
    if [ -n "$otc" ]; then echo "fuzz_$t: oom/timeout/crash inputs skipped: $otc (in $art)"; fi
  fi
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2 || true) # none if cut short
  if [ "$rc" -ne 0 ]; then
    failed=1
    what=$(grep -m1 -oE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer|UndefinedBehaviorSanitizer)[^(]*|runtime error:.*|SUMMARY:.*' "$log" || true)
    echo "fuzz_$t: FAILED (exit $rc): ${what:-see $log}"
    grep -E '^artifact_prefix|Test unit written to' "$log" || true
    summary+=$(printf '%-11s %12s %9s %7s  FAILED: %s' "$t" "${execs:--}" "${rate:--}" "${cov:--}" "${what:-see $log}")$'\n'
  else
    summary+=$(printf '%-11s %12s %9s %7s  ok' "$t" "${execs:--}" "${rate:--}" "${cov:--}")$'\n'
  fi
done
echo
printf '%-11s %12s %9s %7s  %s\n' target executions exec/s cov result
printf '%s' "$summary"
exit "$failed"
