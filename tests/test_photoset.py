"""A folder of photos into one table: one row per face per image with a `path` column, resumable after a
run stopped midway, never a partial table that looks complete; the CLI as a user runs it."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from cli_run import invoke, sidecar

from fer_annotate.api import build_config, worker_spec
from fer_annotate.run import photoset
from fer_annotate.run.photoset import PhotoSet, PhotoSetError, parts_dir
from fer_annotate.run.workers import build_annotator

PHOTOS = {"astronaut.png": 1, "grace_hopper.jpg": 1, "fa_grass.jpg": 0, "sub/pyfeat_multi_face.jpg": 5,
          "sub/deeper/blazeface_3faces.png": 3}


@pytest.fixture(scope="module")
def folder(shared_dir: Path, torch_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos") / "set"
    for name in PHOTOS:
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_dir / "fixtures" / "images" / Path(name).name, target)
    return root


@pytest.fixture(scope="module")
def annotator(torch_home: Path):
    return build_annotator(worker_spec(build_config(detector="blazeface-back"), "ferplus-distilled"), "cpu")


def test_cli_one_table_for_the_folder(folder: Path, tmp_path: Path):
    out = tmp_path / "faces.csv"
    result = invoke([folder, "-o", out, "--detector", "blazeface-back"])
    assert result.exit_code == 0, result.describe()
    df = pd.read_csv(out)
    assert list(df.columns[:3]) == ["path", "video", "frame"]
    assert not [c for c in df.columns if c.endswith("_raw")], "one frame per photo: nothing smoothed"
    assert set(df["path"]) == set(PHOTOS), "one or more rows per image, paths relative to the folder"
    faces = df[df["status"] == "ok"].groupby("path").size().reindex(list(PHOTOS), fill_value=0)
    assert (faces >= pd.Series(PHOTOS) - 1).all() and faces["fa_grass.jpg"] == 0
    meta = json.loads(sidecar(out).read_text())
    assert meta["complete"] and meta["images"] == len(PHOTOS) and meta["rows"] == len(df)
    assert not parts_dir(out).exists(), "parts removed once the table is complete"
    assert not list(folder.rglob("*.csv")), "no output per photo"
    again = invoke([folder, "-o", out, "--detector", "blazeface-back"])
    assert again.exit_code == 0 and "skipped" in again.output
    summary = invoke(["summary", out, "--json"])
    assert summary.exit_code == 0, summary.describe()
    per_photo = {s["video"]: len(s["faces"]) for s in json.loads(summary.output)}  # face ids count per photo
    assert per_photo == faces.to_dict(), per_photo


def test_stopped_run_resumes_and_matches_a_whole_run(folder: Path, annotator, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(photoset, "PART_IMAGES", 2)
    whole = tmp_path / "whole.csv"
    PhotoSet(annotator, folder, whole, "csv").run()

    out = tmp_path / "faces.csv"

    def stop(done: int, total: int) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        PhotoSet(annotator, folder, out, "csv").run(on_images=stop)
    assert not out.exists() and not sidecar(out).exists(), "a stopped run leaves nothing that looks complete"
    assert len(list(parts_dir(out).glob("part-*.json"))) == 1, "the finished part of two images is kept"
    report = PhotoSet(annotator, folder, out, "csv").run()
    assert report.resumed == 2 and report.annotated == len(PHOTOS) - 2
    pd.testing.assert_frame_equal(pd.read_csv(out), pd.read_csv(whole))


def test_parquet_failures_and_videos(folder: Path, annotator, tmp_path: Path, shared_dir: Path):
    mixed = tmp_path / "mixed"
    shutil.copytree(folder, mixed)
    (mixed / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "faces.parquet"
    report = PhotoSet(annotator, mixed, out, "parquet").run()
    assert [path for path, _ in report.failed] == ["broken.jpg"]
    df = pd.read_parquet(out)
    assert set(df["path"]) == set(PHOTOS) and json.loads(sidecar(out).read_text())["failed"][0]["path"] == "broken.jpg"
    shutil.copy(shared_dir / "fixtures" / "videos" / "pyfeat_single_face.mp4", mixed / "clip.mp4")
    with pytest.raises(PhotoSetError, match="is a video"):
        PhotoSet(annotator, mixed, tmp_path / "again.csv", "csv").run()


def test_cli_refuses_videos_and_spreading(shared_dir: Path, tmp_path: Path):
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(shared_dir / "fixtures" / "videos" / "pyfeat_single_face.mp4", videos)
    result = invoke([videos, "-o", tmp_path / "faces.csv"])
    assert result.exit_code == 2 and "is a video" in result.output, result.describe()
    result = invoke([videos, "-o", tmp_path / "faces.csv", "--workers", "2"])
    assert result.exit_code == 2 and "one process" in result.output, result.describe()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["videos"]


def test_existing_outputs_kept_redone_or_refused(folder: Path, annotator, tmp_path: Path, torch_home: Path):
    theirs = tmp_path / "theirs.csv"
    theirs.write_text("keep me\n")
    with pytest.raises(PhotoSetError, match="not ours"):
        PhotoSet(annotator, folder, theirs, "csv").run()
    assert theirs.read_text() == "keep me\n"

    photos = tmp_path / "photos"
    shutil.copytree(folder, photos)
    out = tmp_path / "faces.csv"
    PhotoSet(annotator, photos, out, "csv").run()
    assert PhotoSet(annotator, photos, out, "csv").run().skipped
    other = build_annotator(worker_spec(build_config(detector="blazeface-back", score_threshold=0.7),
                                        "ferplus-distilled"), "cpu")
    with pytest.raises(PhotoSetError, match="other settings: score-threshold"):
        PhotoSet(other, photos, out, "csv").run()
    (photos / "fa_grass.jpg").unlink()  # the set changed: the table is redone for the images there now
    report = PhotoSet(annotator, photos, out, "csv").run()
    assert not report.skipped and report.images == len(PHOTOS) - 1
    assert "fa_grass.jpg" not in set(pd.read_csv(out)["path"])


def test_parts_of_changed_images_are_not_reused(folder: Path, annotator, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(photoset, "PART_IMAGES", 2)
    photos = tmp_path / "photos"
    shutil.copytree(folder, photos)
    out = tmp_path / "faces.csv"

    def stop(done: int, total: int) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        PhotoSet(annotator, photos, out, "csv").run(on_images=stop)
    first = sorted(PHOTOS)[0]  # in the finished part
    shutil.copy(photos / "fa_grass.jpg", photos / first)  # replaced while the run was stopped
    report = PhotoSet(annotator, photos, out, "csv").run()
    assert report.resumed == 0 and report.annotated == len(PHOTOS)
    assert (pd.read_csv(out).query("path == @first")["status"] == "no_face").all()


def test_api_returns_the_table(folder: Path, tmp_path: Path, torch_home: Path):
    from fer_annotate.api import annotate

    df = annotate(folder, tmp_path / "faces.parquet", detector="blazeface-back")
    assert set(df["path"]) == set(PHOTOS) and df.attrs["kind"] == "photo set" and df.attrs["failed"] == []
    with pytest.raises(ValueError, match=r"\.csv or \.parquet"):
        annotate(folder, tmp_path / "faces.txt")
    with pytest.raises(TypeError, match="workers"):
        annotate(folder, tmp_path / "faces.csv", workers=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faces.parquet", "faces.parquet.json"]
