"""A video's table does not depend on what the process annotated before it (alone, in a folder, in a worker)."""

import itertools
import time
from pathlib import Path

from fer_annotate.api import Annotator


def test_same_video_same_bytes_whatever_ran_before(shared_dir: Path, torch_home: Path, tmp_path: Path,
                                                   monkeypatch) -> None:
    """One process annotates a clip, another clip, then the first again; a fresh process-like annotator
    annotates the first alone. The clock races ahead an hour per reading, so any change of execution form
    triggered by time spent (the members' old swap to fused versions after 10 s) happens in this test."""
    videos = shared_dir / "fixtures" / "videos"
    clip, other = videos / "pyfeat_single_face.mp4", videos / "pyfeat_WolfgangLanger_Pexels.mp4"
    clock = itertools.count(0.0, 3600.0)
    monkeypatch.setattr(time, "perf_counter", lambda: next(clock))
    busy = Annotator(end=1.0)
    busy.annotate(clip, tmp_path / "first.csv")
    busy.annotate(other, tmp_path / "other.csv")
    busy.annotate(clip, tmp_path / "again.csv")
    Annotator(end=1.0).annotate(clip, tmp_path / "alone.csv")
    first = (tmp_path / "first.csv").read_bytes()
    assert first.count(b"\n") > 20
    assert (tmp_path / "again.csv").read_bytes() == first
    assert (tmp_path / "alone.csv").read_bytes() == first


def test_same_bytes_with_parallel_stages_and_members(shared_dir: Path, torch_home: Path, tmp_path: Path) -> None:
    """A budget of one thread runs every stage and member in turn on one thread; a budget of two runs
    detection on its own thread and the members side by side. The tables are the same bytes, on a clip with
    a shot cut and a face that leaves (tracks end and start while batches overlap)."""
    clip = shared_dir / "fixtures" / "videos" / "pyfeat_face_noface.mov"
    one, two = Annotator(threads=1), Annotator(threads=2)
    assert not one.engine.config.parallel_stages and one.model.ensemble.pool is None
    assert two.engine.config.parallel_stages and two.model.ensemble.pool is not None
    one.annotate(clip, tmp_path / "one.csv")
    two.annotate(clip, tmp_path / "two.csv")
    table = (tmp_path / "one.csv").read_bytes()
    assert table.count(b"\n") > 100 and b",ok," in table and b"no_face" in table
    assert (tmp_path / "two.csv").read_bytes() == table
