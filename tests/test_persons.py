"""person_id: tracks joined by appearance (constructed embeddings), the table's column filled after the
rows were written, and the CLI on a synthetic re-entry (with the dlib model, and falling back without)."""

import json

import numpy as np
import pandas as pd
import pytest
import synth
from cli_run import invoke, read_table, sidecar

from fer_annotate.faces import reid
from fer_annotate.faces.reid import PersonConfig, PersonLinker
from fer_annotate.outputs.output import TableSchema, TableWriter


class FakeEmbedder:
    """Embeds a box by its first coordinate's hundreds: boxes at x 0-99 are one person, 100-199 another."""

    def __call__(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        v = np.zeros(8)
        v[int(box[0]) // 100] = 1.0
        return v

    def describe(self) -> dict:
        return {"fake": True}


def link(detections: list[tuple[int, int, float]], **config) -> dict[int, int]:
    """(face_id, frame, x) detections at 25 fps -> persons."""
    linker = PersonLinker(PersonConfig(**config), FakeEmbedder())
    for face_id, frame, x in detections:
        linker.observe(face_id, frame, frame / 25, np.zeros((4, 4, 3), np.uint8), np.array([x, 0, x + 50, 50]))
    return linker.persons()


def test_tracks_of_one_person_are_joined_in_order_of_first_appearance():
    detections = [(0, f, 10) for f in range(0, 20)] + [(1, f, 150) for f in range(5, 30)]
    detections += [(2, f, 20) for f in range(40, 60)] + [(3, f, 160) for f in range(70, 80)]
    detections.sort(key=lambda d: d[1])
    assert link(detections) == {0: 0, 1: 1, 2: 0, 3: 1}


def test_tracks_seen_at_the_same_time_are_never_one_person():
    detections = sorted([(0, f, 10) for f in range(20)] + [(1, f, 30) for f in range(10, 30)], key=lambda d: d[1])
    assert link(detections) == {0: 0, 1: 1}


def test_without_a_model_person_id_is_face_id():
    linker = PersonLinker(PersonConfig(), None, "not installed")
    for face_id, frame in [(0, 0), (1, 5), (2, 9)]:
        linker.observe(face_id, frame, frame / 25, None, np.array([0, 0, 10, 10]))
    persons = linker.persons()
    assert persons == {0: 0, 1: 1, 2: 2}
    assert linker.describe(persons) == {"method": "none", "person_id": "equals face_id", "reason": "not installed"}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_person_column_is_filled_before_commit(tmp_path, fmt):
    out = tmp_path / f"t.{fmt}"
    writer = TableWriter(out, TableSchema(), fmt, "v", 3)
    writer.write([{"video": "v, with comma", "frame": 0, "time_s": 0.0, "face_id": 3, "status": "ok", "score": 0.9,
                   "x1": 1.5, "y1": 2, "x2": 3, "y2": 4}])
    writer.write([{"video": "v, with comma", "frame": 1, "time_s": 0.04, "status": "no_face"},
                  {"video": "v, with comma", "frame": 2, "time_s": 0.08, "face_id": 5, "status": "ok", "score": 0.8,
                   "x1": 1, "y1": 2, "x2": 3, "y2": 4}])
    writer.set_person_ids({3: 0, 5: 0})
    assert not out.exists()
    writer.commit()
    table = pd.read_csv(out) if fmt == "csv" else pd.read_parquet(out)
    assert table["person_id"].tolist()[::2] == [0, 0] and pd.isna(table["person_id"][1])
    assert table["face_id"].tolist()[::2] == [3, 5] and table["video"][0] == "v, with comma"
    assert list(tmp_path.iterdir()) == [out]


def reentry_video(images, path, n: int = 110) -> synth.SynthVideo:
    """gt 0 stays; gt 1 walks out through the right edge at frames 20-35 and back at 75-90 (40 frames
    away: longer than --max-misses)."""
    bg = synth._background(images, (640, 360))
    stay = synth.Sprite(images, "astronaut.png", 0, 100)
    leave = synth.Sprite(images, "grace_hopper.jpg", 1, 100)

    def frame(i: int):
        x = synth._lerp(480, 760, (i - 20) / 15) if i < 60 else synth._lerp(760, 480, (i - 75) / 15)
        return synth.render(bg, [stay.layer(160, 180, 100), leave.layer(x, 180, 100)])

    return synth.write_video(path, n, 25.0, (640, 360), frame)


@pytest.mark.slow
def test_a_person_who_comes_back_keeps_the_person_id(shared_dir, torch_home, tmp_path):
    try:
        reid.FaceEmbedder()
    except reid.ReidUnavailable as exc:
        pytest.skip(f"needs the extra [persons]: {exc}")
    video = reentry_video(shared_dir / "fixtures" / "images", tmp_path / "reentry.mp4")
    out = tmp_path / "out.csv"
    result = invoke([video.path, "-o", out, "--weights", "none", "--detector", "blazeface", "--threads", 1])
    assert result.exit_code == 0, result.describe()
    ok = read_table(out)
    ok = ok[ok["status"] == "ok"]
    right = ok[(ok["x1"] > 320)]
    early, late = right[right["frame"] < 30], right[right["frame"] > 90]
    stay = ok[ok["x2"] < 320]
    assert set(early["face_id"]).isdisjoint(late["face_id"]), "the absence is longer than --max-misses"
    assert set(early["person_id"]) == set(late["person_id"]) and len(set(early["person_id"])) == 1
    assert set(stay["person_id"]).isdisjoint(early["person_id"])
    first = ok[ok["frame"] == ok["frame"].min()].sort_values("face_id")  # first appearance, ties by face_id
    assert first["person_id"].tolist() == [0, 1]
    persons = json.loads(sidecar(out).read_text())["persons"]
    assert persons["persons"] == 2 and persons["threshold"] == 0.5 and persons["tracks"] >= 3


@pytest.mark.slow
def test_without_the_model_person_id_falls_back_to_face_id(shared_dir, torch_home, tmp_path, monkeypatch):
    def missing(self):
        raise reid.ReidUnavailable("the face-recognition-models package is not installed")

    monkeypatch.setattr(reid.FaceEmbedder, "__init__", missing)
    video = reentry_video(shared_dir / "fixtures" / "images", tmp_path / "reentry.mp4", n=40)
    out = tmp_path / "out.csv"
    result = invoke([video.path, "-o", out, "--weights", "none", "--detector", "blazeface", "--threads", 1])
    assert result.exit_code == 0, result.describe()
    ok = read_table(out).dropna(subset=["face_id"])
    assert len(ok) and (ok["person_id"].astype(str) == ok["face_id"]).all()
    persons = json.loads(sidecar(out).read_text())["persons"]
    assert persons["method"] == "none" and "not installed" in persons["reason"]
