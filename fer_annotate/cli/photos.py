"""`fer-annotate photos/ -o faces.csv`: a folder of photos into one table, with a progress bar."""

import sys
from collections.abc import Callable
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from fer_annotate.cli.show import shown
from fer_annotate.media.display import visible

console = Console(stderr=True, soft_wrap=True)


def annotate_photo_set(folder: Path, output: Path, weights: str | None, smooth: str, threads: int | None,
                       overwrite: bool, spread: object, options: dict, arguments: dict,
                       describe: Callable) -> None:
    """Run a photo set as the `annotate` command does (`spread`: --workers, --ray or --render, refused)."""
    from fer_annotate.api import annotate_photos, build_config, worker_spec
    from fer_annotate.faces.detect import DetectorError
    from fer_annotate.faces.geometry import GeometryError
    from fer_annotate.run.photoset import PhotoSetError, find_photos, photo_format

    if spread:
        raise click.UsageError("a photo set (a folder into one .csv/.parquet table) runs in one process, "
                               "without --workers, --ray or --render")
    try:
        options["fmt"] = photo_format(output, options["fmt"])
        config = build_config(**options)
    except (PhotoSetError, ValueError) as exc:
        raise click.UsageError(visible(str(exc))) from None
    try:
        find_photos(folder)  # a folder with videos, or without images, is a usage error before models load
    except PhotoSetError as exc:
        message = f"-o {output} is a table file, for a folder of photos: {exc}"
        raise click.UsageError(visible(message)) from None
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    try:
        spec = worker_spec(config, weights, smooth, threads)
        describe(spec.bundle, "none", spec.note)  # one frame per photo: nothing to smooth
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task(shown(folder.name or str(folder)), total=None)
            report = annotate_photos(spec, folder, output, overwrite=overwrite, arguments=arguments,
                                     on_images=lambda done, total: progress.update(task, completed=done, total=total))
    except (PhotoSetError, DetectorError, GeometryError, ValueError) as exc:
        console.print(f"[red]error:[/] {shown(exc)}", highlight=False)
        sys.exit(1)
    if report.skipped:
        console.print(f"{shown(output)}: skipped (complete table of these {report.images} images exists; "
                      "--overwrite to redo)", highlight=False)
        return
    resumed = f", {report.resumed} from an earlier run" if report.resumed else ""
    console.print(f"[green]{shown(output)}[/]: {report.images} images{resumed}, {report.rows} rows",
                  highlight=False)
    for _, message in report.failed:
        console.print(f"  [red]failed:[/] {shown(message)}", highlight=False)
    if report.failed:
        sys.exit(1)
