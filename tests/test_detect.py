"""Detectors on real stills (BlazeFace, dlib) and the loading paths of the downloadable ones."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from fer_annotate.faces.detect import DetectorConfig, DetectorError, FaceDetector


def still(shared_dir, name: str) -> np.ndarray:
    return np.asarray(Image.open(shared_dir / "fixtures" / "images" / name).convert("RGB"))


@pytest.mark.parametrize(
    "detector, name, expected",
    [
        ("blazeface", "grace_hopper.jpg", 1),
        ("blazeface", "astronaut.png", 1),
        ("blazeface", "fa_grass.jpg", 0),
        ("blazeface-back", "pyfeat_multi_face.jpg", 5),
        ("blazeface-back", "fa_aflw-test-grid3x3.jpg", 9),
    ],
)
def test_blazeface_counts_faces_in_stills(torch_home, shared_dir, detector, name, expected):
    det = FaceDetector(DetectorConfig(name=detector))
    found = det(still(shared_dir, name)[None])[0]
    assert len(found) == expected
    if expected:
        k = found.keypoints
        assert k.shape == (expected, 4, 2)
        # Right eye (image left) left of the left eye; eyes above the nose, nose above the mouth.
        assert np.all(k[:, 0, 0] < k[:, 1, 0])
        assert np.all(np.maximum(k[:, 0, 1], k[:, 1, 1]) < k[:, 3, 1])
        b = found.boxes
        inside = (k[..., 0] >= b[:, None, 0]) & (k[..., 0] <= b[:, None, 2])
        assert inside[:, :2].all()


def test_batches_and_frames_of_different_content(torch_home, shared_dir):
    face = still(shared_dir, "grace_hopper.jpg")
    frames = np.stack([face, np.zeros_like(face), face[:, ::-1].copy()])
    found = FaceDetector(DetectorConfig(name="blazeface"))(frames)
    assert [len(d) for d in found] == [1, 0, 1]
    w = face.shape[1]
    mirrored = found[2].boxes[0]
    np.testing.assert_allclose([w - mirrored[2], w - mirrored[0]], found[0].boxes[0, [0, 2]], atol=6)


def test_min_face_filter(torch_home, shared_dir):
    found = FaceDetector(DetectorConfig(name="blazeface", min_face=400))(still(shared_dir, "grace_hopper.jpg")[None])
    assert len(found[0]) == 0


def test_dlib_finds_a_face(shared_dir):
    pytest.importorskip("dlib", reason="dlib-bin not installed")
    found = FaceDetector(DetectorConfig(name="dlib"))(still(shared_dir, "grace_hopper.jpg")[None])[0]
    assert len(found) == 1 and found.keypoints is None and 0.5 < found.scores[0] < 1


def _random_weights(folder, name: str, net: torch.nn.Module) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), folder / name)


@pytest.mark.parametrize("name", ["sfd", "retinaface"])
def test_downloadable_detectors_run_from_the_cache(tmp_path, monkeypatch, name):
    """With (random) weights in $TORCH_HOME/hub/checkpoints, the detector loads offline and runs batched."""
    checkpoints = tmp_path / "hub" / "checkpoints"
    if name == "sfd":
        from face_alignment.detection.sfd.net_s3fd import s3fd

        _random_weights(checkpoints, "s3fd-619a316812.pth", s3fd())
    else:
        from face_alignment.detection.retinaface.net_retinaface import RetinaFace, cfg_mnet

        _random_weights(checkpoints, "retinaface_mobilenet0.25.pth", RetinaFace(cfg=cfg_mnet))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    det = FaceDetector(DetectorConfig(name=name, score_threshold=0.0, min_face=0))
    frames = np.random.default_rng(0).integers(0, 255, (2, 90, 160, 3), dtype=np.uint8)
    found = det(frames)
    assert len(found) == 2
    for d in found:
        assert d.boxes.shape[1:] == (4,) and len(d.scores) == len(d.boxes)
        assert np.all(d.boxes[:, [0, 2]] <= 160) and np.all(d.boxes[:, [1, 3]] <= 90)
        if name == "retinaface":
            assert d.keypoints.shape == (len(d), 4, 2)


def test_missing_weights_offline_names_the_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("FER_ANNOTATE_OFFLINE", "1")
    with pytest.raises(DetectorError) as err:
        FaceDetector(DetectorConfig(name="sfd"))
    message = str(err.value)
    assert "s3fd-619a316812.pth" in message and str(tmp_path / "hub" / "checkpoints") in message
    assert os.linesep not in message


def test_unknown_detector():
    with pytest.raises(DetectorError, match="unknown detector"):
        FaceDetector(DetectorConfig(name="mtcnn"))
