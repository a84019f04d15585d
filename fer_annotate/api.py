"""The Python API: `annotate(...)`, `Annotator`, `read_table(...)`; the CLI is a thin layer over it.

Options are the CLI's option names with underscores (`detector`, `score_threshold`, `every`, `fmt`, ...).
Each one lands in the field of the same name of `AnnotateConfig` or of one of its nested configs
(`DetectorConfig`, `TrackerConfig`, `Sampling`, `SparseConfig`), so a new option needs only a field there
(and a click option in the CLI). A few CLI names differ from their field: see OPTION_ALIASES. How a run
is spread (`threads`, `workers`, `ray`) is not a setting of the pipeline: those go to `workers.WorkerSpec`
and `workers.scale_runner`.

    df = annotate("video.mp4")                                  # a DataFrame; metadata in df.attrs
    paths = annotate(["a.mp4", "b.mp4"], output_dir="out/")     # a batch; the outputs' paths
    paths = annotate("corpus/", output_dir="out/", workers=4)   # a batch on 4 worker processes
"""

import dataclasses
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fer_annotate.faces.sparse import DETECT_EVERY, SparseConfig
from fer_annotate.outputs.names import check_names, name_max
from fer_annotate.outputs.output import output_suffix
from fer_annotate.run.jobs import Job, JobError, JobReport, output_format, output_name, plan_jobs
from fer_annotate.run.pipeline import AnnotateConfig
from fer_annotate.run.resume import examine
from fer_annotate.run.values import check_options
from fer_annotate.run.workers import Events, WorkerSpec, build_annotator, run_serial, scale_runner

if TYPE_CHECKING:  # pandas is imported when a table is read, not for a run of the CLI
    import pandas as pd

    from fer_annotate.run.photoset import PhotoSetReport

# CLI option name -> (nested config field or None for AnnotateConfig itself, field name)
OPTION_ALIASES: dict[str, tuple[str | None, str]] = {
    "detector": ("detector", "name"),
    "every": ("sampling", "every"),
    "detect_every": ("sparse", "every"),
    "start": ("sampling", "start_s"),
    "end": ("sampling", "end_s"),
    "format": (None, "fmt"),
}


class AnnotateError(Exception):
    """Some videos of a batch failed; `report` says which, and the others' outputs are complete."""

    def __init__(self, message: str, report: JobReport):
        super().__init__(message)
        self.report = report


def _targets(name: str, config: AnnotateConfig) -> list[tuple[str | None, str]]:
    """Every (nested config, field) an option sets: its alias, else each field of that name."""
    if name in OPTION_ALIASES:
        return [OPTION_ALIASES[name]]
    found: list[tuple[str | None, str]] = []
    for f in dataclasses.fields(config):
        if f.name == name:
            found.append((None, name))
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value) and any(g.name == name for g in dataclasses.fields(value)):
            found.append((f.name, name))
    return found


