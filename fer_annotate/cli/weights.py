"""`fer-annotate weights ...`: list, pull, import and verify weights bundles."""

from pathlib import Path

import click

from fer_annotate.cli.help import Group
from fer_annotate.models import weights as W
from fer_annotate.models.bundle import Bundle, BundleError


def _call(fn, *args) -> Bundle:
    """Run a weights operation; a BundleError becomes click's one-line "Error: ..." and exit status 1."""
    try:
        return fn(*args)
    except BundleError as exc:
        raise click.ClickException(str(exc)) from None


def _summary(bundle: Bundle) -> str:
    return (f"{bundle.name} {bundle.version}: {len(bundle.members)} member(s), {bundle.network.backbone}, "
            f"tasks {', '.join(bundle.tasks)}, temporal {bundle.temporal.kind}, at {bundle.path}")


# `weights list` columns from a manifest's figures: (header, key, format).
FIGURE_COLUMNS = [
    ("nets", "network_passes", "{:d}"),
    ("val acc", "ferplus_val_acc", "{:.3f}"),
    ("val F1", "ferplus_val_macro_f1", "{:.3f}"),
    ("tuning", "tuning_acc", "{:.3f}"),
    ("fps", "frames_per_s", "{:.1f}"),
    ("MB", "size_mb", "{:.0f}"),
]


def _figure(value: object, fmt: str) -> str:
    """A manifest figure as printed ("-" when the bundle does not record it)."""
    if value is None:
        return "-"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


@click.group("weights", cls=Group)
def weights() -> None:
    """Model weights: list the known bundles, download, import the authors' files, verify.

    Downloads and imports go to the cache, $FER_ANNOTATE_CACHE (default ~/.cache/fer-annotate).
    """


@weights.command("list")
def list_cmd() -> None:
    """Known bundles (shipped, downloadable) and bundles in the cache, with their state and, where the
    manifest records them, accuracy (FER+ validation, tuning split), speed and size."""
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("name", "state"):
        table.add_column(column, no_wrap=True)
    for column, _, _ in FIGURE_COLUMNS:
        table.add_column(column, justify="right", no_wrap=True)
    rows = W.list_weights()
    for row in rows:
        state = row.kind if row.status == "available" else row.status
        figures = [_figure(row.figures.get(key), fmt) for _, key, fmt in FIGURE_COLUMNS]
        if row.figures.get("tuning_seen_in_training") and figures[3] != "-":
            figures[3] += "*"
        table.add_row(*(escape(str(cell)) for cell in (row.name, state, *figures)))
    console = Console()
    console.print(table)
    console.print("nets: networks run per face (flip TTA counts twice); val: FER+ validation majority-vote accuracy "
                  "and macro-F1; tuning: the FER+ tuning split (*: the networks trained on it); fps: frames/s of "
                  "the default run on one thread, as measured (the manifest says where).")
    for row in rows:
        console.print(f"[bold]{escape(row.name)}[/bold] {escape(row.description)} ({escape(str(row.path))})")


@weights.command("pull")
@click.argument("name")
def pull_cmd(name: str) -> None:
    """Download NAME's checkpoints (SHA-256 verified) and convert them into a cached bundle."""
    click.echo(f"pulled {_summary(_call(W.pull, name))}")


@weights.command("import")
@click.argument("name")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
def import_cmd(name: str, folder: Path) -> None:
    """Convert the authors' .pth files for NAME (e.g. deng2020-cnn) from a local FOLDER into a cached bundle."""
    click.echo(f"imported {_summary(_call(W.import_weights, name, folder))}")


@weights.command("verify")
@click.argument("name_or_path")
def verify_cmd(name_or_path: str) -> None:
    """Check a bundle (registry NAME or folder PATH): manifest, checksums, and that every member loads."""
    click.echo(f"ok {_summary(_call(W.verify, name_or_path))}")
