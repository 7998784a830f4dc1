#!/usr/bin/env bash
# dacld's file commands end to end, through the built binary: phantom -> dataset show / init ->
# metrics (a label map against itself and against a damaged copy). Usage errors must exit 2 with
# a message, failures 1 with a message naming the file. Needs only bash, coreutils, gzip, awk.
# usage: cli_test.sh path/to/dacld
set -u
DACLD=${1:?usage: cli_test.sh path/to/dacld}
T=$(mktemp -d /tmp/dacl-cli-XXXXXX)
trap 'rm -rf "$T"' EXIT
failures=0

fail() {
    echo "FAIL: $*" >&2
    echo "  stdout: $(head -c 2000 "$T/out")" >&2
    echo "  stderr: $(head -c 2000 "$T/err")" >&2
    failures=$((failures + 1))
}

# run WANT_RC DESCRIPTION ARGS...: run dacld, keep stdout/stderr in $T/out, $T/err
run() {
    local want=$1 desc=$2
    shift 2
    "$DACLD" "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    if [ "$rc" -ne "$want" ]; then
        fail "$desc: exit $rc, wanted $want (dacld $*)"
        return 1
    fi
    return 0
}

# has FILE TEXT DESCRIPTION: FILE (out or err) contains TEXT literally
has() {
    grep -qF -- "$2" "$T/$1" || fail "$3: '$2' not in std$1"
}

# the JSON on stdout with all whitespace removed
compact() { tr -d ' \t\n\r' <"$T/out"; }

# num KEY CLASS: a number from the compact metrics JSON, e.g. num dice 1, num dice mean
num() {
    if [ "$2" = mean ]; then
        compact | sed -n "s/.*\"mean\":{[^}]*\"$1\":\([^,}]*\).*/\1/p"
    else
        compact | sed -n "s/.*\"$2\":{[^}]*\"$1\":\([^,}]*\).*/\1/p"
    fi
}

# between VALUE LO HI DESCRIPTION: LO < VALUE < HI
between() {
    awk -v v="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(v != "" && v + 0 > lo && v + 0 < hi) }' ||
        fail "$4: $1 not in ($2, $3)"
}

# ---- phantom ----
run 0 "phantom --help" phantom --help && has out "usage: dacld phantom" "phantom --help"
run 0 "phantom cardiac" phantom --kind cardiac --cases 3 --out "$T/c" --size 32 --seed 1 &&
    has out "2 train and 1 val" "phantom summary"
for f in dataset.json images/case000.nii.gz labels/case002.nii.gz; do
    [ -s "$T/c/$f" ] || fail "phantom did not write $f"
done
run 1 "phantom into a non-empty folder" phantom --kind cardiac --cases 3 --out "$T/c" --size 32 &&
    has err "$T/c" "refusal names the folder"
run 0 "phantom --force" phantom --kind cardiac --cases 3 --out "$T/c" --size 32 --seed 1 --force
run 0 "phantom abdomen" phantom --kind abdomen --cases 2 --out "$T/a" --size 16
run 2 "phantom unknown kind" phantom --kind liver --cases 3 --out "$T/x" && has err "unknown kind 'liver'" "kind"
run 2 "phantom one case" phantom --kind cardiac --cases 1 --out "$T/x" && has err "--cases" "cases range"
run 2 "phantom without --out" phantom --kind cardiac --cases 3 && has err "needs --kind, --cases and --out" "missing"
run 2 "phantom bad seed" phantom --kind cardiac --cases 3 --out "$T/x" --seed -4 && has err "--seed" "seed"

# ---- dataset ----
run 0 "dataset show" dataset show "$T/c" && {
    has out "phantom-cardiac" "show: name"
    has out "1 RV, 2 Myo, 3 LV" "show: labels"
    has out "2 cases, 2 labeled" "show: train"
    has out "val          1 cases" "show: val"
}
run 0 "dataset show --json" dataset show "$T/c" --json && has out '"splits"' "show --json"
run 1 "dataset init over a manifest" dataset init "$T/c" && has err "dataset.json" "init refusal names the file" &&
    has err "--force" "init refusal says how"
run 0 "dataset init --out" dataset init "$T/c" --out "$T/c.json" && has out "flat NIfTI" "init: layout"
run 0 "dataset show the new manifest" dataset show "$T/c.json" && has out "3 class3" "show init's labels (from the files)"
run 0 "dataset init --force" dataset init "$T/c" --force
run 1 "dataset show missing" dataset show "$T/nothere" && has err "$T/nothere" "show names the missing path"
run 2 "dataset unknown action" dataset frobnicate && has err "unknown action 'frobnicate'" "action"
run 2 "dataset init without a folder" dataset init && has err "which folder" "init usage"
run 0 "dataset --help" dataset --help && has out "usage: dacld dataset init" "dataset help"

