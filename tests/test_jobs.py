"""Folder jobs: output mapping, collisions, skipping finished videos, failures isolated per video."""

from pathlib import Path

import pytest

from fer_annotate.jobs import JobError, plan_jobs, run_jobs
from fer_annotate.output import write_sidecar
from fer_annotate.pipeline import RunSummary
from fer_annotate.video import VideoError


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_single_file_to_file(tmp_path):
    video = touch(tmp_path / "a.mp4")
    assert [(j.video, j.output) for j in plan_jobs([video], tmp_path / "a.csv", "csv")] == [(video, tmp_path / "a.csv")]


def test_folder_mirrors_relative_paths_and_renames_collisions(tmp_path):
    root = tmp_path / "in"
    a, b, c = touch(root / "x" / "s1.mp4"), touch(root / "y" / "z" / "s2.MOV"), touch(root / "x" / "s1.mov")
    touch(root / "notes.txt")
    jobs = plan_jobs([root], tmp_path / "out", "parquet")
    mapping = {j.video: j.output for j in jobs}
    assert mapping[b] == tmp_path / "out" / "y" / "z" / "s2.parquet"
    out = tmp_path / "out" / "x"
    names = {mapping[a].name, mapping[c].name}
    assert names in ({"s1.parquet", "s1.mov.parquet"}, {"s1.parquet", "s1.mp4.parquet"})
    assert mapping[a].parent == mapping[c].parent == out
    assert len(jobs) == 3


def test_several_videos_need_a_folder(tmp_path):
    a, b = touch(tmp_path / "a.mp4"), touch(tmp_path / "b.mp4")
    out = touch(tmp_path / "out.csv")
    with pytest.raises(JobError, match="output folder"):
        plan_jobs([a, b], out, "csv")


class FakeAnnotator:
    """Stands in for the pipeline: fails on chosen videos, writes a complete output for the others."""

    def __init__(self, fail: dict[str, Exception]):
        self.fail, self.ran = fail, []

    def run(self, video: Path, output: Path, on_frames=None, arguments=None) -> RunSummary:
        self.ran.append(video.name)
        if video.name in self.fail:
            raise self.fail[video.name]
        touch(output)
        write_sidecar(output, {"complete": True})
        return RunSummary(str(video), str(output), 10, 10, 5, 10, 1, 0.1, {})


def test_failures_are_isolated_and_finished_videos_skipped(tmp_path):
    root = tmp_path / "in"
    for name in ("a.mp4", "b.mp4", "c.mp4", "d.mp4"):
        touch(root / name)
    jobs = plan_jobs([root], tmp_path / "out", "csv")
    fake = FakeAnnotator({"b.mp4": VideoError("b.mp4: truncated file"), "c.mp4": RuntimeError("CUDA out of memory\nx")})
    report = run_jobs(fake, jobs)
    assert [s.video for s in report.done] == [str(root / "a.mp4"), str(root / "d.mp4")]
    messages = [m for _, m in report.failed]
    assert messages == ["b.mp4: truncated file", f"{root / 'c.mp4'}: RuntimeError: CUDA out of memory"]
    again = FakeAnnotator({})
    report = run_jobs(again, jobs)
    assert again.ran == ["b.mp4", "c.mp4"] and len(report.skipped) == 2
    report = run_jobs(again, jobs, overwrite=True)
    assert len(report.done) == 4
