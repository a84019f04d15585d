"""`fer-annotate events`: find the events of annotation tables and write them in the formats asked for.

-o names a file (its suffix gives the format: .csv, .parquet, .eaf, .srt, .boris.csv) or a folder. A file
takes one table, or several for CSV/Parquet (one table of all their events, with a `video` column). In a
folder each table gets `<table name without .csv/.parquet>.events.<format suffix>` per format.
"""

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fer_annotate.outputs.event_formats import EVENT_FORMATS, SUFFIXES, format_of, write_events
from fer_annotate.outputs.events import EventRules, find_events, missing
from fer_annotate.outputs.table import TABLE_SUFFIXES, TableError, read_table


class EventExportError(Exception):
    """Inputs, output and formats that do not fit together; one line."""


@dataclass
class EventJob:
    """Tables whose events go into one output file of one format."""

    tables: list[Path]
    output: Path
    fmt: str


@dataclass
class EventResult:
    """What one output got: events per kind, and the kinds a table could not give (why)."""

    job: EventJob
    counts: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def find_tables(items: list[Path]) -> list[tuple[Path, Path]]:
    """(table, folder of its output relative to -o) for the table files given (`.`) and those in folders
    (recursively; their relative folder), leaving out hidden files and event outputs."""
    found: list[tuple[Path, Path]] = []
    for item in items:
        if item.is_dir():
            found += [(p, p.parent.relative_to(item)) for p in sorted(item.rglob("*"))
                      if p.suffix.lower() in TABLE_SUFFIXES and not p.name.startswith(".")
                      and ".events." not in p.name and not p.name.lower().endswith(SUFFIXES["boris"])]
        else:
            found.append((item, Path(".")))
    return found


def events_name(table: Path, fmt: str) -> str:
    """A table's events file name in an output folder: `clip.mp4.csv` -> `clip.mp4.events.eaf`."""
    stem = table.name
    for suffix in TABLE_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    return f"{stem}.events{SUFFIXES[fmt]}"


def plan_events(tables: list[tuple[Path, Path]], output: Path, formats: list[str]) -> list[EventJob]:
    """Map tables (from `find_tables`) to output files (see the module docstring)."""
    for fmt in formats:
        if fmt not in EVENT_FORMATS:
            raise EventExportError(f"unknown events format {fmt!r}; use {', '.join(EVENT_FORMATS)}")
    implied = None if output.is_dir() else format_of(output)
    if implied is not None:
        if formats and formats != [implied]:
            raise EventExportError(f"-o {output} is a {implied} file name but --format asks for {', '.join(formats)}")
        if len(tables) > 1 and implied not in ("csv", "parquet"):
            raise EventExportError(f"-o {output}: {implied} holds one video's events; give a folder for "
                                   f"{len(tables)} tables")
        return [EventJob([table for table, _ in tables], output, implied)]
    if output.suffix and not output.is_dir():
        raise EventExportError(f"-o {output}: a file output must end in .csv, .parquet, .eaf, .srt or .boris.csv "
                               "(the suffix decides the format), or name a folder")
    jobs: list[EventJob] = []
    seen: dict[Path, Path] = {}
    for table, folder in tables:
        for fmt in formats or ["csv"]:
            target = output / folder / events_name(table, fmt)
            if seen.setdefault(target, table) != table:
                raise EventExportError(f"{seen[target]} and {table} would both write {target}; give their common "
                                       "folder instead, or run them separately")
            jobs.append(EventJob([table], target, fmt))
    return jobs


def _media(meta: dict) -> tuple[str | None, dict]:
    """The annotated video's path and (duration_s, avg_fps) from a table's sidecar."""
    source = meta.get("source") or {}
    info = meta.get("video") or {}
    return source.get("path"), {k: info[k] for k in ("duration_s", "avg_fps") if k in info}


def run_event_job(job: EventJob, rules: EventRules, cache: dict | None = None) -> EventResult:
    """Read the job's tables (TableError for a bad one), find their events, write the output atomically.

    `cache` (a dict kept across the jobs of a run) keeps each table's events for its other formats.
    """
    cache = {} if cache is None else cache
    result = EventResult(job)
    frames, inputs = [], []
    media, info = None, {}
    for table in job.tables:
        if table not in cache:
            cache.clear()  # the jobs of one table follow each other: keep one table's events at a time
            df = read_table(table)
            if "path" in df.columns:
                raise TableError(f"{table}: a table of photos (one frame per image) has no events over time")
            cache[table] = (find_events(df, rules), missing(list(df.columns), rules), _media(df.attrs))
        events, why_not, (media, info) = cache[table]
        for kind, why in why_not.items():
            result.skipped.setdefault(kind, f"{table}: {why}")
        frames.append(events)
        inputs.append({"table": str(table), "video": media})
    events = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    result.counts = {kind: int((events["kind"] == kind).sum()) for kind in rules.kinds}
    meta = {"rules": rules.describe(), "inputs": inputs, "counts": result.counts, "not_found": result.skipped,
            "media": media if len(job.tables) == 1 else None, "media_info": info}
    write_events(events, job.output, job.fmt, meta)
    return result
