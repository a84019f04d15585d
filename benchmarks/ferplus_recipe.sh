#!/usr/bin/env bash
# Rebuilds every shipped ferplus bundle from scratch with one command (weights/ferplus-fast, weights/ferplus,
# weights/ferplus-large; the registry's ferplus-teacher and ferplus-distilled are aliases of the first two):
#
#   bash benchmarks/ferplus_recipe.sh [SHARED [WORK_DIR]]     # defaults: ../shared and ../fer-runs
#
# SHARED holds data/fer2013/{train,val} with ferplus_{train,val}.csv (FER+ votes), the fixture videos and
# models/face_landmarker.task. WORK_DIR, outside the repository, receives every intermediate result: the
# labelled manifests, harvested video faces, the teacher run, its bundle, the figures and a log per step.
# Every step records WORK_DIR/done/STEP when it has finished, so a rerun skips finished steps and resumes
# the one that was interrupted (the teacher run from its last completed epoch, the others from scratch:
# they are short and write their outputs atomically).
#
# Cost: about 2.9 CPU hours on a quiet machine (1.5 h of wall time on 2 cores): labelling 31,000 FER+ images
# with MediaPipe's landmarker ~0.1 h, video faces ~0.05 h, the 16-epoch teacher ~0.55 h at 217 images per
# CPU second (benchmarks/train_throughput.py), five 10-epoch students ~2.0 h at 170 images per CPU second
# (each also runs the teacher), validation passes, figures and speed ~0.2 h. These are estimates from the
# measured throughput, not a timed end-to-end run. With a CUDA device the same command trains there
# (fer-train --device auto); the speed figures are always measured on one CPU thread, as the manifests state.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SHARED=$(realpath "${1:-../shared}")
W=$(realpath -m "${2:-../fer-runs}")
mkdir -p "$W/done" "$W/logs"
F=$SHARED/data/fer2013
MODEL=$SHARED/models/face_landmarker.task
export TORCH_HOME=${TORCH_HOME:-$SHARED/torch-home}

step() {  # step NAME COMMAND...: run once; its output goes to WORK_DIR/logs/NAME.log
  local name=$1
  shift
  [ -f "$W/done/$name" ] && { echo "[done] $name"; return 0; }
  echo "[run]  $name: $*"
  local start=$SECONDS
  "$@" > "$W/logs/$name.log" 2>&1 || { echo "step $name failed: see $W/logs/$name.log" >&2; exit 1; }
  echo "$((SECONDS - start)) s" > "$W/done/$name"
}

# 1. The geometry teacher labels every FER+ image: 52 blendshapes + head pose (votes and FER+ names carried
#    along: the names decide the tuning split, training/tuning.py).
step label-val fer-train label --teacher mediapipe --model "$MODEL" --manifest "$F/ferplus_val.csv@$F/val" \
  -o "$W/ferplus_val_mp.csv"
step label-train fer-train label --teacher mediapipe --model "$MODEL" --manifest "$F/ferplus_train.csv@$F/train" \
  -o "$W/ferplus_train_mp.csv"

# The FER2013 crop geometry (benchmarks/fer2013_template.py): where BlazeFace puts eyes, nose and mouth.
TEMPLATE='[[0.3164,0.3943],[0.6724,0.3891],[0.5009,0.5754],[0.4979,0.7619]]'
CROP=(--size 48 --template "$TEMPLATE" --box-scale 1.2383)

# 2. Video faces: every frame of the WolfgangLanger clip and of a synthetic 5-person pan, cut as the bundle
#    sees them; the two other real clips are held out (whole videos) to measure blendshapes and pose on.
mkdir -p "$W/videos/train" "$W/videos/heldout"
ln -sf "$SHARED/fixtures/videos/pyfeat_WolfgangLanger_Pexels.mp4" "$W/videos/train/"
ln -sf "$SHARED/fixtures/videos/pyfeat_single_face.mp4" "$SHARED/fixtures/videos/pyfeat_face_noface.mov" \
  "$W/videos/heldout/"
step group-pan python benchmarks/geometry_videos.py "$SHARED/fixtures/images" "$W/videos/train"
step faces-train fer-train harvest --videos "$W/videos/train" "${CROP[@]}" --fps 30 --detector blazeface-back \
  --model "$MODEL" -o "$W/faces_train"
step faces-heldout fer-train harvest --videos "$W/videos/heldout" "${CROP[@]}" --fps 30 --model "$MODEL" \
  -o "$W/faces_heldout"

