"""`fer-annotate events`: blinks, smiles and expression episodes of finished tables, for ELAN, BORIS, players."""

import sys
from pathlib import Path

import click
from rich.console import Console

from fer_annotate.cli.help import Command, command, option_panel
from fer_annotate.cli.params import NON_NEGATIVE, POSITIVE, PROBABILITY
from fer_annotate.cli.show import shown
from fer_annotate.media.display import visible
from fer_annotate.outputs.event_formats import EVENT_FORMATS
from fer_annotate.outputs.events import KINDS, BlinkRule, EpisodeRule, EventRules, SmileRule

console = Console(stderr=True, soft_wrap=True)
BLINK, SMILE, EPISODE = BlinkRule(), SmileRule(), EpisodeRule()


def _kinds(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in value.split(",") if k.strip())
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise click.BadParameter(f"{value!r}: a comma-separated list of {', '.join(KINDS)}")
    return kinds


@command("events", cls=Command)  # rich-click's decorator: it reads the option panels
@option_panel("Input and output", options=["--output", "--format", "--overwrite", "--kinds"])
@option_panel("Blinks", options=["--blink-on", "--blink-off", "--blink-baseline", "--blink-min", "--blink-max",
                                 "--blink-gap"])
@option_panel("Smiles", options=["--smile-source", "--smile-on", "--smile-off", "--smile-min", "--smile-gap"])
@option_panel("Expression episodes", options=["--episode-margin", "--episode-min"])
@click.argument("tables", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="A file (.csv, .parquet, .eaf, .srt, .boris.csv: the suffix decides the format) or a folder "
                   "(one file per table and format).")
@click.option("--format", "formats", multiple=True, type=click.Choice(EVENT_FORMATS),
              help="With a folder output: the formats to write (repeat the option; default csv).")
@click.option("--overwrite", is_flag=True,
              help="Replace output files that are not events outputs of this tool (refused otherwise).")
@click.option("--kinds", default=",".join(KINDS), show_default=True, callback=_kinds,
              help="Which events to find.")
@click.option("--blink-on", type=PROBABILITY, default=BLINK.on, show_default=True,
              help="A blink starts where both eyes' eyeBlink score rises this far above the face's baseline.")
@click.option("--blink-off", type=PROBABILITY, default=BLINK.off, show_default=True,
              help="...and ends where it falls below this rise (hysteresis).")
@click.option("--blink-baseline", type=NON_NEGATIVE, default=BLINK.baseline_s, show_default=True,
              help="Seconds of the running median that is each face's baseline; 0: --blink-on/--blink-off are "
                   "absolute scores.")
@click.option("--blink-min", type=NON_NEGATIVE, default=BLINK.min_s, show_default=True,
              help="Shortest blink in seconds.")
@click.option("--blink-max", type=POSITIVE, default=BLINK.max_s, show_default=True,
              help="Longest blink in seconds (longer closures are not blinks).")
@click.option("--blink-gap", type=NON_NEGATIVE, default=BLINK.gap_s, show_default=True,
              help="Blinks closer than this many seconds merge into one.")
@click.option("--smile-source", type=click.Choice(["auto", "blendshapes", "happiness"]), default=SMILE.source,
              show_default=True, help="auto: the mouthSmile blendshapes when the table has them, else expr_happiness.")
@click.option("--smile-on", type=PROBABILITY, default=SMILE.on, show_default=True, help="A smile starts at this score.")
@click.option("--smile-off", type=PROBABILITY, default=SMILE.off, show_default=True,
              help="...and ends below this score (hysteresis).")
@click.option("--smile-min", type=NON_NEGATIVE, default=SMILE.min_s, show_default=True,
              help="Shortest smile in seconds.")
@click.option("--smile-gap", type=NON_NEGATIVE, default=SMILE.gap_s, show_default=True,
              help="Smiles closer than this many seconds merge into one.")
@click.option("--episode-margin", type=PROBABILITY, default=EPISODE.margin, show_default=True,
              help="The dominant expression changes only when another one's probability leads by this much.")
@click.option("--episode-min", type=NON_NEGATIVE, default=EPISODE.min_s, show_default=True,
              help="Shortest expression episode in seconds.")
def events(tables: tuple[Path, ...], output: Path, formats: tuple[str, ...], overwrite: bool,
           kinds: tuple[str, ...], **options: float | str) -> None:
    """Blinks, smiles and expression episodes per face of TABLES (outputs of this tool, or folders of them).

    Each event has a start, end, duration, peak value and peak time (container times). Events outputs of an
    earlier run are replaced; any other existing file is left alone unless --overwrite. See docs/events.md.
    """
    from fer_annotate.outputs.event_export import EventExportError, find_tables, plan_events, run_event_job
    from fer_annotate.outputs.event_formats import is_ours
    from fer_annotate.outputs.table import TableError

    rules = EventRules(
        blink=BlinkRule(options["blink_on"], options["blink_off"], options["blink_baseline"], options["blink_min"],
                        options["blink_max"], options["blink_gap"]),
        smile=SmileRule(str(options["smile_source"]), options["smile_on"], options["smile_off"],
                        options["smile_min"], options["smile_gap"]),
        episode=EpisodeRule(options["episode_margin"], options["episode_min"]),
        kinds=kinds)
    if rules.blink.off > rules.blink.on or rules.smile.off > rules.smile.on:
        raise click.UsageError("--blink-off and --smile-off must not exceed --blink-on and --smile-on")
    paths = find_tables(list(tables))
    if not paths:
        raise click.UsageError(f"no tables (.csv, .parquet) found in {', '.join(map(str, tables))}")
    try:
        jobs = plan_events(paths, output, list(formats))
    except EventExportError as exc:
        raise click.UsageError(visible(str(exc))) from None
    taken = [job.output for job in jobs if job.output.exists() and not is_ours(job.output)]
    if taken and not overwrite:
        for path in taken:
            console.print(f"[red]error:[/] {shown(path)}: exists and is not an events output of fer-annotate "
                          "(no sidecar saying so); --overwrite to replace it", highlight=False)
        sys.exit(1)
    failed, cache = 0, {}
    for job in jobs:
        try:
            result = run_event_job(job, rules, cache)
        except (TableError, OSError) as exc:
            console.print(f"[red]error:[/] {shown(exc)}", highlight=False)
            failed += 1
            continue
        counts = ", ".join(f"{n} {kind}" for kind, n in result.counts.items() if kind not in result.skipped)
        console.print(f"[green]{shown(job.output)}[/]: {shown(counts or 'no events')}", highlight=False)
        for kind, why in result.skipped.items():
            console.print(f"  [yellow]no {kind} events:[/] {shown(why)}", highlight=False)
    if failed:
        sys.exit(1)