def resolve_device(name: str) -> str:
    """`auto` -> `cuda` when a GPU is there, else `cpu`; a CUDA device that is not there is an error."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name}: no CUDA device is available")
    return name


def build_config(*, check_device: bool = True, **options: object) -> AnnotateConfig:
    """An AnnotateConfig from flat option names (see the module docstring); None means the default
    (`detect_every`: DETECT_EVERY, as the CLI).

    `check_device` False keeps `device` as given (`auto`, `cuda`) for workers elsewhere (Ray) to resolve.
    Raises TypeError for an unknown option and ValueError for a bad value.
    """
    options = check_options(options)  # values as the CLI converts them (every="2" -> 2), else ValueError
    geometry = _geometry_option(options)  # takes the geometry options out of `options`
    options.update(geometry)
    config = AnnotateConfig(sparse=SparseConfig(every=DETECT_EVERY))
    nested: dict[str | None, dict[str, object]] = {}
    for name, value in options.items():
        targets = _targets(name, config)
        if not targets:
            raise TypeError(f"unknown option {name!r}")
        if value is None:
            continue
        if name == "device" and check_device:
            value = resolve_device(str(value))
        for part, field_name in targets:
            nested.setdefault(part, {})[field_name] = value
    top = nested.pop(None, {})
    for part, values in nested.items():
        top[part] = dataclasses.replace(getattr(config, part), **values)
    config = dataclasses.replace(config, **top)
    if options.get("confirm_score") is None:
        from fer_annotate.faces.detect import AUTO, CONFIRM_SCORE

        name = config.detector.name  # "auto" picks the detector, and its score, per input (pipeline)
        config.tracker.confirm_score = None if name == AUTO else CONFIRM_SCORE.get(name, config.tracker.confirm_score)
    return config


def _geometry_option(options: dict[str, object]) -> dict[str, object]:
    """`geometry="mediapipe"` (+ `geometry_model`, `landmarks`) -> a GeometryConfig; `"none"` -> off.

    The geometry stage is an optional nested config (None when off), so its CLI options build it as a
    whole; a GeometryConfig may also be passed as `geometry` directly.
    """
    kind = options.pop("geometry", None)
    model, landmarks = options.pop("geometry_model", None), bool(options.pop("landmarks", False))
    fmt = options.get("fmt") or options.get("format") or "csv"
    if kind is None or isinstance(kind, str) and kind == "none":
        if landmarks:
            raise ValueError("--landmarks needs --geometry mediapipe and --format parquet (1,434 columns)")
        return {}
    from fer_annotate.faces.geometry import GeometryConfig

    if isinstance(kind, str):
        if kind != "mediapipe":
            raise ValueError(f"geometry {kind!r}: use 'none' or 'mediapipe'")
        kind = GeometryConfig(model=None if model is None else Path(str(model)), landmarks=landmarks)
    if fmt == "abaw":
        raise ValueError("--geometry: ABAW files have no place for pose or blendshapes; use csv or parquet")
    if getattr(kind, "landmarks", False) and fmt != "parquet":
        raise ValueError("--landmarks needs --geometry mediapipe and --format parquet (1,434 columns)")
    return {"geometry": kind}


def resolve_weights(weights: str | None):
    """The weights bundle (None for `weights="none"`: faces only) and a note when the default was not the
    paper's ensemble ('' otherwise).

    `weights` None takes the paper's ensemble when cached, else the shipped offline bundle. Raises
    ValueError with a one-line message for a bad bundle. The models are loaded by `workers.build_annotator`.
    """
    if weights is not None and str(weights).lower() == "none":
        return None, ""
    from fer_annotate.models.bundle import BundleError
    from fer_annotate.models.weights import DEFAULT_BUNDLE, resolve_bundle

    try:
        bundle = resolve_bundle(None if weights is None else str(weights))
    except BundleError as exc:
        raise ValueError(str(exc)) from None
    note = ""
    if weights is None and bundle.name != DEFAULT_BUNDLE:
        note = (f"the paper's ensemble {DEFAULT_BUNDLE} is not in the cache, so the shipped offline bundle "
                f"{bundle.name} is used (tasks: {'/'.join(bundle.tasks)}); `fer-annotate weights pull "
                f"{DEFAULT_BUNDLE}` on a connected machine makes the paper's ensemble the default")
    return bundle, note


def worker_spec(config: AnnotateConfig, weights: str | None = None, smooth: str = "gauss",
                threads: int | None = None) -> WorkerSpec:
    """What each worker needs to build its annotator: the config, the resolved bundle, the thread budget."""
    bundle, note = resolve_weights(weights)
    return WorkerSpec(config, bundle, weights, smooth, note, threads=threads)


@dataclass
class BatchCallbacks:
    """Progress hooks of a batch (all optional): a video starts, its frames done of total (annotating or
    rendering), a video ends (message; `failed: ...` for a failure), an overlay starts rendering, an
    overlay ends."""

    on_start: Callable[[Job], None] | None = None
    on_frames: Callable[[Job, int, int], None] | None = None
    on_end: Callable[[Job, str], None] | None = None
    on_render_start: Callable[[Job, Path], None] | None = None
    on_render_end: Callable[[Job, str], None] | None = None

    def events(self) -> Events:
        """The hooks a run of workers reports to."""
        return Events(self.on_start, self.on_frames, self.on_end)


class Annotator:
    """Loads the detector and the model once; annotates one video or many with the same settings.

        ann = Annotator(weights="ferplus-teacher", detector="blazeface", every=2)
        df = ann.annotate("a.mp4")
    """

    def __init__(self, weights: str | None = None, smooth: str = "gauss", config: AnnotateConfig | None = None,
                 threads: int | None = None, **options: object):
        if config is not None and options:
            raise TypeError("give either config or options, not both")
        _check_run(smooth, threads, None)
        self.config = config if config is not None else build_config(**options)
        self.spec = worker_spec(self.config, weights, smooth, threads)
        self.engine = build_annotator(self.spec, self.config.device)
        self.model = self.engine.model

    @property
    def note(self) -> str:
        """Why the default bundle was not the paper's ensemble ('' otherwise)."""
        return self.model.note if self.model is not None else ""

    def describe(self) -> str:
        """One line: the model (or faces only)."""
        return self.model.summary() if self.model is not None else "none (faces only)"

    def annotate(self, video: str | Path, output: str | Path | None = None, overwrite: bool = False,
                 render: str | Path | None = None) -> "pd.DataFrame":
        """Annotate one video into `output` (a temporary file when None; an existing folder: the file the CLI
        would write there) and return its table.

        The sidecar's metadata is in `df.attrs`. A complete output of this video made with the same settings
        is read back, not redone; one made with other settings, or a file this tool did not write, is left
        alone with a ValueError unless `overwrite` (as `-o` on the command line). `render` names an overlay
        video to write as well. Errors (a bad video, ...) are raised; arguments are checked before any work.
        """
        if self.config.fmt == "abaw":
            raise ValueError("the ABAW format is not a table; annotate() returns CSV or Parquet tables")
        video = as_path(video, "video")
        if output is None:
            with tempfile.TemporaryDirectory(prefix="fer-annotate-") as tmp:
                target = Path(tmp) / (video.stem + output_suffix(self.config.fmt))
                return self._one(video, target, True, render)
        target = as_path(output, "output")
        if target.is_dir():  # as `-o FOLDER` with one video
            target = target / output_name(video, self.config.fmt)
        return self._one(video, target, overwrite, render)

    def _one(self, video: Path, output: Path, overwrite: bool, render: str | Path | None) -> "pd.DataFrame":
        check_names(output)
        found = examine(output, video, self.engine.settings())
        if not overwrite and found.refusal(output):
            raise ValueError(found.refusal(output))
        if overwrite or found.state != "complete":
            self.engine.run(video, output, arguments={"api": "annotate", "video": str(video)})
        if render is not None:
            from fer_annotate.outputs.render import render_overlay

            render_overlay(video, output, Path(render))
        from fer_annotate.outputs.table import read_table

        return read_table(output)

    def annotate_batch(self, inputs: Sequence[str | Path], output: str | Path, overwrite: bool = False,
                       render_dir: str | Path | None = None, callbacks: BatchCallbacks | None = None,
                       arguments: dict | None = None) -> JobReport:
        """Annotate files and folders (recursively) into `output` (a file for one video, else a folder).

        Videos whose complete output exists are skipped unless `overwrite`; a video's failure is recorded
        in the report and the others go on. With `render_dir`, each complete output also gets an overlay
        video there (same relative path, `.overlay.mp4`).
        """
        jobs = plan_jobs([as_path(p, "video") for p in inputs], as_path(output, "output"), self.config.fmt,
                         own=[None if render_dir is None else Path(render_dir), self.config.save_crops])
        return self.run_jobs(jobs, Path(output), overwrite, render_dir, callbacks, arguments)

    def run_jobs(self, jobs: list[Job], output: Path, overwrite: bool = False, render_dir: str | Path | None = None,
                 callbacks: BatchCallbacks | None = None, arguments: dict | None = None) -> JobReport:
        """Annotate planned jobs (see annotate_batch), then render the overlays asked for."""
        cb = callbacks or BatchCallbacks()
        _check_render(self.config, render_dir, jobs, output)
        report = run_serial(self.engine, jobs, overwrite, arguments, cb.events())
        return _render_outputs(jobs, output, render_dir, overwrite, report, cb)


