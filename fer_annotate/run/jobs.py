"""Run many videos: expand files and folders, map outputs, skip finished ones, isolate failures."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fer_annotate.media.video import VideoError, find_videos
from fer_annotate.outputs.names import OutputNameError, check_names
from fer_annotate.outputs.output import WriteError, output_suffix
from fer_annotate.run.lock import Locked, OutputLock
from fer_annotate.run.own_outputs import drop_own_outputs
from fer_annotate.run.pipeline import Annotator, RunSummary
from fer_annotate.run.resume import examine


@dataclass
class Job:
    """One video and where its output goes."""

    video: Path
    output: Path


@dataclass
class JobResult:
    """How one job went: `done` (with its summary), `skipped` or `failed`, and a one-line message."""

    job: Job
    status: str
    message: str
    summary: RunSummary | None = None

    @property
    def line(self) -> str:
        """The console line of this result (failures start with "failed: ")."""
        return f"failed: {self.message}" if self.status == "failed" else self.message


@dataclass
class JobReport:
    """How a batch of videos went."""

    done: list[RunSummary] = field(default_factory=list)
    skipped: list[Job] = field(default_factory=list)
    failed: list[tuple[Job, str]] = field(default_factory=list)

    def add(self, result: JobResult) -> None:
        """Record one job's result."""
        if result.status == "done":
            self.done.append(result.summary)
        elif result.status == "skipped":
            self.skipped.append(result.job)
        else:
            self.failed.append((result.job, result.message))


class JobError(Exception):
    """Inputs and output that do not fit together (e.g. several videos but -o names a file)."""


FILE_SUFFIXES = {".csv": "csv", ".parquet": "parquet"}


def output_format(inputs: list[Path], output: Path, fmt: str | None) -> str:
    """The table format: --format if given, else the suffix of a file output (.csv, .parquet), else CSV.

    A file output whose suffix contradicts --format, or with a suffix that names no format, is an error.
    """
    implied = FILE_SUFFIXES.get(output.suffix.lower())
    if fmt == "abaw" and implied is not None and not output.is_dir():
        raise JobError(f"-o {output} is a {implied} file name but --format abaw writes a folder")
    if not _file_output(inputs, output, fmt):
        return fmt or "csv"
    if implied is None:
        known = " or ".join(FILE_SUFFIXES)
        raise JobError(f"-o {output}: a file output must end in {known} (the suffix decides the format), "
                       "or name a folder")
    if fmt is not None and fmt != implied:
        raise JobError(f"-o {output} is a {implied} file name but --format is {fmt}")
    return implied


def _file_output(inputs: list[Path], output: Path, fmt: str | None) -> bool:
    """Whether -o names one output file (one video file in, and -o has a suffix and is not a folder)."""
    single = len(inputs) == 1 and not inputs[0].is_dir()
    return single and fmt != "abaw" and bool(output.suffix) and not output.is_dir()


def output_name(video: Path, fmt: str) -> str:
    """A video's output name in an output folder: its whole file name plus the format's suffix
    (`clip.mp4` -> `clip.mp4.csv`), so that `clip.mp4` and `clip.avi` never share an output."""
    return video.name + output_suffix(fmt)


