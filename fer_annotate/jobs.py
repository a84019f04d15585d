"""Run many videos: expand files and folders, map outputs, skip finished ones, isolate failures."""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fer_annotate.output import is_complete, output_suffix
from fer_annotate.pipeline import Annotator, RunSummary
from fer_annotate.video import VideoError, find_videos


@dataclass
class Job:
    """One video and where its output goes."""

    video: Path
    output: Path


@dataclass
class JobReport:
    """How a batch of videos went."""

    done: list[RunSummary] = field(default_factory=list)
    skipped: list[Job] = field(default_factory=list)
    failed: list[tuple[Job, str]] = field(default_factory=list)

    def add(self, outcome: "JobOutcome") -> None:
        """Record one job's outcome."""
        if outcome.status == "done":
            self.done.append(outcome.summary)
        elif outcome.status == "skipped":
            self.skipped.append(outcome.job)
        else:
            self.failed.append((outcome.job, outcome.message))


class JobError(Exception):
    """Inputs and output that do not fit together (e.g. several videos but -o names a file)."""


def plan_jobs(inputs: list[Path], output: Path, fmt: str) -> list[Job]:
    """Map input files and folders (searched recursively) to outputs.

    One video file and an output with a suffix (or ABAW format): the output is that file (folder for ABAW).
    Otherwise the output is a folder: a folder input's videos mirror their paths relative to it; a file
    input lands at the top. A missing input is kept, so that it is reported as a failed video.
    """
    suffix = output_suffix(fmt)
    single = len(inputs) == 1 and not inputs[0].is_dir()
    if single and (output.suffix or fmt == "abaw") and not output.is_dir():
        return [Job(inputs[0], output)]
    if output.exists() and not output.is_dir():
        raise JobError(f"{output}: exists and is a file, but several videos need an output folder")
    jobs: list[Job] = []
    for item in inputs:
        if item.is_dir():
            for video in find_videos(item):
                rel = video.relative_to(item)
                jobs.append(Job(video, output / rel.parent / (rel.stem + suffix)))
        else:
            jobs.append(Job(item, output / (item.stem + suffix)))
    seen: dict[Path, Path] = {}
    for i, job in enumerate(jobs):
        if job.output in seen:
            renamed = job.output.with_name(job.video.name + suffix)
            if renamed in seen:
                raise JobError(f"{job.video} and {seen[job.output]} would write the same output {job.output}")
            jobs[i] = Job(job.video, renamed)
        seen[jobs[i].output] = job.video
    return jobs


def _one_line(video: Path, exc: Exception) -> str:
    """A failure other than a bad video (out of memory, a file system error), as one line."""
    text = str(exc).strip()
    return f"{video}: {type(exc).__name__}: {text.splitlines()[0] if text else 'no message'}"


@dataclass
class JobOutcome:
    """What became of one job: "done" (with its summary), "skipped" or "failed"; `message` is one line."""

    job: Job
    status: str
    message: str
    summary: RunSummary | None = None

    @property
    def line(self) -> str:
        """The console line of this outcome (failures start with "failed: ")."""
        return f"failed: {self.message}" if self.status == "failed" else self.message


def run_job(
    annotator: Annotator,
    job: Job,
    overwrite: bool = False,
    on_start: Callable[[Job], None] | None = None,
    on_frames: Callable[[int, int], None] | None = None,
    arguments: dict | None = None,
) -> JobOutcome:
    """Annotate one job unless its complete output exists; any failure becomes a one-line outcome."""
    if not overwrite and is_complete(job.output):
        return JobOutcome(job, "skipped", "skipped (complete output exists; --overwrite to redo)")
    if on_start is not None:
        on_start(job)
    try:
        summary = annotator.run(job.video, job.output, on_frames=on_frames, arguments=arguments)
    except Exception as exc:  # one video's failure, whatever it is, must not stop the others
        message = str(exc) if isinstance(exc, VideoError) else _one_line(job.video, exc)
        return JobOutcome(job, "failed", message)
    fps = summary.frames_sampled / max(summary.seconds, 1e-9)
    message = f"{summary.rows} rows, {summary.face_ids} face id(s), {fps:.1f} frames/s -> {job.output}"
    return JobOutcome(job, "done", message, summary)


def run_jobs(
    annotator: Annotator,
    jobs: list[Job],
    overwrite: bool = False,
    on_start: Callable[[Job], None] | None = None,
    on_frames: Callable[[int, int], None] | None = None,
    on_end: Callable[[Job, str], None] | None = None,
    arguments: dict | None = None,
) -> JobReport:
    """Annotate each job in turn; a bad video is recorded and skipped, the rest finish."""
    report = JobReport()
    for job in jobs:
        outcome = run_job(annotator, job, overwrite, on_start, on_frames, arguments)
        report.add(outcome)
        if on_end is not None:
            on_end(job, outcome.line)
    return report