def _check_render(config: AnnotateConfig, render_dir: str | Path | None, jobs: list[Job], output: Path) -> None:
    """--render with a table format, and every overlay's name short enough, before any video is annotated."""
    if render_dir is None:
        return
    if config.fmt == "abaw":
        raise ValueError("--render needs a table (csv or parquet), not the ABAW format")
    from fer_annotate.outputs.render import render_path

    for job in jobs:
        target = render_path(job.output, Path(output), Path(render_dir))
        if len(os.fsencode(target.name)) > name_max(target.parent):
            raise ValueError(f"{target}: file name too long for this file system (the overlay of {job.video}); "
                             "rename the video or run without --render")


def run_batch(spec: WorkerSpec, jobs: list[Job], output: Path, *, workers: str | int | None = None,
              ray: str | None = None, overwrite: bool = False, render_dir: str | Path | None = None,
              callbacks: BatchCallbacks | None = None, arguments: dict | None = None) -> JobReport:
    """Annotate planned jobs with the models loaded where they run: in this process, on `workers` local
    processes (N or "auto") or on Ray actors (`ray`: an address or "auto"); then render the overlays asked for.

    Raises ValueError for a bad `workers` and workers.WorkerError when workers cannot start.
    """
    cb = callbacks or BatchCallbacks()
    _check_render(spec.config, render_dir, jobs, output)
    count = None if workers is None else str(workers)
    report = scale_runner(spec, jobs, count, ray, overwrite, arguments)(cb.events())
    return _render_outputs(jobs, output, render_dir, overwrite, report, cb)


