"""The `fer-annotate` command: annotate videos and folders; `fer-annotate weights ...` manages bundles."""

import sys
from collections.abc import Callable
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from fer_annotate import __version__
from fer_annotate.api import BatchCallbacks, build_config, run_batch, worker_spec
from fer_annotate.cli.events import events
from fer_annotate.cli.help import Group, option_panel
from fer_annotate.cli.params import (
    COUNT,
    DEVICE_ANYWHERE,
    FINITE,
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    PROBABILITY,
    check_cuda,
    smooth_spec,
    workers_count,
)
from fer_annotate.cli.photos import annotate_photo_set
from fer_annotate.cli.quick_exit import run as run_and_exit
from fer_annotate.cli.show import shown
from fer_annotate.cli.view import plot, render, summary
from fer_annotate.cli.weights import weights
from fer_annotate.faces.detect import AUTO, DETECTORS, DetectorError
from fer_annotate.faces.geometry import GeometryError
from fer_annotate.faces.reid import REID_METHODS
from fer_annotate.faces.sparse import DETECT_EVERY
from fer_annotate.media.display import visible
from fer_annotate.models.bundle import BundleError
from fer_annotate.outputs.output import FORMATS
from fer_annotate.run.jobs import Job, JobError, JobReport, output_format, plan_jobs
from fer_annotate.run.photoset import is_photo_set
from fer_annotate.run.signals import Stopped, stop_on_signals
from fer_annotate.run.workers import WorkerError

console = Console(stderr=True, soft_wrap=True)