# 3. The teacher on the votes (+ geometry): 16 epochs, FER+ validation picks the epoch; the tuning split
#    never enters training. It resumes from its last completed epoch.
step teacher fer-train teacher --manifest "$W/ferplus_train_mp.csv" --manifest "$W/faces_train/labels.csv" \
  --val-manifest "$W/ferplus_val_mp.csv" --backbone small_cnn --backbone-kwargs '{"width":32,"depths":[1,1,2,2]}' \
  --size 48 --colour gray --template "$TEMPLATE" --box-scale 1.2383 --batch-size 64 --lr 2e-3 \
  --betas '[0.9,0.999]' --weight-decay 0.05 --schedule onecycle --zoom 1,1.15 --rotate 10 --erase 0.25 \
  --threads 1 --cache "$W/cache" --balance none --epochs 16 --out "$W/runs/teacher"
step export-teacher fer-train export "$W/runs/teacher" -o "$W/bundles/teacher" --name teacher --overwrite

# 4. Five students distilled from the teacher (soft labels on every head + votes and the landmarker's targets
#    as ground truth), 10 epochs each, from scratch; two processes share them (each claims an unclaimed or
#    abandoned student; an interrupted one resumes).
STUDENTS=(student --teacher "$W/runs/teacher" --students 5 --epochs 10 --lr 2e-3 --schedule onecycle --threads 1
  --out "$W/runs/students")
students() {  # two processes; fails when either does
  fer-train "${STUDENTS[@]}" &
  local other=$!
  fer-train "${STUDENTS[@]}"
  wait "$other"
}
step students students
step export-students fer-train export "$W/runs/students" -o "$W/bundles/students" --name students --overwrite

# 5. The four students most accurate on the tuning split (which none of them trained on) join the teacher.
for i in 0 1 2 3 4; do
  step "tuning-student$i" bash -c "fer-train pack '$W/bundles/students' -o '$W/bundles/student$i' --members $i \
    --overwrite && fer-train evaluate '$W/bundles/student$i' --manifest '$W/ferplus_train_mp.csv' --tuning \
    --threads 1 --cache '$W/cache' --json '$W/tuning-student$i.json'"
done
BEST=$(python -c "import json,sys; acc={i: json.load(open(f'{sys.argv[1]}/tuning-student{i}.json'))['ensemble']
['tasks']['EXPR']['acc'] for i in range(5)}; print(','.join(str(i + 1) for i in sorted(sorted(acc, key=acc.get)[1:])))" "$W")

# 6. The family: the teacher alone (ferplus-fast), with the four students (ferplus, the default), and those
#    five networks with flip test-time augmentation (ferplus-large).
step pack-fast fer-train pack "$W/bundles/teacher" -o weights/ferplus-fast --name ferplus-fast --overwrite
step pack-default fer-train pack "$W/bundles/teacher" "$W/bundles/students" -o weights/ferplus --name ferplus \
  --members "0,$BEST" --overwrite
step pack-large fer-train pack "$W/bundles/teacher" "$W/bundles/students" -o weights/ferplus-large \
  --name ferplus-large --members "0,$BEST" --tta flip --overwrite

# 7. Figures into each manifest: FER+ validation, the tuning split, frames/s of the default run on one thread.
for b in ferplus-fast ferplus ferplus-large; do
  step "speed-$b" python benchmarks/pipeline_benchmark.py --weights "weights/$b" --device cpu --threads 1 \
    --detect-every "$(python -c 'from fer_annotate.faces.sparse import DETECT_EVERY; print(DETECT_EVERY)')" \
    --end 10 --repeat 3 --json "$W/speed-$b.json"
  fps=$(python -c "import json,statistics as s,sys; p=json.load(open(sys.argv[1]))['passes'][-1]
print(round(p['frames'] / s.median(p['seconds']), 1))" "$W/speed-$b.json")
  step "figures-$b" fer-train figures "weights/$b" --ferplus "$F" --frames-per-s "$fps" --cache "$W/cache"
done

# 8. Blendshapes and pose on the held-out video faces (docs/models.md compares them with earlier bundles).
for b in ferplus-fast ferplus ferplus-large; do
  step "heldout-$b" fer-train evaluate "weights/$b" --manifest "$W/faces_heldout/labels.csv" --threads 1 \
    --json "$W/heldout-$b.json"
done
echo "all steps done; state in $W"