def plan_jobs(inputs: list[Path], output: Path, fmt: str, own: Sequence[Path | None] = ()) -> list[Job]:
    """Map input files and folders (searched recursively) to outputs; each output depends on its input alone.

    One video file and -o with a suffix: that file. One video and `--format abaw`: -o is its ABAW folder.
    Otherwise -o is a folder: a video found in a folder input goes to OUT/<path relative to that folder>
    (`output_name`), a video file given by itself to OUT/<output_name>. Two inputs that would still share
    an output (same-named files from different folders) are an error, never renamed by order. A missing
    input is kept, so that it is reported as a failed video. Inside a folder, the run's own folders (-o and
    `own`: overlays, crops) and files named as our outputs are never inputs (see own_outputs).
    """
    if _file_output(inputs, output, fmt) or (fmt == "abaw" and len(inputs) == 1 and not inputs[0].is_dir()):
        return [Job(inputs[0], output)]
    if output.suffix.lower() in FILE_SUFFIXES and not output.is_dir():
        raise JobError(f"-o {output}: several videos need an output folder, not a {output.suffix} file name")
    if output.exists() and not output.is_dir():
        raise JobError(f"{output}: exists and is a file, but several videos need an output folder")
    jobs: list[Job] = []
    for item in inputs:
        if item.is_dir():
            for video in drop_own_outputs(find_videos(item), item, [output, *own]):
                rel = video.relative_to(item)
                jobs.append(Job(video, output / rel.parent / output_name(video, fmt)))
        else:
            jobs.append(Job(item, output / output_name(item, fmt)))
    by_output: dict[Path, Job] = {}
    for job in jobs:  # the same video given twice (by itself and inside a folder) is one job
        other = by_output.setdefault(job.output, job)
        if other.video.resolve() != job.video.resolve():
            raise JobError(f"{other.video} and {job.video} would both write {job.output}; "
                           "give their common folder instead, or run them separately")
    return list(by_output.values())


def _one_line(video: Path, exc: Exception) -> str:
    """A failure other than a bad video (out of memory, a file system error), as one line."""
    text = str(exc).strip()
    return f"{video}: {type(exc).__name__}: {text.splitlines()[0] if text else 'no message'}"


ONE_LINE_ERRORS = (VideoError, OutputNameError, WriteError)  # their message names the file and the problem
SKIP_COMPLETE = "skipped (complete output of this video exists; --overwrite to redo)"


def _existing(job: Job, settings: dict) -> JobResult | None:
    """The result for a video whose output is kept (complete) or refused (other settings, not ours);
    None when the run may (re)write it."""
    found = examine(job.output, job.video, settings)
    if found.state == "complete":
        return JobResult(job, "skipped", SKIP_COMPLETE)
    refusal = found.refusal(job.output)
    return JobResult(job, "failed", refusal) if refusal else None


def run_job(
    annotator: Annotator,
    job: Job,
    overwrite: bool = False,
    on_frames: Callable[[int, int], None] | None = None,
    arguments: dict | None = None,
) -> JobResult:
    """Annotate one video unless its complete output (same video, same settings) exists or another run holds
    its lock; an output made with other settings or not by us is refused unless `overwrite`. Never raises
    for a bad video (the unit of work of a folder run, also callable from a worker process)."""
    settings = annotator.settings()
    try:
        check_names(job.output)
        # Refusals are decided under the lock only: while another run holds it, its table may be in
        # place a moment before its sidecar, which would look like a file that is not ours.
        if not overwrite and examine(job.output, job.video, settings).state == "complete":
            return JobResult(job, "skipped", SKIP_COMPLETE)
        with OutputLock(job.output):
            if not overwrite:  # another run may have finished it meanwhile
                before = _existing(job, settings)
                if before is not None:
                    return before
            summary = annotator.run(job.video, job.output, on_frames=on_frames, arguments=arguments)
    except Locked as exc:
        return JobResult(job, "skipped", f"skipped ({exc})")
    except Exception as exc:  # one video's failure, whatever it is, must not stop the others
        message = str(exc) if isinstance(exc, ONE_LINE_ERRORS) else _one_line(job.video, exc)
        return JobResult(job, "failed", message)
    fps = summary.frames_sampled / max(summary.seconds, 1e-9)
    message = f"{summary.rows} rows, {summary.face_ids} face id(s), {fps:.1f} frames/s -> {job.output}"
    return JobResult(job, "done", message, summary)


def run_jobs(
    annotator: Annotator,
    jobs: list[Job],
    overwrite: bool = False,
    on_start: Callable[[Job], None] | None = None,
    on_frames: Callable[[int, int], None] | None = None,
    on_end: Callable[[JobResult], None] | None = None,
    arguments: dict | None = None,
) -> JobReport:
    """Annotate each job in turn; a bad video is recorded and skipped, the rest finish."""
    report = JobReport()
    for job in jobs:
        if on_start is not None:
            on_start(job)
        result = run_job(annotator, job, overwrite, on_frames, arguments)
        report.add(result)
        if on_end is not None:
            on_end(result)
    return report