class _DefaultGroup(Group):
    """A group whose first argument, when it is not a subcommand, goes to the `annotate` command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["annotate", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fer-annotate")
def main() -> None:
    """Annotate every frame of videos with facial action units, expressions and valence/arousal.

    \b
      fer-annotate VIDEO_OR_FOLDER... -o OUT      (see: fer-annotate annotate --help)
      fer-annotate PHOTO_FOLDER -o faces.csv      (one table for a folder of photos)
      fer-annotate render VIDEO TABLE -o overlay.mp4
      fer-annotate plot TABLE -o figure.png|.svg|.pdf
      fer-annotate summary TABLE_OR_FOLDER... [--json]
      fer-annotate events TABLE_OR_FOLDER... -o events.csv|.eaf|.srt|.boris.csv|FOLDER
      fer-annotate weights list|pull|import|verify
    """


@main.command()
@option_panel("Input and output", options=["--output", "--format", "--start", "--end", "--every", "--fps",
                                           "--overwrite", "--render", "--save-crops"])
@option_panel("Faces", options=["--detector", "--score-threshold", "--confirm-score", "--min-face", "--min-hits",
                                "--max-misses", "--cuts", "--reid", "--reid-threshold", "--geometry",
                                "--geometry-model", "--landmarks"])
@option_panel("Models", options=["--weights", "--smooth"])
@option_panel("Speed", options=["--device", "--batch-size", "--threads", "--detect-every"])
@option_panel("Scale-out", options=["--workers", "--ray"])
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path, readable=False))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Output file for one video; a folder for several (mirrors relative paths); for one folder of "
                   "photos, a .csv or .parquet file: one table of the whole set (path column, resumable).")
@click.option("--weights", default=None, metavar="NAME|PATH",
              help="Weights bundle (registry name or folder); 'none' for faces only. Default: the paper's "
                   "ensemble if cached, else the shipped offline bundle.")
@click.option("--detector", type=click.Choice((AUTO, *DETECTORS)), default=AUTO, show_default=True,
              help="auto: blazeface for videos, blazeface-back for still images; blazeface: faces over ~1/10 of "
                   "the frame (webcam, interviews); blazeface-back: smaller faces, groups; sfd, retinaface: most "
                   "accurate, weights downloaded on first use; dlib: HOG, CPU.")
@click.option("--score-threshold", type=PROBABILITY, default=0.5, show_default=True, help="Minimum detector score.")
@click.option("--min-face", type=NON_NEGATIVE, default=None,
              help="Minimum face side in pixels.  [default: 20, at most a tenth of the frame's shorter side]")
@click.option("--start", type=FINITE, default=None, help="Start time in seconds (container time).")
@click.option("--end", type=FINITE, default=None, help="End time in seconds (exclusive).")
@click.option("--every", type=POSITIVE_INT, default=1, show_default=True, help="Annotate every Nth frame.")
@click.option("--fps", type=POSITIVE, default=None, help="Annotate at most this many frames per second.")
@click.option("--smooth", default="gauss", show_default=True, callback=smooth_spec, metavar="none|gauss|gauss:SIGMA",
              help="Per-face temporal filter (SIGMA in seconds), reset at track breaks.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="csv, parquet or abaw. Default: the suffix of a file output (.csv, .parquet), else csv.")
@click.option("--save-crops", type=click.Path(path_type=Path), default=None, help="Write aligned face crops here.")
@click.option("--overwrite", is_flag=True, help="Redo videos whose complete output exists.")
@click.option("--render", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="Also write an overlay video per output into DIR (see: fer-annotate render --help).")
@click.option("--device", type=DEVICE_ANYWHERE, default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--batch-size", type=POSITIVE_INT, default=16, show_default=True,
              help="Frames decoded and detected at once (fewer for very large frames).")
@click.option("--min-hits", type=POSITIVE_INT, default=3, show_default=True,
              help="Detections before a face gets an id.")
@click.option("--confirm-score", type=PROBABILITY, default=None,
              help="Mean score of those detections a new face needs (default per detector).")
@click.option("--max-misses", type=COUNT, default=10, show_default=True,
              help="Sampled frames a face may go undetected and keep its id.")
@click.option("--detect-every", type=POSITIVE_INT, default=DETECT_EVERY, show_default=True,
              help="Run the face detector on every Kth sampled frame; in between, faces follow the tracker's "
                   "predicted boxes (detected at once on a scene cut or when a face leaves its box).")
@click.option("--cuts/--no-cuts", default=True, show_default=True,
              help="Detect shot cuts and end every face track at one (no face_id spans two shots).")
@click.option("--reid", type=click.Choice(REID_METHODS), default="dlib", show_default=True,
              help="How tracks of one person are joined into person_id: dlib face embeddings (extra [persons]; "
                   "without it person_id equals face_id) or none.")
@click.option("--reid-threshold", type=POSITIVE, default=0.5, show_default=True,
              help="Largest embedding distance at which two tracks are the same person (dlib's own: 0.6).")
@click.option("--threads", type=POSITIVE_INT, default=None,
              help="CPU threads for the run (of each worker with --workers), video decoder included (default: the "
                   "cores this process may use, shared equally between workers; one goes to decoding, the rest "
                   "to torch).")
@click.option("--geometry", type=click.Choice(["none", "mediapipe"]), default="none", show_default=True,
              help="mediapipe: head pose (pose_*) and 52 blendshape scores (bs_*) per face from MediaPipe's face "
                   "landmarker (extra [geometry]).")
@click.option("--geometry-model", type=click.Path(path_type=Path), default=None,
              help="The face_landmarker.task file (default: the cache copy, downloaded on first use).")
@click.option("--landmarks", is_flag=True, help="With --geometry: also the 478 landmarks (lmI_x/y/z; Parquet only).")
@click.option("--workers", default=None, callback=workers_count, metavar="N|auto",
              help="Videos annotated at once, each worker with its own models and cores (default: auto for several "
                   "videos on CPU, one per GPU with --device cuda; auto: from cores, GPUs and memory; with --ray: "
                   "Ray actors).")
@click.option("--ray", "ray_address", is_flag=False, flag_value="auto", default=None, metavar="[ADDRESS]",
              help="Run the workers as Ray actors on a cluster (auto: RAY_ADDRESS, else a local instance); "
                   "-o must be storage every node reaches at the same path.")
def annotate(inputs: tuple[Path, ...], output: Path, weights: str | None, smooth: str, overwrite: bool,
             render: Path | None, threads: int | None, workers: str | None, ray_address: str | None,
             **options: object) -> None:
    """Annotate videos (files or folders, searched recursively) into per-frame tables."""
    arguments = {"argv": sys.argv[1:], **click.get_current_context().params}
    if ray_address is None:  # with Ray the workers' GPUs count, so `auto`/`cuda` are resolved there
        check_cuda(str(options["device"]))
    if options["geometry"] != "none" and options["fmt"] == "abaw":
        raise click.UsageError("--geometry: ABAW files have no place for pose or blendshapes; use csv or parquet")
    if is_photo_set(list(inputs), output):
        annotate_photo_set(inputs[0], output, weights, smooth, threads, overwrite, workers or ray_address or render,
                           options, arguments, _describe)
        return
    try:
        options["fmt"] = output_format(list(inputs), output, options["fmt"])
        config = build_config(check_device=ray_address is None, **options)
    except (JobError, ValueError) as exc:
        raise click.UsageError(visible(str(exc))) from None
    if render is not None and config.fmt == "abaw":
        raise click.UsageError("--render needs a table output (--format csv or parquet), not abaw")
    try:
        jobs = plan_jobs(list(inputs), output, config.fmt, own=[render, config.save_crops])
    except JobError as exc:
        raise click.UsageError(visible(str(exc))) from None
    if not jobs:
        console.print(f"[red]error:[/] no videos found in {shown(', '.join(map(str, inputs)))}", highlight=False)
        sys.exit(1)
    try:
        spec = worker_spec(config, weights, smooth, threads)
        _describe(spec.bundle, smooth, spec.note)

        def run(callbacks: BatchCallbacks) -> JobReport:
            return run_batch(spec, jobs, output, workers=workers, ray=ray_address, overwrite=overwrite,
                             render_dir=render, callbacks=callbacks, arguments=arguments)

        with stop_on_signals():
            report = _run_with_progress(len(jobs), run)
    except (BundleError, DetectorError, GeometryError, ValueError, WorkerError) as exc:
        console.print(f"[red]error:[/] {shown(exc)}", highlight=False)
        sys.exit(1)
    except Stopped as stop:
        console.print(f"[red]stopped[/] by {stop.name}: every worker stopped, unfinished outputs removed "
                      "(complete ones are kept; rerun to resume)", highlight=False)
        sys.exit(stop.exit_code)
    done, skipped, failed = len(report.done), len(report.skipped), len(report.failed)
    if len(jobs) > 1:
        console.print(f"{done} annotated, {skipped} skipped, {failed} failed")
        for _, message in report.failed:
            console.print(f"  [red]failed:[/] {shown(message)}", highlight=False)
    if failed:
        sys.exit(1)


def _describe(bundle, smooth: str, note: str) -> None:
    """Say on the console which model runs (the workers load it) and why, when it is not the default."""
    if bundle is None:
        console.print("model: none (faces only)", highlight=False)
        return
    from fer_annotate.models.model import bundle_summary
    from fer_annotate.models.temporal import SmoothSpec

    console.print(f"model: {shown(bundle_summary(bundle, SmoothSpec.parse(smooth).kind))}", highlight=False)
    if note:
        console.print(f"[yellow]note:[/] {shown(note)}", highlight=False)


def _run_with_progress(videos: int, run: Callable[[BatchCallbacks], JobReport]) -> JobReport:
    """Run with one progress bar for the videos and one for each video being annotated or rendered."""
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=True) as progress:
        overall = progress.add_task("videos", total=videos)
        bars: dict[Path, TaskID] = {}

        def on_start(job: Job) -> None:
            bars[job.output] = progress.add_task(shown(job.video.name), total=None)

        def on_frames(job: Job, done: int, total: int) -> None:
            if job.output in bars:
                progress.update(bars[job.output], completed=done, total=total)

        def done_with(job: Job) -> None:
            if job.output in bars:
                progress.remove_task(bars.pop(job.output))

        def on_end(job: Job, message: str) -> None:
            done_with(job)
            progress.advance(overall)
            _report(progress.console, job, message)

        def on_render_start(job: Job, target: Path) -> None:
            bars[job.output] = progress.add_task(f"render {shown(job.video.name)}", total=None)

        def on_render_end(job: Job, message: str) -> None:
            done_with(job)
            _report(progress.console, job, message)

        return run(BatchCallbacks(on_start, on_frames, on_end, on_render_start, on_render_end))


def _report(out: Console, job: Job, message: str) -> None:
    if message.startswith("failed: "):
        out.print(f"[red]error:[/] {shown(message.removeprefix('failed: '))}", highlight=False)
    else:
        out.print(f"[green]{shown(job.video)}[/]: {shown(message)}", highlight=False)


for command in (weights, render, plot, summary, events):
    main.add_command(command)


def entry() -> None:
    """The `fer-annotate` console script (`quick_exit`: no interpreter teardown after the command)."""
    run_and_exit(main)
