"""`fer-annotate render | plot | summary`: look at finished outputs (an overlay video, a figure, numbers)."""

import json
import sys
from pathlib import Path

import click
from rich.console import Console

from fer_annotate.cli.help import Command
from fer_annotate.cli.show import shown
from fer_annotate.media.display import visible

console = Console(stderr=True, soft_wrap=True)


def _fail(message: str) -> None:
    console.print(f"[red]error:[/] {shown(message)}", highlight=False)
    sys.exit(1)


@click.command("render", cls=Command)
@click.argument("video", type=click.Path(path_type=Path))
@click.argument("table", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Overlay video to write (.mp4, .mkv or .mov; H.264).")
def render(video: Path, table: Path, output: Path) -> None:
    """Draw TABLE (an output of this tool, CSV or Parquet) onto VIDEO: boxes, ids, expressions, AUs, VA."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from fer_annotate.outputs.render import RenderError, render_overlay

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task(f"render {shown(video.name)}", total=None)
            done = render_overlay(video, table, output,
                                  on_frames=lambda n, total: progress.update(task, completed=n, total=total))
    except RenderError as exc:
        _fail(str(exc))
    console.print(f"[green]{shown(output)}[/]: {done.frames} frames, {done.frames_per_second:.1f} frames/s",
                  highlight=False)


@click.command("plot", cls=Command)
@click.argument("table", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Figure to write: .png, .svg or .pdf.")
@click.option("--max-faces", type=int, default=8, show_default=True, help="Faces drawn (those seen longest).")
@click.option("--max-points", type=int, default=2000, show_default=True,
              help="Time bins drawn per panel (long videos are averaged for drawing only).")
@click.option("--dpi", type=int, default=100, show_default=True)
def plot(table: Path, output: Path, max_faces: int, max_points: int, dpi: int) -> None:
    """A figure of TABLE: per face, expressions, AUs, valence/arousal over time; share of time per expression."""
    from fer_annotate.outputs.table import TableError, read_table

    try:
        from fer_annotate.outputs.plot import FIGURE_FORMATS, PlotOptions, plot_table
    except ImportError as exc:
        _fail(f"plotting needs matplotlib: pip install 'fer-annotate[plot]' ({exc})")

    if output.suffix.lower() not in FIGURE_FORMATS:
        raise click.UsageError(f"{output}: unknown figure format (use {', '.join(FIGURE_FORMATS)})")
    if max_faces < 1 or max_points < 10:
        raise click.UsageError("--max-faces must be >= 1 and --max-points >= 10")
    try:
        df = read_table(table)
    except TableError as exc:
        _fail(str(exc))
    plot_table(df, output, PlotOptions(max_faces=max_faces, max_points=max_points, dpi=dpi))
    console.print(f"[green]{shown(output)}[/]", highlight=False)


@click.command("summary", cls=Command)
@click.argument("tables", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list, one object per video) instead.")
def summary(tables: tuple[Path, ...], as_json: bool) -> None:
    """One line per video (per photo of a photo folder's table) and face: seconds seen, share per expression,
    mean valence/arousal, blinks per minute, mean blink duration, share of time smiling, AU base rates
    (--json: also seconds per expression).

    TABLES are outputs of this tool (CSV or Parquet) or folders holding them (searched recursively).
    """
    from fer_annotate.outputs.summary import summarize_table
    from fer_annotate.outputs.table import TABLE_SUFFIXES, TableError, read_table

    paths: list[Path] = []
    for item in tables:
        if item.is_dir():
            paths += sorted(p for p in item.rglob("*") if p.suffix.lower() in TABLE_SUFFIXES
                            and not p.name.startswith("."))
        else:
            paths.append(item)
    if not paths:
        _fail(f"no tables (.csv, .parquet) found in {', '.join(map(str, tables))}")
    results, failed = [], 0
    for path in paths:
        try:
            df = read_table(path)
        except TableError as exc:
            console.print(f"[red]error:[/] {shown(exc)}", highlight=False)
            failed += 1
            continue
        # recomputed: older sidecars lack newer figures; a photo folder's table gives one summary per photo
        results += [{"table": str(path), **one} for one in summarize_table(df)]
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        _print_table(results)
    if failed:
        sys.exit(1)


def _print_table(results: list[dict]) -> None:
    """Aligned plain text (never truncated, so it survives pipes and logs)."""
    from fer_annotate.outputs.summary import summary_lines

    header, rows = summary_lines(results)
    rows = [[visible(cell) for cell in row] for row in rows]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [c.ljust(w) if i in (0, 4) else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        click.echo("  ".join(cells).rstrip())
