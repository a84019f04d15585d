"""Writers: column layout, empty cells where no face, atomic commit, nothing left on abort, ABAW files."""

import json
import os
import stat

import pandas as pd
import pytest

from fer_annotate.outputs.output import (
    TableSchema,
    TableWriter,
    au_column,
    is_complete,
    source_record,
    stale_temps,
    temp_name,
    write_sidecar,
)

SCHEMA = TableSchema(au_names=["AU1", "AU12"], expr_names=["neutral", "happiness"], has_va=True)


def rows() -> list[dict]:
    base = {"video": "v"}
    return [
        {**base, "frame": 0, "time_s": 0.0, "status": "no_face"},
        {**base, "frame": 1, "time_s": 0.04, "face_id": 0, "status": "ok", "score": 0.9, "x1": 1, "y1": 2, "x2": 3,
         "y2": 4, "AU01_prob": 0.7, "AU01": 1, "AU12_prob": 0.1, "AU12": 0, "au_std": 0.01, "expression": "happiness",
         "expr_neutral": 0.2, "expr_happiness": 0.8, "expr_std": 0.02, "valence": 0.5, "arousal": -0.25,
         "valence_std": 0.1, "arousal_std": 0.05},
    ]


def test_columns_follow_the_bundle():
    assert au_column("AU1") == "AU01" and au_column("AU25") == "AU25"
    cols = SCHEMA.columns
    assert cols[:11] == ["video", "frame", "time_s", "face_id", "status", "score", "x1", "y1", "x2", "y2", "person_id"]
    assert cols[11:15] == ["AU01_prob", "AU01", "AU12_prob", "AU12"]
    assert "expression" in cols and "expr_happiness" in cols and cols[-4:] == [
        "valence", "arousal", "valence_std", "arousal_std"]
    assert TableSchema(expr_names=["neutral"]).columns[-3:] == ["expression", "expr_neutral", "expr_std"]


def test_csv_is_atomic_with_empty_cells(tmp_path):
    out = tmp_path / "a.csv"
    w = TableWriter(out, SCHEMA, "csv", "v", n_frames=2)
    w.write(rows())
    assert not out.exists()
    assert len(list(tmp_path.iterdir())) == 1  # only the hidden temporary file
    w.commit()
    text = out.read_text().splitlines()
    assert text[1].startswith("v,0,0,,no_face,,,,,") and set(text[1].split(",")[3:]) <= {"", "no_face"}
    df = pd.read_csv(out)
    assert df.loc[1, "face_id"] == 0 and df.loc[1, "AU01"] == 1 and ",0,ok," in text[2]
    assert list(tmp_path.iterdir()) == [out]


def test_abort_leaves_nothing(tmp_path):
    out = tmp_path / "a.csv"
    w = TableWriter(out, SCHEMA, "csv", "v", n_frames=2)
    w.write(rows())
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_parquet_roundtrip(tmp_path):
    pytest.importorskip("pyarrow", reason="parquet needs pyarrow (extra 'parquet')")
    out = tmp_path / "a.parquet"
    w = TableWriter(out, SCHEMA, "parquet", "v", n_frames=2)
    w.write(rows())
    w.commit()
    df = pd.read_parquet(out)
    assert list(df.columns) == SCHEMA.columns and pd.isna(df.loc[0, "face_id"]) and df.loc[1, "valence"] == 0.5


def test_abaw_files(tmp_path):
    out = tmp_path / "abaw"
    w = TableWriter(out, SCHEMA, "abaw", "v", n_frames=3)
    w.write(rows())
    w.commit()
    assert (out / "AU_Set" / "v.txt").read_text().splitlines() == ["AU1,AU12", "-1,-1", "1,0", "-1,-1"]
    assert (out / "EXPR_Set" / "v.txt").read_text().splitlines()[1:] == ["-1", "1", "-1"]
    assert (out / "VA_Set" / "v.txt").read_text().splitlines() == ["valence,arousal", "-5,-5", "0.5,-0.25", "-5,-5"]


def test_sidecar_marks_completion_for_this_video_only(tmp_path):
    """Complete means: the sidecar says so and records this very video (size, mtime, head hash)."""
    video = tmp_path / "v.mp4"
    video.write_bytes(b"video bytes" * 1000)
    out = tmp_path / "a.csv"
    out.write_text("x\n")
    assert not is_complete(out, video)
    write_sidecar(out, {"complete": True})
    assert not is_complete(out, video), "a sidecar without the source counts as complete"
    write_sidecar(out, {"complete": True, "source": source_record(video)})
    assert is_complete(out, video) and json.loads((tmp_path / "a.csv.json").read_text())["complete"]
    other = tmp_path / "w.mp4"
    other.write_bytes(b"other bytes" * 1000)
    assert not is_complete(out, other)
    stamp = video.stat().st_mtime_ns
    video.write_bytes(b"VIDEO bytes" * 1000)  # same size, new content
    os.utime(video, ns=(stamp, stamp))
    assert not is_complete(out, video), "a changed video was taken for the one annotated"


def test_outputs_follow_the_umask(tmp_path):
    """Tables and sidecars get the umask's permissions (0644 under 022), not mkstemp's 0600."""
    old = os.umask(0o022)
    try:
        out = tmp_path / "t.csv"
        w = TableWriter(out, TableSchema(), "csv", "v", 1)
        w.write([{"video": "v", "frame": 0, "time_s": 0.0, "status": "no_face"}])
        w.commit()
        write_sidecar(out, {"complete": True})
        abaw = TableWriter(tmp_path / "a.abaw", TableSchema(expr_names=["neutral"]), "abaw", "v", 1)
        abaw.commit()
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "t.csv.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "a.abaw").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "a.abaw" / "EXPR_Set" / "v.txt").stat().st_mode) == 0o644


def test_stale_temporary_files_are_found_by_owner(tmp_path):
    """Leftovers of a killed run for one output are found; another output's files are not."""
    out = tmp_path / "clip.mp4.csv"
    mine = [temp_name(out), temp_name(tmp_path / "clip.mp4.csv.json")]
    theirs = [temp_name(tmp_path / "clip.mp4.csv.x.csv"), tmp_path / ".clip.mp4.csv.notes"]
    for path in mine + theirs:
        path.write_text("partial")
    assert stale_temps(out) == sorted(mine)
