"""Vote-distribution expression targets (FER+ layout), geometry regression targets in manifests, and the
augmentation's effect on geometric targets; small files written here."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fer_annotate.models.tta import mirror_permutation
from training.augment import AugmentSpec, augment, follow_geometry
from training.data import EXPR_NAMES, DataError, merge, read_manifest, read_source
from training.loop import sampling_plan

FERPLUS_HEADER = "path,ferplus_name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(path)


def _ferplus(tmp_path: Path, rows: list[str]) -> Path:
    images = tmp_path / "train"
    for row in rows:
        _image(images / row.split(",")[0])
    csv = tmp_path / "ferplus_train.csv"
    csv.write_text(FERPLUS_HEADER + "\n" + "\n".join(rows) + "\n")
    return csv


def test_ferplus_votes_become_distributions_and_majorities(tmp_path):
    csv = _ferplus(tmp_path, [
        "angry/a.jpg,fer1.png,2,0,0,1,7,0,0,0,0,0",  # anger 7 of 10
        "happy/b.jpg,fer2.png,1,8,0,0,0,0,0,1,0,0",  # contempt vote left out: 9 votes over the 7
        "x/c.jpg,fer3.png,1,0,0,0,0,0,0,0,6,3",  # majority unknown: dropped
        "x/d.jpg,fer4.png,0,0,0,0,0,0,0,9,1,0",  # majority contempt: dropped
        "x/e.jpg,fer5.png,0,0,0,0,0,0,0,0,0,10",  # not a face: dropped
        "fear/f.jpg,fer6.png,0,0,4,0,0,0,4,0,2,0",  # tie fear/surprise: first in paper order (fear)
    ])
    t = read_source("manifest", f"{csv}@{tmp_path / 'train'}")
    assert [Path(p).name for p in t.paths] == ["a.jpg", "b.jpg", "f.jpg"]
    assert [EXPR_NAMES[k] for k in t.expr] == ["anger", "happiness", "fear"]
    np.testing.assert_allclose(t.expr_soft[0], [0.2, 0.7, 0, 0, 0, 0.1, 0], atol=1e-6)
    np.testing.assert_allclose(t.expr_soft[1], [1 / 9, 0, 0, 0, 8 / 9, 0, 0], atol=1e-6)
    assert any("3 rows dropped" in n for n in t.notes)
    np.testing.assert_allclose(t.expr_targets(votes=False)[0], np.eye(7)[1])


def test_votes_need_numbers(tmp_path):
    csv = _ferplus(tmp_path, ["angry/a.jpg,fer1.png,2,0,zero,1,7,0,0,0,0,0"])
    with pytest.raises(DataError, match=r"ferplus_train.csv:2: votes .* must all be numbers"):
        read_manifest(csv, tmp_path / "train")


def test_geometry_columns_and_merge_with_hard_labels(tmp_path):
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        _image(tmp_path / name)
    geo = tmp_path / "geo.csv"
    geo.write_text("path,neutral,anger,disgust,fear,happiness,sadness,surprise,bs_jawOpen,bs_eyeBlinkLeft,"
                   "bs_eyeBlinkRight,pose_yaw,pose_pitch,pose_roll\n"
                   "a.jpg,0.5,0.5,0,0,0,0,0,0.25,0.5,0.1,10,-5,3\n"
                   "b.jpg,0,0,0,0,1,0,0,,,,,,\n")
    hard = tmp_path / "hard.csv"
    hard.write_text("path,expression\nc.jpg,sadness\n")
    t = merge([read_manifest(geo), read_manifest(hard)])
    assert t.bs_names == ["jawOpen", "eyeBlinkLeft", "eyeBlinkRight"]
    assert t.has("BS").tolist() == [True, False, False] and t.has("POSE").tolist() == [True, False, False]
    np.testing.assert_allclose(t.pose[0], [10, -5, 3])
    np.testing.assert_allclose(t.expr_targets()[2], np.eye(7)[5])  # hard label as one-hot beside the votes
    assert t.tasks() == ["EXPR", "BS", "POSE"]
    plan = sampling_plan(t, t.tasks(), 20)
    assert [(task, rows.tolist(), size) for task, rows, size in plan] == [("EXPR", [0, 1, 2], 20)]
    video_faces = merge([t, read_manifest(geo).subset([0])])  # a row with geometry labels only
    video_faces.expr[3], video_faces.expr_soft[3] = -1, np.nan
    plan = sampling_plan(video_faces, video_faces.tasks(), 20)
    assert [(task, rows.tolist(), size) for task, rows, size in plan] == [("EXPR", [0, 1, 2], 20), ("BS", [3], 7)]
    bad = tmp_path / "bad.csv"
    bad.write_text("path,bs_jawOpen\na.jpg,1.5\n")
    with pytest.raises(DataError, match=r"bad.csv:2: blendshape scores must lie in \[0, 1\]"):
        read_manifest(bad)


def test_mirrored_faces_swap_sides_and_negate_yaw_and_roll():
    names = ["neutral", "eyeBlinkLeft", "eyeBlinkRight", "jawOpen", "mouthSmileLeft", "mouthSmileRight"]
    mirror = mirror_permutation(names)
    assert mirror == [0, 2, 1, 3, 5, 4]
    bs = torch.tensor([[0.0, 0.9, 0.1, 0.5, 0.3, 0.7]] * 2)
    flip = torch.tensor([True, False])
    out = follow_geometry("BS", bs, flip, torch.zeros(2), mirror)
    np.testing.assert_allclose(out[0], [0.0, 0.1, 0.9, 0.5, 0.7, 0.3])
    np.testing.assert_allclose(out[1], bs[1])
    pose = torch.tensor([[20.0, -5.0, 3.0]] * 2)
    out = follow_geometry("POSE", pose, flip, torch.tensor([10.0, 10.0]), mirror)
    np.testing.assert_allclose(out, [[-20.0, -5.0, -13.0], [20.0, -5.0, 13.0]])


def test_augment_reports_what_it_drew():
    """A drawn flip mirrors the image and a drawn rotation turns it counter-clockwise as seen."""
    image = torch.zeros(1, 1, 33, 33, dtype=torch.uint8)
    image[0, 0, 16, 24:] = 255  # a bright ray from the centre to the right edge
    images = image.repeat(16, 1, 1, 1)
    out, drawn = augment(images, AugmentSpec(zoom_min=1, zoom_max=1, rotate=60), torch.Generator().manual_seed(0))
    for k in range(16):
        ys, xs = np.nonzero(out[k, 0].numpy() > 60)
        angle = np.degrees(np.arctan2(-(ys - 16).mean(), (xs - 16).mean()))  # as seen: y up
        expected = float(drawn.rotation[k]) if not drawn.flip[k] else 180.0 - float(drawn.rotation[k])
        assert abs((angle - expected + 180) % 360 - 180) < 6, (k, angle, expected)
