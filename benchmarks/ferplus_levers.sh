#!/usr/bin/env bash
# Short proxy runs that show each lever's direction (docs/models.md, "Levers"): one student distilled from a
# shipped bundle for 2 epochs of 150 steps (19,200 images, 0.8 of an epoch of FER+ train), one thread, then
# scored on the tuning split (which the run never trains on and which picks its best epoch) and on FER+
# validation. About 3 CPU minutes per lever on a quiet core.
#
#   bash benchmarks/ferplus_levers.sh ../shared ../fer-runs [LEVER...]
#
# State (runs, bundles, the table levers.md) lives in WORK_DIR/levers; a rerun skips finished levers.
set -euo pipefail
SHARED=$(realpath "$1")
W=$(realpath -m "$2")/levers
shift 2
F=$SHARED/data/fer2013
mkdir -p "$W"
TRAIN=(--manifest "$F/ferplus_train.csv@$F/train")
[ -f "$W/ferplus_tuning.csv" ] || python - "$F" "$W/ferplus_tuning.csv" <<'PY'
import csv, sys
from training.tuning import in_tuning
root, out = sys.argv[1], sys.argv[2]
with open(f"{root}/ferplus_train.csv", newline="") as f:
    rows = list(csv.reader(f))
with open(out, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(rows[0])
    w.writerows([[f"{root}/train/{r[0]}", *r[1:]] for r in rows[1:] if in_tuning(r[1])])
PY
COMMON=(--students 1 --epochs 2 --steps-per-epoch 150 --batch-size 64 --lr 2e-3 --betas '[0.9,0.999]'
  --weight-decay 0.05 --schedule onecycle --zoom 1,1.15 --rotate 10 --erase 0.25 --balance none --threads 1
  --cache "$W/../cache" "${TRAIN[@]}" --val-manifest "$W/ferplus_tuning.csv")
[ -f "$W/levers.md" ] || printf '| lever | proxy setup | tuning acc | tuning F1 | FER+ val acc | FER+ val F1 | options beyond the common ones |\n|---|---|---|---|---|---|---|\n' > "$W/levers.md"

lever() {  # lever NAME "SETUP TEXT" TEACHER_BUNDLE [extra fer-train student options]
  local name=$1 setup=$2 teacher=$3
  shift 3
  grep -q "^| $name |" "$W/levers.md" && return 0
  local cmd=(fer-train student --teacher "$teacher" "${COMMON[@]}" "$@" --out "$W/$name")
  nice -n 10 "${cmd[@]}"
  [ -f "$W/$name.bundle/bundle.json" ] || nice -n 10 fer-train export "$W/$name" -o "$W/$name.bundle" --overwrite
  nice -n 10 fer-train evaluate "$W/$name.bundle" "${TRAIN[@]}" --tuning --threads 1 --cache "$W/../cache" --json "$W/$name.tuning.json" > /dev/null
  nice -n 10 fer-train evaluate "$W/$name.bundle" --manifest "$F/ferplus_val.csv@$F/val" --threads 1 --cache "$W/../cache" --json "$W/$name.val.json" > /dev/null
  local shown="${*:-}"
  shown=${shown//$W\//}
  python - "$W" "$name" "$setup" "$shown" <<'PY' >> "$W/levers.md"
import json, sys
w, name, setup, extra = sys.argv[1:]
t = json.load(open(f"{w}/{name}.tuning.json"))["ensemble"]["tasks"]["EXPR"]
v = json.load(open(f"{w}/{name}.val.json"))["ensemble"]["tasks"]["EXPR"]
print(f"| {name} | {setup} | {t['acc']:.4f} | {t['f1']:.4f} | {v['acc']:.4f} | {v['f1']:.4f} | `{extra or '(common)'}` |")
PY
}

T=weights/ferplus-fast
loss() {  # loss NAME DISTILL TRUTH: a TOML file of the loss mix for --config, named in the table
  printf '[loss]\ndistill = %s\ntruth = %s\n' "$2" "$3" > "$W/$1.toml"
  echo "$W/$1.toml"
}
want() { [ $# -eq 0 ] || [[ " ${LEVERS[*]} " == *" $1 "* ]]; }
LEVERS=("$@")
want baseline && lever baseline "T 1.5, 0.4 soft + 0.6 votes (shipped recipe)" $T
want no-distill && lever no-distill "votes only on EXPR (soft weight 0)" $T --config "$(loss no-distill 0.0 1.0)"
want soft-t2 && lever soft-t2 "soft weight x T^2 (0.9 soft + 0.6 votes)" $T --config "$(loss soft-t2 0.9 0.6)"
want temp4 && lever temp4 "T 4, soft weight x T^2 (6.4 soft + 0.6 votes)" $T --temperature 4 --config "$(loss temp4 6.4 0.6)"
want longer && lever longer "4 epochs x 150 steps (twice the budget)" $T --epochs 4
want balance && lever balance "EXPR classes balanced in sampling" $T --balance EXPR
[ -d "$W/../bundles/teacher-and-students" ] && want ens-teacher && lever ens-teacher "soft labels of teacher + 5 students (6 networks)" "$W/../bundles/teacher-and-students"
cat "$W/levers.md"
