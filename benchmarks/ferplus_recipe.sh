#!/usr/bin/env bash
# How the shipped bundle weights/ferplus-distilled was made, step by step (CPU: about 4 hours on 2 cores).
#
#   bash benchmarks/ferplus_recipe.sh ../shared WORK_DIR
#
# SHARED holds data/fer2013/{train,val} with ferplus_{train,val}.csv (FER+ votes), the fixture videos and
# models/face_landmarker.task; WORK_DIR receives the labelled manifests, harvested video faces and runs.
# Steps whose output exists are skipped, so a rerun resumes (fer-train runs resume by themselves).
set -euo pipefail
SHARED=$(realpath "$1")
W=$(realpath -m "$2")
mkdir -p "$W"
F=$SHARED/data/fer2013
MODEL=$SHARED/models/face_landmarker.task
export TORCH_HOME=${TORCH_HOME:-$SHARED/torch-home}

# 1. The geometry teacher labels every FER+ image: 52 blendshapes + head pose (the votes are carried along).
[ -f "$W/ferplus_val_mp.csv" ] || fer-train label --teacher mediapipe --model "$MODEL" \
  --manifest "$F/ferplus_val.csv@$F/val" -o "$W/ferplus_val_mp.csv"
[ -f "$W/ferplus_train_mp.csv" ] || fer-train label --teacher mediapipe --model "$MODEL" \
  --manifest "$F/ferplus_train.csv@$F/train" -o "$W/ferplus_train_mp.csv"

# The FER2013 crop geometry (benchmarks/fer2013_template.py): where BlazeFace puts eyes, nose and mouth.
TEMPLATE='[[0.3164,0.3943],[0.6724,0.3891],[0.5009,0.5754],[0.4979,0.7619]]'
CROP=(--size 48 --template "$TEMPLATE" --box-scale 1.2383)

# 2. Video faces: every frame of the WolfgangLanger clip and of a synthetic 5-person pan, cut as the bundle
#    sees them; the two other real clips are held out (whole videos) to measure the students on.
mkdir -p "$W/videos/train" "$W/videos/heldout"
[ -f "$W/videos/train/group_pan.mp4" ] || python benchmarks/geometry_videos.py "$SHARED/fixtures/images" "$W/videos/train"
ln -sf "$SHARED/fixtures/videos/pyfeat_WolfgangLanger_Pexels.mp4" "$W/videos/train/"
ln -sf "$SHARED/fixtures/videos/pyfeat_single_face.mp4" "$SHARED/fixtures/videos/pyfeat_face_noface.mov" "$W/videos/heldout/"
[ -f "$W/faces_train/labels.csv" ] || fer-train harvest --videos "$W/videos/train" "${CROP[@]}" \
  --fps 30 --detector blazeface-back --model "$MODEL" -o "$W/faces_train"
[ -f "$W/faces_heldout/labels.csv" ] || fer-train harvest --videos "$W/videos/heldout" "${CROP[@]}" \
  --fps 30 --model "$MODEL" -o "$W/faces_heldout"

# 3. Teacher on the votes (+ geometry), 48 px grey, the FER2013 crop geometry of benchmarks/fer2013_template.py.
COMMON=(--backbone small_cnn --backbone-kwargs '{"width":32,"depths":[1,1,2,2]}' --size 48 --colour gray
  --template "$TEMPLATE" --box-scale 1.2383
  --batch-size 64 --lr 2e-3 --betas '[0.9,0.999]' --weight-decay 0.05 --schedule onecycle
  --zoom 1,1.15 --rotate 10 --erase 0.25 --threads 1 --cache "$W/cache")
fer-train teacher --manifest "$W/ferplus_train_mp.csv" --manifest "$W/faces_train/labels.csv" \
  --val-manifest "$W/ferplus_val_mp.csv" "${COMMON[@]}" --balance none --epochs 16 --out "$W/runs/teacher"

# 4. The comparisons of the README (short teachers, same seed): votes vs majority labels, balancing on vs off.
fer-train teacher --manifest "$W/ferplus_train_mp.csv" --val-manifest "$W/ferplus_val_mp.csv" "${COMMON[@]}" \
  --balance none --epochs 5 --seed 1 --out "$W/runs/abl_votes"
fer-train teacher --manifest "$W/ferplus_train_mp.csv" --val-manifest "$W/ferplus_val_mp.csv" "${COMMON[@]}" \
  --balance none --expr-labels majority --epochs 5 --seed 1 --out "$W/runs/abl_majority"
fer-train teacher --manifest "$W/ferplus_train_mp.csv" --val-manifest "$W/ferplus_val_mp.csv" "${COMMON[@]}" \
  --balance EXPR --epochs 5 --seed 1 --out "$W/runs/abl_balance"

# 5. Five students from scratch, distilled from the teacher (soft labels on every head + votes and the
#    landmarker's targets as ground truth), 10 epochs each; two processes share the students (more
#    processes may share them too: each claims an unclaimed or abandoned student, interrupted ones resume).
STUDENTS=(student --teacher "$W/runs/teacher" --students 5 --epochs 10 --lr 2e-3 --schedule onecycle
  --threads 1 --out "$W/runs/students")
fer-train "${STUDENTS[@]}" & fer-train "${STUDENTS[@]}"; wait

# 6. Export and the figures of the README.
fer-train export "$W/runs/teacher" -o "$W/teacher-bundle" --overwrite
fer-train export "$W/runs/students" -o weights/ferplus-distilled --name ferplus-distilled --overwrite
for b in weights/ferplus-distilled "$W/teacher-bundle"; do
  fer-train evaluate "$b" --manifest "$W/ferplus_val_mp.csv" --threads 2 --json "$W/eval_$(basename "$b")_ferplus.json"
  fer-train evaluate "$b" --folders "$F/val" --threads 2 --json "$W/eval_$(basename "$b")_fer2013.json"
done
fer-train evaluate weights/ferplus-distilled --manifest "$W/faces_heldout/labels.csv" --threads 2 \
  --json "$W/eval_heldout_video.json"