def _render_outputs(jobs: list[Job], output: Path, render_dir: str | Path | None, overwrite: bool,
                    report: JobReport, cb: BatchCallbacks) -> JobReport:
    """An overlay per complete output into `render_dir` (nothing when None); failures join the report."""
    if render_dir is not None:
        from fer_annotate.media.still import is_image

        failed = {id(job) for job, _ in report.failed}
        for job in jobs:
            if id(job) not in failed and not is_image(job.video):  # overlays are drawn on videos only
                _render_job(job, Path(output), Path(render_dir), overwrite, report, cb)
    return report


def _render_job(job: Job, output: Path, render_dir: Path, overwrite: bool, report: JobReport,
                cb: BatchCallbacks) -> None:
    from fer_annotate.outputs.render import RenderError, render_overlay, render_path

    target = render_path(job.output, output, render_dir)
    if target.exists() and not overwrite and job in report.skipped:
        return
    if cb.on_render_start is not None:
        cb.on_render_start(job, target)

    def on_frames(done: int, total: int) -> None:
        if cb.on_frames is not None:
            cb.on_frames(job, done, total)

    try:
        done = render_overlay(job.video, job.output, target, on_frames=on_frames)
    except (RenderError, OSError) as exc:
        report.failed.append((job, str(exc)))
        if cb.on_render_end is not None:
            cb.on_render_end(job, f"failed: {exc}")
        return
    if cb.on_render_end is not None:
        cb.on_render_end(job, f"overlay, {done.frames} frames, {done.frames_per_second:.1f} frames/s -> {target}")


def as_path(value: object, what: str) -> Path:
    """A str, bytes (a name that need not be UTF-8) or os.PathLike path as a Path; TypeError for anything else."""
    if isinstance(value, bytes):
        return Path(os.fsdecode(value))
    if isinstance(value, str | os.PathLike):
        return Path(value)
    raise TypeError(f"{what}: expected a path (str, bytes or os.PathLike), not {type(value).__name__}")


def _check_run(smooth: str, threads: object, workers: object) -> None:
    """The run options outside the config, checked before any work with the CLI's messages."""
    from fer_annotate.models.temporal import SmoothSpec
    from fer_annotate.run.workers import parse_workers

    SmoothSpec.parse(str(smooth))
    check_options({"threads": threads})
    parse_workers(None if workers is None else str(workers))


def annotate_photos(spec: WorkerSpec, folder: str | Path, output: str | Path, *, overwrite: bool = False,
                    on_images: Callable[[int, int], None] | None = None,
                    arguments: dict | None = None) -> "PhotoSetReport":
    """A folder of photos into one table `output` (.csv or .parquet; `path` column relative to the folder),
    resuming an unfinished run (see `run.photoset`); on_images(done, total) reports progress. Photos are
    single frames: no temporal filter (so no unsmoothed `_raw` columns either)."""
    from fer_annotate.run.photoset import PhotoSet

    engine = build_annotator(dataclasses.replace(spec, smooth="none"), spec.config.device)
    return PhotoSet(engine, Path(folder), Path(output), spec.config.fmt).run(overwrite, on_images, arguments)


