"""The geometry teacher end to end, as a user runs it: `fer-train label` on stills, `fer-train distill` on a
real fixture video (faces harvested, labelled by MediaPipe's landmarker, the shipped bundle's members
adapted), export, and fer-annotate running the exported bundle with its blendshape and pose columns."""

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fer_annotate.models.bundle import load_bundle
from fer_annotate.models.weights import load_registry
from training.cli import main

pytest.importorskip("mediapipe", reason="the geometry teacher needs mediapipe (pip install -e '.[geometry]')")


@pytest.fixture(scope="module")
def landmarker_model(shared_dir: Path) -> Path:
    model = shared_dir / "models" / "face_landmarker.task"
    if not model.is_file():
        pytest.skip(f"needs {model}")
    return model


def _invoke(args: list) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_label_stills_with_mediapipe(tmp_path, shared_dir, landmarker_model):
    folder = tmp_path / "stills" / "happy"
    folder.mkdir(parents=True)
    for name in ("astronaut.png", "grace_hopper.jpg", "fa_grass.jpg"):
        Image.open(shared_dir / "fixtures" / "images" / name).convert("RGB").save(folder / (Path(name).stem + ".png"))
    out = tmp_path / "labels.csv"
    text = _invoke(["label", "--teacher", "mediapipe", "--model", landmarker_model, "--folders", tmp_path / "stills",
                    "-o", out])
    assert "3 images, 2 labelled" in text
    rows = {Path(r["path"]).stem: r for r in csv.DictReader(out.open())}
    assert rows["astronaut"]["expression"] == "happiness"
    assert float(rows["astronaut"]["bs_mouthSmileLeft"]) > 0.5 > float(rows["grace_hopper"]["bs_mouthSmileLeft"])
    assert rows["fa_grass"]["bs_jawOpen"] == "" and rows["fa_grass"]["pose_yaw"] == ""  # no face: missing


def test_distill_video_export_and_annotate(tmp_path, shared_dir, torch_home, landmarker_model):
    from cli_run import invoke, read_table

    video = shared_dir / "fixtures" / "videos" / "pyfeat_single_face.mp4"
    held_out = shared_dir / "fixtures" / "videos" / "pyfeat_face_noface.mov"
    run, bundle = tmp_path / "run", tmp_path / "adapted"
    text = _invoke(["distill", "--teacher", "mediapipe", "--videos", video, "--val-videos", held_out,
                    "--model", landmarker_model, "--fps", "10", "--epochs", "1", "--threads", "1", "--out", run])
    default = load_bundle(load_registry().location(load_registry().offline_default))
    assert f"{len(default.members)} students adapted from {default.name}" in text
    faces = list(csv.DictReader((run / "faces" / "labels.csv").open()))
    assert len(faces) >= 20 and all(Image.open(f["path"]).size == (48, 48) for f in faces[:3])
    assert sum(f["pose_yaw"] != "" for f in faces) >= 0.9 * len(faces)
    _invoke(["export", run, "-o", bundle])
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["tasks"] == ["EXPR", "BS", "POSE"] and len(manifest["bs_names"]) == 52
    assert manifest["provenance"]["students"]["init"].startswith("each student from the matching member")
    assert manifest["provenance"]["teacher"]["bundle"] == str(default.path.resolve())
    assert manifest.get("tta", "none") == default.tta  # the adapted members keep the default's flip TTA
    out = tmp_path / "out.csv"
    result = invoke([video, "-o", out, "--weights", bundle, "--end", "1"])
    assert result.exit_code == 0, result.output
    table = read_table(out)
    ok = table[table.status == "ok"]
    assert len(ok) > 0
    for column in ("expr_happiness", "bs_jawOpen", "bs_eyeBlinkLeft", "bs_std", "pose_yaw", "pose_roll", "pose_std"):
        assert ok[column].notna().all(), column
    assert ok["bs_jawOpen"].between(0, 1).all()
    assert np.abs(ok["pose_yaw"]).max() < 90


def test_distill_overwrite_keeps_the_new_faces_and_scores_the_start(tmp_path, shared_dir, torch_home, landmarker_model):
    """Issue 18.21: --overwrite starts over before harvesting (it used to delete the faces it had just
    harvested, then fail on faces/labels.csv), and the starting bundle's held-out score is printed."""
    video = shared_dir / "fixtures" / "videos" / "pyfeat_single_face.mp4"
    held_out = shared_dir / "fixtures" / "videos" / "pyfeat_face_noface.mov"
    run = tmp_path / "run"
    (run / "faces").mkdir(parents=True)
    (run / "faces" / "old.png").write_bytes(b"an earlier run's face")
    (run / "config.json").write_text("{}")
    text = _invoke(["distill", "--teacher", "mediapipe", "--videos", video, "--val-videos", held_out,
                    "--model", landmarker_model, "--fps", "4", "--epochs", "1", "--threads", "1", "--out", run,
                    "--overwrite"])
    default = load_bundle(load_registry().location(load_registry().offline_default)).name
    assert f"students adapted from {default}" in text, text
    assert re.search(rf"held-out: -?\d\.\d{{3}} adapted vs -?\d\.\d{{3}} for {default} before", text), text
    assert (run / "faces" / "labels.csv").is_file() and not (run / "faces" / "old.png").exists()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["teacher_val"]["tasks"], "the starting bundle's held-out score was not recorded"
