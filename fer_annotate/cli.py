"""The `fer-annotate` command: annotate videos and folders; `fer-annotate weights ...` manages bundles."""

import sys
from pathlib import Path

import click
import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from fer_annotate.cli_types import COUNT, DEVICE, FINITE, NON_NEGATIVE, POSITIVE, POSITIVE_INT, PROBABILITY
from fer_annotate.cli_weights import weights
from fer_annotate.detect import CONFIRM_SCORE, DETECTORS, DetectorConfig, DetectorError
from fer_annotate.geometry import GeometryConfig, GeometryError
from fer_annotate.jobs import JobError, JobResult, output_format, plan_jobs, run_jobs
from fer_annotate.output import FORMATS
from fer_annotate.pipeline import AnnotateConfig, Annotator
from fer_annotate.temporal import SmoothSpec
from fer_annotate.track import TrackerConfig
from fer_annotate.video import Sampling

console = Console(stderr=True, soft_wrap=True)


class _DefaultGroup(click.Group):
    """A group whose first argument, when it is not a subcommand, goes to the `annotate` command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["annotate", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fer-annotate")
def main() -> None:
    """Annotate every frame of videos with facial action units, expressions and valence/arousal.

    \b
      fer-annotate VIDEO_OR_FOLDER... -o OUT      (see: fer-annotate annotate --help)
      fer-annotate weights list|pull|import|verify
    """


def _device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _smooth(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        SmoothSpec.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path, readable=False))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Output file for one video; a folder for several (mirrors relative paths).")
@click.option("--weights", default=None, metavar="NAME|PATH",
              help="Weights bundle (registry name or folder); 'none' for faces only. Default: the paper's "
                   "ensemble if cached, else the shipped offline bundle.")
@click.option("--detector", type=click.Choice(DETECTORS), default="blazeface", show_default=True,
              help="blazeface: faces over ~1/10 of the frame (webcam, interviews); blazeface-back: smaller faces, "
                   "groups; sfd, retinaface: most accurate, weights downloaded on first use; dlib: HOG, CPU.")
@click.option("--score-threshold", type=PROBABILITY, default=0.5, show_default=True, help="Minimum detector score.")
@click.option("--min-face", type=NON_NEGATIVE, default=20.0, show_default=True, help="Minimum face side in pixels.")
@click.option("--start", type=FINITE, default=None, help="Start time in seconds (container time).")
@click.option("--end", type=FINITE, default=None, help="End time in seconds (exclusive).")
@click.option("--every", type=POSITIVE_INT, default=1, show_default=True, help="Annotate every Nth frame.")
@click.option("--fps", type=POSITIVE, default=None, help="Annotate at most this many frames per second.")
@click.option("--smooth", default="gauss", show_default=True, callback=_smooth, metavar="none|gauss|gauss:SIGMA",
              help="Per-face temporal filter (SIGMA in seconds), reset at track breaks.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="csv, parquet or abaw. Default: the suffix of a file output (.csv, .parquet), else csv.")
@click.option("--save-crops", type=click.Path(path_type=Path), default=None, help="Write aligned face crops here.")
@click.option("--overwrite", is_flag=True, help="Redo videos whose complete output exists.")
@click.option("--device", type=DEVICE, default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--batch-size", type=POSITIVE_INT, default=16, show_default=True,
              help="Frames decoded and detected at once (fewer for very large frames).")
@click.option("--min-hits", type=POSITIVE_INT, default=3, show_default=True,
              help="Detections before a face gets an id.")
@click.option("--confirm-score", type=PROBABILITY, default=None,
              help="Mean score of those detections a new face needs (default per detector).")
@click.option("--max-misses", type=COUNT, default=10, show_default=True,
              help="Sampled frames a face may go undetected and keep its id.")
@click.option("--geometry", type=click.Choice(["none", "mediapipe"]), default="none", show_default=True,
              help="mediapipe: head pose (pose_*) and 52 blendshape scores (bs_*) per face from MediaPipe's face "
                   "landmarker (extra [geometry]).")
@click.option("--geometry-model", type=click.Path(path_type=Path), default=None,
              help="The face_landmarker.task file (default: the cache copy, downloaded on first use).")
@click.option("--landmarks", is_flag=True, help="With --geometry: also the 478 landmarks (lmI_x/y/z; Parquet only).")
def annotate(inputs: tuple[Path, ...], output: Path, weights: str | None, detector: str, score_threshold: float,
             min_face: float, start: float | None, end: float | None, every: int, fps: float | None, smooth: str,
             fmt: str | None, save_crops: Path | None, overwrite: bool, device: str, batch_size: int, min_hits: int,
             confirm_score: float | None, max_misses: int, geometry: str, geometry_model: Path | None,
             landmarks: bool) -> None:
    """Annotate videos (files or folders, searched recursively) into per-frame tables."""
    arguments = {"argv": sys.argv[1:], **click.get_current_context().params}
    try:
        sampling = Sampling(start_s=start, end_s=end, every=every, fps=fps)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    dev = _device(device)
    if geometry != "none" and fmt == "abaw":
        raise click.UsageError("--geometry: ABAW files have no place for pose or blendshapes; use csv or parquet")
    try:
        fmt = output_format(list(inputs), output, fmt)
    except JobError as exc:
        raise click.UsageError(str(exc)) from None
    if landmarks and (geometry == "none" or fmt != "parquet"):
        raise click.UsageError("--landmarks needs --geometry mediapipe and --format parquet (1,434 columns)")
    config = AnnotateConfig(
        detector=DetectorConfig(name=detector, score_threshold=score_threshold, min_face=min_face, device=dev),
        tracker=TrackerConfig(
            min_hits=min_hits,
            confirm_score=CONFIRM_SCORE[detector] if confirm_score is None else confirm_score,
            max_misses=max_misses,
        ),
        sampling=sampling,
        batch_size=batch_size,
        fmt=fmt,
        save_crops=save_crops,
        device=dev,
        geometry=GeometryConfig(model=geometry_model, landmarks=landmarks) if geometry == "mediapipe" else None,
    )
    try:
        jobs = plan_jobs(list(inputs), output, fmt)
    except JobError as exc:
        raise click.UsageError(str(exc)) from None
    if not jobs:
        console.print(f"[red]error:[/] no videos found in {escape(', '.join(map(str, inputs)))}", highlight=False)
        sys.exit(1)
    try:
        model = _model_stage(weights, smooth, dev)
        annotator = Annotator(config, model)
    except (DetectorError, GeometryError, ValueError) as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(1)
    report = _run_with_progress(annotator, jobs, overwrite, arguments)
    done, skipped, failed = len(report.done), len(report.skipped), len(report.failed)
    if len(jobs) > 1:
        console.print(f"{done} annotated, {skipped} skipped, {failed} failed")
        for _, message in report.failed:
            console.print(f"  [red]failed:[/] {escape(message)}", highlight=False)
    if failed:
        sys.exit(1)


def _model_stage(weights: str | None, smooth: str, device: str):
    """The bundle's ensemble and temporal stage, or None for faces only."""
    if weights is not None and weights.lower() == "none":
        return None
    from fer_annotate.bundle import BundleError
    from fer_annotate.model import ModelStage
    from fer_annotate.weights import DEFAULT_BUNDLE, resolve_bundle

    try:
        bundle = resolve_bundle(weights)
        note = ""
        if weights is None and bundle.name != DEFAULT_BUNDLE:
            note = (f"the paper's ensemble {DEFAULT_BUNDLE} is not in the cache, so the shipped offline bundle "
                    f"{bundle.name} is used (tasks: {'/'.join(bundle.tasks)}); `fer-annotate weights pull "
                    f"{DEFAULT_BUNDLE}` on a connected machine makes the paper's ensemble the default")
        stage = ModelStage(bundle, device, smooth, note)
    except BundleError as exc:
        raise ValueError(str(exc)) from None
    console.print(f"model: {escape(stage.summary())}", highlight=False)
    if note:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    return stage


def _run_with_progress(annotator: Annotator, jobs, overwrite: bool, arguments: dict):
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=True) as progress:
        overall = progress.add_task("videos", total=len(jobs))
        frames = progress.add_task("frames", total=None)

        def on_start(job) -> None:
            progress.reset(frames, total=None, description=escape(job.video.name))

        def on_frames(done: int, total: int) -> None:
            progress.update(frames, completed=done, total=total)

        def on_end(result: JobResult) -> None:
            progress.advance(overall)
            if result.status == "failed":
                progress.console.print(f"[red]error:[/] {escape(result.message)}", highlight=False)
            else:
                progress.console.print(f"[green]{escape(str(result.job.video))}[/]: {escape(result.message)}",
                                       highlight=False)

        return run_jobs(annotator, jobs, overwrite, on_start, on_frames, on_end, arguments)


main.add_command(weights)