def annotate(video_or_list: str | Path | Sequence[str | Path], output: str | Path | None = None,
             output_dir: str | Path | None = None, *, weights: str | None = None, smooth: str = "gauss",
             overwrite: bool = False, render: str | Path | None = None, threads: int | None = None,
             workers: str | int | None = None, ray: str | None = None,
             **options: object) -> "pd.DataFrame | list[Path]":
    """Annotate a video and return its table, or a batch and return the outputs' paths.

    One video (a file path): the table as a DataFrame (dtypes as `read_table`, metadata in `df.attrs`),
    written to `output` or, when None, to a temporary file that is removed; `render` is an overlay file.
    As with `-o`, a complete `output` of the same video and settings is read back, not redone, and one made
    with other settings or not by this tool raises ValueError unless `overwrite`. Paths may be str, bytes
    or os.PathLike; every argument is checked before any work, with the CLI's messages.
    A folder of photos with `output` (a .csv or .parquet file): one table of every face of every image, with
    a `path` column (see `annotate_photos`), returned as a DataFrame; images that could not be read are
    listed in `df.attrs["failed"]`.
    A list of videos or a folder: `output_dir` receives one table per video (relative paths mirrored),
    existing complete outputs are kept unless `overwrite`; `render` is then a folder for the overlays.
    Returns the paths of the complete outputs in job order; raises AnnotateError (after the whole batch)
    when some videos failed. A batch runs as the CLI's: `workers` (N or "auto") local processes or Ray
    actors (`ray`: an address or "auto"), each with `threads` CPU threads (default: an equal share of the
    cores). Other keyword options: see `build_config` (e.g. detector="blazeface-back", every=5, start=10,
    end=60, fmt="parquet", device="cuda", detect_every=1).
    """
    one = isinstance(video_or_list, str | bytes | os.PathLike) or not isinstance(video_or_list, Iterable)
    inputs = [as_path(video_or_list, "video")] if one else [as_path(p, "video") for p in video_or_list]
    _check_run(smooth, threads, workers)
    single = one and not inputs[0].is_dir()
    if one and output is not None and output_dir is None and not single:
        from fer_annotate.outputs.table import read_table
        from fer_annotate.run.photoset import photo_format

        if workers is not None or ray is not None:
            raise TypeError("workers and ray spread a batch of videos; a folder of photos into one table runs here")
        options["fmt"] = photo_format(as_path(output, "output"), options.get("fmt"))  # photos into one table
        spec = worker_spec(build_config(**options), weights, smooth, threads)
        annotate_photos(spec, inputs[0], as_path(output, "output"), overwrite=overwrite)
        return read_table(output)
    if single and output_dir is None:
        if workers is not None or ray is not None:
            raise TypeError("workers and ray spread a batch (give output_dir)")
        if output is not None:  # the suffix decides the format, as on the command line
            try:
                options["fmt"] = output_format(inputs, as_path(output, "output"), options.get("fmt"))
            except JobError as exc:
                raise ValueError(str(exc).removeprefix("-o ")) from None
        build_config(check_device=False, **options)  # bad values fail before the models load
        ann = Annotator(weights, smooth, threads=threads, **options)
        return ann.annotate(inputs[0], output, overwrite=overwrite, render=render)
    if output_dir is None:
        raise TypeError("a batch (a list of videos or a folder) needs output_dir")
    config = build_config(check_device=ray is None, **options)
    spec = worker_spec(config, weights, smooth, threads)
    folder = as_path(output_dir, "output_dir")
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder}: exists and is a file, but several videos need an output folder")
    folder.mkdir(parents=True, exist_ok=True)  # an existing folder: plan_jobs maps every video into it
    jobs = plan_jobs(inputs, folder, config.fmt, own=[None if render is None else Path(render), config.save_crops])
    report = run_batch(spec, jobs, folder, workers=workers, ray=ray, overwrite=overwrite, render_dir=render)
    if report.failed:
        lines = "; ".join(message for _, message in report.failed)
        raise AnnotateError(f"{len(report.failed)} of {len(jobs)} videos failed: {lines}", report)
    return [job.output for job in jobs]