# ---- metrics ----
L="$T/c/labels/case000.nii.gz"
run 0 "metrics --help" metrics --help && has out "usage: dacld metrics" "metrics help"
run 0 "metrics self --json" metrics --pred "$L" --gt "$L" --json && {
    for c in 1 2 3; do
        compact | grep -qF "\"$c\":{\"dice\":1,\"jaccard\":1,\"hd95\":0,\"asd\":0}" || fail "self: class $c not perfect"
    done
    compact | grep -qF '"4":' && fail "self: a class 4 that no file holds"
    [ "$(num distances_missing mean)" = 0 ] || fail "self: distances missing"
}
run 0 "metrics self --mm" metrics --pred "$L" --gt "$L" --mm && has out "distances in mm" "mm table" &&
    has out "mean" "table has the mean"

# a damaged copy: the first slice (the base, which holds every class) wiped to background
gzip -dc "$L" >"$T/gt.nii" && cp "$T/gt.nii" "$T/pred.nii" &&
    dd if=/dev/zero of="$T/pred.nii" bs=1 seek=352 count=1024 conv=notrunc 2>/dev/null ||
    fail "could not make the damaged copy"
run 0 "metrics damaged --json" metrics --pred "$T/pred.nii" --gt "$T/gt.nii" --json && {
    between "$(num dice 1)" 0.3 0.9999 "damaged: RV dice"
    between "$(num dice mean)" 0.3 0.9999 "damaged: mean dice"
    between "$(num hd95 2)" 0 1000 "damaged: myocardium hd95"
}
run 0 "metrics --classes 5" metrics --pred "$T/pred.nii" --gt "$T/gt.nii" --json --classes 5 &&
    { compact | grep -qF '"4":{"dice":1,"jaccard":1,"hd95":null,"asd":null}' || fail "absent class 4"; }
run 1 "metrics --classes too few" metrics --pred "$L" --gt "$L" --classes 2 && has err "holds label 3" "classes"
run 1 "metrics shapes differ" metrics --pred "$T/a/labels/case000.nii.gz" --gt "$L" && has err "shapes differ" "shape"
run 1 "metrics missing pred" metrics --pred "$T/missing.nii.gz" --gt "$L" && has err "$T/missing.nii.gz" "names file"
run 2 "metrics without --gt" metrics --pred "$L" && has err "needs --pred P and --gt G" "metrics usage"
run 2 "metrics bad --classes" metrics --pred "$L" --gt "$L" --classes 1 && has err "--classes" "classes range"
run 2 "metrics unknown option" metrics --pred "$L" --gt "$L" --dice && has err "--dice" "unknown option"

# ---- dacld ablation: six jobs that differ only in `method`, each accepted by the trainer ----
A="$T/abl"
run 0 "ablation writes the ladder" ablation --dataset phantom:cardiac --labeled 2 --out "$A" --quick
for row in I-cps II-random III-density IV-multiscale V-bank VI-dacl; do
    [ -s "$A/$row.json" ] || fail "ablation: $A/$row.json missing"
done
# strip name and method: what is left must be the same job for every row
for f in "$A"/*.json; do
    tr -d ' \t\n' <"$f" | sed -e 's/"name":"[^"]*",//' -e 's/"method":{[^}]*},//'
    echo
done | sort -u >"$T/rest"
[ "$(wc -l <"$T/rest")" -eq 1 ] || fail "ablation: rows differ outside method: $(cat "$T/rest")"
grep -q '"iterations":4000' "$T/rest" && grep -q '"patch":\[128,128\]' "$T/rest" ||
    fail "ablation --quick: not the quick protocol: $(cat "$T/rest")"
tr -d ' \t\n' <"$A/V-bank.json" | grep -q '"bank":true,"positiveness":"none"' || fail "ablation: row V"
tr -d ' \t\n' <"$A/IV-multiscale.json" | grep -q '"multiscale":true,"bank":false' || fail "ablation: row IV"
run 2 "ablation bad --rows" ablation --dataset phantom:cardiac --labeled 2 --out "$A" --rows I,VII &&
    has err "got 'I,VII'" "ablation rows"
run 2 "ablation without --labeled" ablation --dataset phantom:cardiac --out "$A" && has err "--labeled" "ablation usage"
# one row trained for 2 iterations prints its line of the table; a second --run skips it
if run 0 "ablation --run" ablation --dataset phantom:cardiac --labeled 2 --out "$A" --quick --iterations 2 \
    --rows VI --threads 1 --run; then
    grep -E '^VI +\+ soft positiveness \(DACL\) +2 +[0-9.]+' "$T/out" >/dev/null || fail "ablation table row VI"
    has out "RV" "ablation table header"
    run 0 "ablation --run again" ablation --dataset phantom:cardiac --labeled 2 --out "$A" --quick \
        --iterations 2 --rows VI --threads 1 --run && has err "skipped" "ablation skips a finished row"
fi

# ---- the command table ----
run 2 "unknown command" frobnicate && has err "unknown command 'frobnicate'" "unknown command"
run 0 "--help lists the commands" --help && has out "phantom" "help: phantom" && has out "metrics" "help: metrics"

if [ "$failures" -ne 0 ]; then
    echo "cli_test: $failures failure(s)" >&2
    exit 1
fi
echo "cli_test: all passed"
