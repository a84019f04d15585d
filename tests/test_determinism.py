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
