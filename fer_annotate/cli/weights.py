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


@click.group("weights", cls=Group)
def weights() -> None:
    """Model weights: list the known bundles, download, import the authors' files, verify.

    Downloads and imports go to the cache, $FER_ANNOTATE_CACHE (default ~/.cache/fer-annotate).
    """


@weights.command("list")
def list_cmd() -> None:
    """Known bundles (shipped, downloadable) and bundles in the cache, with their state."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table()
    for column in ("name", "kind", "status"):
        table.add_column(column, no_wrap=True)
    table.add_column("path", overflow="fold")
    table.add_column("description")
    for row in W.list_weights():
        table.add_row(*(escape(str(cell)) for cell in (row.name, row.kind, row.status, row.path, row.description)))
    Console().print(table)


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
