"""The geometry stage in the pipeline: regions around our boxes, and `fer-annotate --geometry` end to end."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bundle_factory import make_random_bundle
from cli_run import invoke, read_table, sidecar
from PIL import Image

from fer_annotate.faces import geometry
from fer_annotate.faces.detect import Detections
from fer_annotate.faces.geometry import (
    BLENDSHAPE_COLUMNS,
    LANDMARK_COLUMNS,
    POSE_COLUMNS,
    GeometryConfig,
    GeometryStage,
)

VIDEO = "pyfeat_face_noface.mov"  # a face in the first 40 % of the frames, none in the last 50 %


@pytest.fixture(scope="module")
def model(shared_dir: Path) -> Path:
    pytest.importorskip("mediapipe", reason="the geometry stage needs mediapipe (extra [geometry])")
    path = shared_dir / "models" / geometry.MODEL_NAME
    if not path.is_file():
        pytest.skip(f"needs the face landmarker model at {path}")
    return path


def test_stage_cells_in_frame_pixels_and_mirror_agreement(model: Path, shared_dir: Path) -> None:
    """A face in a larger frame: landmarks land on the face; the mirrored frame mirrors yaw/roll and the points."""
    face = np.asarray(Image.open(shared_dir / "fixtures" / "images" / "Tom_Hanks_54745.png").convert("RGB"))
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[60:172, 150:262] = face
    box = np.array([[170.0, 80.0, 242.0, 165.0]])
    mirrored_box = np.array([[320 - 242.0, 80.0, 320 - 170.0, 165.0]])
    frames = np.stack([frame, frame[:, ::-1]])
    found = [Detections(box, np.ones(1), None), Detections(mirrored_box, np.ones(1), None)]
    stage = GeometryStage(GeometryConfig(model=model, landmarks=True))
    (a,), (b,) = stage(frames, found)
    assert set(a) == set(stage.columns()) == {*POSE_COLUMNS, *BLENDSHAPE_COLUMNS, *LANDMARK_COLUMNS}
    points = np.array([[a[f"lm{i}_x"], a[f"lm{i}_y"]] for i in range(478)])
    alone = stage.landmarker([face]).landmarks[0, :, :2] + [150, 60]  # the still by itself, moved into the frame
    assert np.median(np.abs(points - alone)) < 3
    assert abs(a["pose_yaw"] + b["pose_yaw"]) < 3 and abs(a["pose_roll"] + b["pose_roll"]) < 3
    assert abs(a["pose_pitch"] - b["pose_pitch"]) < 3
    assert abs(a["lm1_x"] - (320 - b["lm1_x"])) < 3 and abs(a["lm1_y"] - b["lm1_y"]) < 3
    assert abs(a["bs_eyeBlinkLeft"] - b["bs_eyeBlinkRight"]) < 0.1


def test_regions_are_clipped_squares_around_the_box(model: Path) -> None:
    stage = GeometryStage(GeometryConfig(model=model, region_scale=2.0))
    frame = np.zeros((100, 200, 3), np.uint8)
    regions, corners = stage.regions(frame, np.array([[50.0, 40.0, 70.0, 50.0], [-10.0, 90.0, 10.0, 120.0]]))
    assert regions[0].shape == (40, 40, 3) and corners[0].tolist() == [40, 25]
    assert corners[1].tolist() == [0, 75] and regions[1].shape == (25, 30, 3)


@pytest.mark.slow
def test_cli_geometry_columns_csv(model: Path, shared_dir: Path, torch_home: Path, tmp_path: Path) -> None:
    bundle = make_random_bundle(tmp_path / "bundle", backbone="small_cnn")
    out = tmp_path / "out.csv"
    result = invoke([shared_dir / "fixtures" / "videos" / VIDEO, "-o", out, "--weights", bundle, "--every", "4",
                     "--geometry", "mediapipe", "--geometry-model", model])
    assert result.exit_code == 0, result.describe()
    table = read_table(out)
    assert list(table.columns[-55:]) == [*POSE_COLUMNS, *BLENDSHAPE_COLUMNS]
    assert "expr_happiness" in table.columns and not any(c.startswith("lm") for c in table.columns)
    ok, none = table[table["status"] == "ok"], table[table["status"] == "no_face"]
    assert len(ok) > 5 and len(none) > 5
    assert ok["pose_yaw"].notna().mean() > 0.9 and none[list(POSE_COLUMNS)].isna().all().all()
    found = ok.dropna(subset=["pose_yaw"])
    bs = found[list(BLENDSHAPE_COLUMNS)].to_numpy(float)
    assert np.isfinite(bs).all() and bs.min() >= 0 and bs.max() <= 1
    meta = json.loads(sidecar(out).read_text())
    assert meta["geometry"]["sha256"] == geometry.MODEL_SHA256 and meta["geometry"]["model"] == str(model)
    assert meta["timing"]["stages"]["geometry"] > 0 and meta["columns"] == list(table.columns)


@pytest.mark.slow
def test_cli_landmarks_parquet_inside_the_face_box(model: Path, shared_dir: Path, torch_home: Path,
                                                   tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    result = invoke([shared_dir / "fixtures" / "videos" / VIDEO, "-o", out, "--weights", "none", "--end", "1",
                     "--every", "5", "--format", "parquet", "--geometry", "mediapipe", "--geometry-model", model,
                     "--landmarks"])
    assert result.exit_code == 0, result.describe()
    table = pd.read_parquet(out)
    assert list(table.columns[-len(LANDMARK_COLUMNS):]) == list(LANDMARK_COLUMNS)
    ok = table[table["status"] == "ok"].dropna(subset=["lm1_x"])
    assert len(ok) >= 3
    nose_x, nose_y = ok["lm1_x"].to_numpy(), ok["lm1_y"].to_numpy()
    assert ((ok["x1"] < nose_x) & (nose_x < ok["x2"]) & (ok["y1"] < nose_y) & (nose_y < ok["y2"])).all()


@pytest.mark.parametrize(("args", "message"), [
    (["--landmarks"], "--landmarks needs --geometry mediapipe"),
    (["--geometry", "mediapipe", "--landmarks"], "--format parquet"),
    (["--geometry", "mediapipe", "--format", "abaw"], "ABAW files have no place"),
])
def test_cli_usage_errors(args: list[str], message: str, tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    result = invoke([video, "-o", tmp_path / "out.csv", "--weights", "none", *args])
    assert result.exit_code == 2 and message in result.output, result.describe()


def test_cli_model_missing_offline_is_one_clear_error(shared_dir: Path, torch_home: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mediapipe", reason="the geometry stage needs mediapipe (extra [geometry])")
    monkeypatch.setenv("FER_ANNOTATE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FER_ANNOTATE_OFFLINE", "1")
    out = tmp_path / "out.csv"
    result = invoke([shared_dir / "fixtures" / "videos" / VIDEO, "-o", out, "--weights", "none",
                     "--geometry", "mediapipe"])
    assert result.exit_code == 1 and result.exception is None, result.describe()
    assert str(tmp_path / "cache" / "mediapipe" / "face_landmarker.task") in result.output
    assert not out.exists() and not list(tmp_path.glob("*.json"))
