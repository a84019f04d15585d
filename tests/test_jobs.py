"""Folder jobs: output mapping, collisions, skipping finished videos, failures isolated per video."""

from pathlib import Path

import pytest

from fer_annotate.media.video import VideoError
from fer_annotate.outputs.output import source_record, write_sidecar
from fer_annotate.run.jobs import JobError, output_format, plan_jobs, run_jobs
from fer_annotate.run.pipeline import RunSummary


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_single_file_to_file(tmp_path):
    video = touch(tmp_path / "a.mp4")
    assert [(j.video, j.output) for j in plan_jobs([video], tmp_path / "a.csv", "csv")] == [(video, tmp_path / "a.csv")]


def test_folder_mirrors_relative_paths_and_keeps_the_extension(tmp_path):
    root = tmp_path / "in"
    a, b, c = touch(root / "x" / "s1.mp4"), touch(root / "y" / "z" / "s2.MOV"), touch(root / "x" / "s1.mov")
    touch(root / "notes.txt")
    jobs = plan_jobs([root], tmp_path / "out", "parquet")
    mapping = {j.video: j.output for j in jobs}
    out = tmp_path / "out"
    assert mapping == {a: out / "x" / "s1.mp4.parquet", b: out / "y" / "z" / "s2.MOV.parquet",
                       c: out / "x" / "s1.mov.parquet"}


def test_output_names_do_not_depend_on_the_other_inputs(tmp_path):
    """The same input maps to the same output whatever else is on the command line, in any order."""
    root = tmp_path / "in"
    clip_mp4, clip_avi, other = touch(root / "clip.mp4"), touch(root / "clip.avi"), touch(tmp_path / "o.mkv")
    out = tmp_path / "out"
    alone = plan_jobs([clip_mp4, other], out, "csv")
    both = plan_jobs([other, clip_avi, clip_mp4], out, "csv")
    folder = plan_jobs([root], out, "csv")
    assert {j.video: j.output for j in alone}[clip_mp4] == {j.video: j.output for j in both}[clip_mp4] \
        == {j.video: j.output for j in folder}[clip_mp4] == out / "clip.mp4.csv"
    assert {j.video: j.output for j in both}[clip_avi] == out / "clip.avi.csv"


def test_two_inputs_never_share_an_output(tmp_path):
    """d1/a.mp4 and d2/a.mp4 on one command line: an error naming both, in either order (never renamed)."""
    a1, a2 = touch(tmp_path / "d1" / "a.mp4"), touch(tmp_path / "d2" / "a.mp4")
    for order in ([a1, a2], [a2, a1]):
        with pytest.raises(JobError, match="would both write") as info:
            plan_jobs(order, tmp_path / "out", "csv")
        assert str(a1) in str(info.value) and str(a2) in str(info.value)


@pytest.mark.parametrize(("out", "fmt", "expected"), [
    ("x.parquet", None, "parquet"), ("x.csv", None, "csv"), ("x.CSV", None, "csv"), ("x.csv", "csv", "csv"),
    ("folder", None, "csv"), ("folder", "parquet", "parquet"), ("ab", "abaw", "abaw"),
])
def test_the_suffix_of_a_file_output_decides_the_format(tmp_path, out, fmt, expected):
    video = touch(tmp_path / "a.mp4")
    assert output_format([video], tmp_path / out, fmt) == expected


@pytest.mark.parametrize(("out", "fmt", "message"), [
    ("x.parquet", "csv", "is a parquet file name but --format is csv"),
    ("y.csv", "parquet", "is a csv file name but --format is parquet"),
    ("y.txt", None, "must end in .csv or .parquet"),
    ("z.csv", "abaw", "--format abaw writes a folder"),
])
def test_a_contradicting_suffix_is_an_error(tmp_path, out, fmt, message):
    video = touch(tmp_path / "a.mp4")
    with pytest.raises(JobError, match=message):
        output_format([video], tmp_path / out, fmt)


def test_several_videos_and_a_file_name_is_an_error(tmp_path):
    a, b = touch(tmp_path / "a.mp4"), touch(tmp_path / "b.mp4")
    with pytest.raises(JobError, match="need an output folder"):
        plan_jobs([a, b], tmp_path / "two.csv", "csv")
    assert not (tmp_path / "two.csv").exists()


class FakeAnnotator:
    """Stands in for the pipeline: fails on chosen videos, writes a complete output for the others."""

    def __init__(self, fail: dict[str, Exception]):
        self.fail, self.ran = fail, []

    def run(self, video: Path, output: Path, on_frames=None, arguments=None) -> RunSummary:
        self.ran.append(video.name)
        if video.name in self.fail:
            raise self.fail[video.name]
        touch(output)
        write_sidecar(output, {"complete": True, "tool": "fer-annotate", "source": source_record(video),
                               "settings": self.settings()})
        return RunSummary(str(video), str(output), 10, 10, 5, 10, 1, 0.1, {})

    def settings(self) -> dict:
        return {"every": 1}


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
