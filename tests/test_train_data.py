"""fer-train readers on small files written here: ABAW layout (both AU sets), CSV manifests, expression
folders, merging; malformed input gives an error naming the file and line, or a counted note."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.data import (
    AU_2020,
    AU_2021,
    DataError,
    load_images,
    merge,
    read_abaw,
    read_folders,
    read_manifest,
)


def _image(path: Path, value: int = 128, size: int = 12) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)


def _abaw(root: Path, au_header: list[str], frames: int = 4) -> Path:
    for k in range(1, frames + 1):
        _image(root / "cropped_aligned" / "vid1" / f"{k:05d}.jpg", 10 * k)
    ann = root / "annotations"
    au_dir = ann / "AU_Set" / "Training_Set"
    au_dir.mkdir(parents=True)
    rows = ["1," + ",".join("0" * (len(au_header) - 1)), ",".join(["-1"] * len(au_header)),
            ",".join(["1"] * len(au_header)), ",".join(["0"] * len(au_header)), ",".join(["1"] * len(au_header))]
    (au_dir / "vid1.txt").write_text(",".join(au_header) + "\n" + "\n".join(rows[:frames + 1]) + "\n")
    expr_dir = ann / "EXPR_Set" / "Training_Set"
    expr_dir.mkdir(parents=True)
    (expr_dir / "vid1.txt").write_text("Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise\n4\n5\n6\n0\n")
    va_dir = ann / "VA_Set" / "Training_Set"
    va_dir.mkdir(parents=True)
    (va_dir / "vid1.txt").write_text("valence,arousal\n0.5,0.25\n-5,-5\n-0.1,0.3\n1.0,-1.0\n")
    return root


def test_abaw_2020_set(tmp_path):
    root = _abaw(tmp_path, ["AU1", "AU2", "AU4", "AU6", "AU12", "AU15", "AU20", "AU25"])
    t = read_abaw(root, "train")
    assert t.au_names == AU_2020
    assert [Path(p).name for p in t.paths] == ["00001.jpg", "00002.jpg", "00003.jpg", "00004.jpg"]
    assert t.expr.tolist() == [4, 5, 6, 0]  # frame 2: EXPR only
    assert t.has("AU").tolist() == [True, False, True, True]  # frame 2 all -1
    assert t.has("VA").tolist() == [True, False, True, True]
    assert t.au[0].tolist() == [1, 0, 0, 0, 0, 0, 0, 0]
    np.testing.assert_allclose(t.va[3], [1.0, -1.0])
    assert t.frame.tolist() == [1, 2, 3, 4] and t.videos == ["vid1"]


def test_abaw_2021_set_and_missing_frames(tmp_path):
    root = _abaw(tmp_path, [a.replace("AU0", "AU") for a in AU_2021])
    (root / "cropped_aligned" / "vid1" / "00003.jpg").unlink()  # no face detected in frame 3
    t = read_abaw(root, "train")
    assert t.au_names == AU_2021
    assert len(t) == 3  # frame 3 skipped
    assert any("1 labelled frames skipped" in n for n in t.notes)


@pytest.mark.parametrize(
    "task,content,line,message",
    [
        ("AU_Set", "AU1,AU2\n1,0\n1\n", 3, "1 values, expected 2"),
        ("AU_Set", "AU1,AU2\n1,2\n", 2, "expected 0, 1 or -1"),
        ("AU_Set", "AU1,Smile\n1,0\n", 1, "not a list of AUs"),
        ("EXPR_Set", "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise\n9\n", 2, "expected -1 or 0..6"),
        ("EXPR_Set", "Happy,Sad\n1\n", 1, "expected Neutral,Anger"),
        ("VA_Set", "valence,arousal\n0.2,1.5\n", 2, "expected [-1, 1] or -5"),
        ("VA_Set", "valence,arousal\n0.2,abc\n", 2, "not numeric"),
    ],
)
def test_abaw_malformed(tmp_path, task, content, line, message):
    _image(tmp_path / "cropped_aligned" / "v" / "00001.jpg")
    folder = tmp_path / task / "Training_Set"
    folder.mkdir(parents=True)
    (folder / "v.txt").write_text(content)
    with pytest.raises(DataError, match=rf"v\.txt:{line}: .*{message}".replace("[", r"\[").replace("]", r"\]")):
        read_abaw(tmp_path, "train")


def test_abaw_mixed_au_headers_refused(tmp_path):
    root = _abaw(tmp_path, ["AU1", "AU2", "AU4", "AU6", "AU12", "AU15", "AU20", "AU25"])
    (root / "annotations" / "AU_Set" / "Training_Set" / "vid2.txt").write_text("AU1,AU2\n1,0\n")
    with pytest.raises(DataError, match="vid2.txt:1: AU header"):
        read_abaw(root, "train")


def test_abaw_missing_split(tmp_path):
    _abaw(tmp_path, ["AU1"])
    with pytest.raises(DataError, match="no ABAW annotation files"):
        read_abaw(tmp_path, "val")


def test_manifest_partial_labels(tmp_path):
    for name in ("a", "b", "c"):
        _image(tmp_path / "img" / f"{name}.png")
    (tmp_path / "m.csv").write_text(
        "path,AU01,AU12,expression,valence,arousal\n"
        "img/a.png,1,,happy,0.5,0.2\n"
        "img/b.png,,,3,,\n"
        "img/missing.png,1,1,,,\n"
        "img/c.png,0,1,contempt,,\n"
    )
    t = read_manifest(tmp_path / "m.csv")
    assert len(t) == 3 and t.au_names == ["AU01", "AU12"]
    assert t.expr.tolist() == [4, 3, -1]
    assert t.has("AU").tolist() == [True, False, True]
    assert np.isnan(t.au[0, 1]) and t.au[2].tolist() == [0, 1]
    assert t.has("VA").tolist() == [True, False, False]
    assert any("1 rows skipped, image file missing" in n for n in t.notes)
    assert any("outside the 7 classes" in n for n in t.notes)


def test_manifest_blendshape_labels_skip_spread_and_raw_columns(tmp_path):
    """An annotation table used as labels: bs_std and the unsmoothed bs_*_raw copies are not blendshapes."""
    _image(tmp_path / "img" / "a.png")
    (tmp_path / "m.csv").write_text(
        "path,bs_jawOpen,bs_eyeBlinkLeft,bs_std,bs_eyeBlinkLeft_raw\n"
        "img/a.png,0.25,0.5,0.01,0.75\n"
    )
    t = read_manifest(tmp_path / "m.csv")
    assert t.bs_names == ["jawOpen", "eyeBlinkLeft"]
    assert t.bs[0].tolist() == [0.25, 0.5]


@pytest.mark.parametrize(
    "body,line,message",
    [
        ("img/a.png,1\nimg/a.png\n", 3, "1 fields, the header has 2"),
        ("img/a.png,7\n", 2, "AU05 = '7'"),
    ],
)
def test_manifest_malformed_au(tmp_path, body, line, message):
    _image(tmp_path / "img" / "a.png")
    (tmp_path / "m.csv").write_text("path,AU5\n" + body)
    with pytest.raises(DataError, match=rf"m\.csv:{line}: {message}"):
        read_manifest(tmp_path / "m.csv")


def test_manifest_malformed_values(tmp_path):
    _image(tmp_path / "a.png")
    (tmp_path / "e.csv").write_text("image,expression\na.png,grumpy\n")
    with pytest.raises(DataError, match=r"e\.csv:2: unknown expression 'grumpy'"):
        read_manifest(tmp_path / "e.csv")
    (tmp_path / "v.csv").write_text("image,valence,arousal\na.png,0.1,0.2\na.png,2,0\n")
    with pytest.raises(DataError, match=r"v\.csv:3: valence/arousal .* outside"):
        read_manifest(tmp_path / "v.csv")
    (tmp_path / "n.csv").write_text("image,width\na.png,3\n")
    with pytest.raises(DataError, match=r"n\.csv:1: no label columns"):
        read_manifest(tmp_path / "n.csv")


def test_folders_map_names(tmp_path):
    for folder, n in (("angry", 2), ("Happy", 1), ("sad", 1), ("surprised", 1), ("contempt", 3)):
        for i in range(n):
            _image(tmp_path / folder / f"{i}.jpg")
    t = read_folders(tmp_path)
    assert sorted(t.expr.tolist()) == [1, 1, 4, 5, 6]
    assert any("contempt" in n and "3 images skipped" in n for n in t.notes)
    _image(tmp_path / "grumpy" / "0.jpg")
    with pytest.raises(DataError, match="grumpy: folder name is not an expression class"):
        read_folders(tmp_path)


def test_merge_aligns_au_by_name(tmp_path):
    for name in ("a", "b"):
        _image(tmp_path / f"{name}.png")
    (tmp_path / "one.csv").write_text("path,AU1,AU12\na.png,1,0\n")
    (tmp_path / "two.csv").write_text("path,AU12,AU4,expression\nb.png,1,1,fear\n")
    t = merge([read_manifest(tmp_path / "one.csv"), read_manifest(tmp_path / "two.csv")])
    assert t.au_names == ["AU01", "AU04", "AU12"]
    np.testing.assert_array_equal(t.au[0], [1, np.nan, 0])
    np.testing.assert_array_equal(t.au[1], [np.nan, 1, 1])
    assert t.expr.tolist() == [-1, 3] and t.tasks() == ["EXPR", "AU"]


def test_load_images_cached_and_unreadable(tmp_path):
    _image(tmp_path / "a.png", 200, size=20)
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    out = load_images([str(tmp_path / "a.png")], 8, "gray", tmp_path / "cache")
    assert out.shape == (1, 8, 8, 1) and int(out[0, 0, 0, 0]) == 200
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    again = load_images([str(tmp_path / "a.png")], 8, "gray", tmp_path / "cache")
    np.testing.assert_array_equal(out, again)
    with pytest.raises(DataError, match="bad.jpg: cannot read image"):
        load_images([str(tmp_path / "bad.jpg")], 8, "rgb")


def test_load_images_cache_sees_a_replaced_image(tmp_path):
    path = tmp_path / "a.png"
    _image(path, 200, size=20)
    first = load_images([str(path)], 8, "gray", tmp_path / "cache")
    _image(path, 50, size=20)  # another picture under the same name
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = load_images([str(path)], 8, "gray", tmp_path / "cache")
    assert int(first[0, 0, 0, 0]) == 200 and int(second[0, 0, 0, 0]) == 50
