"""The geometry stage alone: MediaPipe's face landmarker on real stills, pose sign conventions, model resolution."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_annotate.faces import geometry
from fer_annotate.faces.geometry import BLENDSHAPES, N_LANDMARKS, GeometryError, pose_from_matrix, resolve_model


@pytest.fixture(scope="module")
def landmarker(shared_dir: Path):
    pytest.importorskip("mediapipe", reason="the geometry stage needs mediapipe (extra [geometry])")
    model = shared_dir / "models" / geometry.MODEL_NAME
    if not model.is_file():
        pytest.skip(f"needs the face landmarker model at {model}")
    with geometry.Landmarker(model) as lm:
        yield lm


def still(shared_dir: Path, name: str) -> np.ndarray:
    return np.asarray(Image.open(shared_dir / "fixtures" / "images" / name).convert("RGB"))


def rotated(image: np.ndarray, degrees: float) -> np.ndarray:
    """The image rotated counter-clockwise (as seen) by `degrees` about its centre, same size."""
    return np.asarray(Image.fromarray(image).rotate(degrees, resample=Image.BILINEAR))


def test_blendshape_names_match_mediapipe_order(landmarker, shared_dir):
    import mediapipe as mp

    result = landmarker._task.detect(mp.Image(image_format=mp.ImageFormat.SRGB,
                                              data=np.ascontiguousarray(still(shared_dir, "astronaut.png"))))
    assert tuple(c.category_name for c in result.face_blendshapes[0]) == BLENDSHAPES
    assert len(BLENDSHAPES) == 52 and len(set(geometry.BLENDSHAPE_COLUMNS)) == 52


def test_smile_on_astronaut_not_on_grace_hopper(landmarker, shared_dir):
    g = landmarker([still(shared_dir, "astronaut.png"), still(shared_dir, "grace_hopper.jpg")])
    assert g.found.tolist() == [True, True]
    smile = g.blendshapes[:, BLENDSHAPES.index("mouthSmileLeft")]
    assert smile[0] > 0.7 and smile[1] < 0.1
    assert g.blendshapes.dtype == np.float32 and 0 <= g.blendshapes.min() and g.blendshapes.max() <= 1


def test_no_face_gives_nan_rows(landmarker, shared_dir):
    g = landmarker([np.zeros((48, 48, 3), np.uint8), still(shared_dir, "grace_hopper.jpg")])
    assert g.found.tolist() == [False, True]
    assert np.isnan(g.blendshapes[0]).all() and np.isnan(g.pose[0]).all() and np.isnan(g.landmarks[0]).all()
    assert g.landmarks.shape == (2, N_LANDMARKS, 3) and not np.isnan(g.landmarks[1]).any()


def test_landmarks_in_input_pixels_for_small_and_large_inputs(landmarker, shared_dir):
    """A 64 px copy (upscaled and padded inside) gives the same landmarks as the full image, scaled."""
    big = still(shared_dir, "astronaut.png")
    head = big[20:276, 120:376]  # 256 px square around the face
    small = np.asarray(Image.fromarray(head).resize((64, 64), Image.BILINEAR))
    g = landmarker([big, head, small])
    assert g.found.all()
    for moved, ref in [(g.landmarks[1] + [120, 20, 0], g.landmarks[0]), (g.landmarks[2] * 4, g.landmarks[1])]:
        error = np.abs(moved - ref)  # the face is ~90 px wide; the landmarker varies a little with framing
        assert np.median(error) < 3 and error.max() < 10
    nose = g.landmarks[1, 1, :2]
    assert 60 < nose[0] < 200 and 60 < nose[1] < 220  # the nose tip lies inside the head crop


@pytest.mark.parametrize("name", ["Tom_Hanks_54745.png", "fa_aflw-test.jpg", "grace_hopper.jpg"])
def test_mirroring_negates_yaw_and_roll_keeps_pitch(landmarker, shared_dir, name):
    image = still(shared_dir, name)
    g = landmarker([image, image[:, ::-1].copy()])
    assert g.found.all()
    (yaw, pitch, roll), (myaw, mpitch, mroll) = g.pose
    assert abs(yaw + myaw) < 3 and abs(pitch - mpitch) < 3 and abs(roll + mroll) < 3


@pytest.mark.parametrize("degrees", [20, -20])
def test_in_plane_rotation_changes_roll_by_that_much(landmarker, shared_dir, degrees):
    image = still(shared_dir, "grace_hopper.jpg")
    g = landmarker([image, rotated(image, degrees)])
    assert g.found.all()
    assert abs((g.pose[1, 2] - g.pose[0, 2]) - degrees) < 5


def test_pose_signs_agree_with_the_landmarks(landmarker, shared_dir):
    """Yaw > 0: nose tip right of the face's middle in the image; pitch > 0: nose tip nearer the eyes (looks up)."""
    names = ["Tom_Hanks_54745.png", "fa_aflw-test.jpg", "astronaut.png", "pyfeat_single_face.jpg"]
    g = landmarker([still(shared_dir, n) for n in names])
    assert g.found.all()
    lm = g.landmarks
    nose_dx = (lm[:, 1, 0] - (lm[:, 234, 0] + lm[:, 454, 0]) / 2) / (lm[:, 454, 0] - lm[:, 234, 0])
    eyes_y, mouth_y = (lm[:, 33, 1] + lm[:, 263, 1]) / 2, (lm[:, 13, 1] + lm[:, 14, 1]) / 2
    nose_down = (lm[:, 1, 1] - eyes_y) / (mouth_y - eyes_y)
    yaw, pitch = g.pose[:, 0], g.pose[:, 1]
    turned = np.abs(yaw) > 5
    assert turned.sum() >= 2 and (np.sign(yaw[turned]) == np.sign(nose_dx[turned])).all()
    assert np.argmax(pitch) == np.argmin(nose_down) and np.argmin(pitch) == np.argmax(nose_down)
    assert pitch.max() > 5 and pitch.min() < -5


def test_pose_from_matrix_conventions():
    def rot(axis: str, deg: float) -> np.ndarray:
        c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
        m = {"x": [[1, 0, 0], [0, c, -s], [0, s, c]], "y": [[c, 0, s], [0, 1, 0], [-s, 0, c]],
             "z": [[c, -s, 0], [s, c, 0], [0, 0, 1]]}[axis]
        out = np.eye(4)
        out[:3, :3] = m
        return out

    np.testing.assert_allclose(pose_from_matrix(rot("y", 30) @ rot("x", -10) @ rot("z", 15)), [30, 10, 15], atol=1e-4)
    np.testing.assert_allclose(pose_from_matrix(2.0 * rot("z", -25)), [0, 0, -25], atol=1e-4)  # scale ignored


def test_resolve_model_offline_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_ANNOTATE_CACHE", str(tmp_path))
    monkeypatch.setenv("FER_ANNOTATE_OFFLINE", "1")
    with pytest.raises(GeometryError, match=str(tmp_path / "mediapipe" / "face_landmarker.task")):
        resolve_model()
    with pytest.raises(GeometryError, match="not found"):
        resolve_model(tmp_path / "missing.task")
    cached = tmp_path / "mediapipe" / "face_landmarker.task"
    cached.parent.mkdir()
    cached.write_bytes(b"x")
    assert resolve_model() == cached


def test_bad_model_file_is_one_clear_error(tmp_path):
    pytest.importorskip("mediapipe", reason="the geometry stage needs mediapipe (extra [geometry])")
    bad = tmp_path / "bad.task"
    bad.write_bytes(b"not a model")
    with pytest.raises(GeometryError, match="bad.task"):
        geometry.Landmarker(bad)
