"""Write an events table (`events.find_events`) as CSV, Parquet, ELAN .eaf, BORIS tabular events or SRT.

Every writer writes a temporary file beside the destination and renames it into place, so an interrupted
run never leaves a file that looks complete. The rules that found the events go with every format: in the
JSON sidecar (`OUT.json`, written last) of all of them, and in the .eaf header as well.

ELAN (EAF 3.0): one tier per face and kind (`face 0 blink`, `face 0 smile`, `face 0 expression`), linked to
the video the table was made from (absolute and relative URL). BORIS: its tabular events export (one START
and one STOP row per state event; subject `face N`, behaviour = the label, category = the kind), which
BORIS-based pipelines read. SRT: one cue per event, for a quick look in any player.
"""

import json
import mimetypes
import os
import time
from pathlib import Path
from xml.etree import ElementTree as ET

import pandas as pd

from fer_annotate.outputs.output import sidecar_path, temp_name

EVENT_FORMATS = ("csv", "parquet", "eaf", "boris", "srt")
TOOL = "fer-annotate events"
SUFFIXES = {"csv": ".csv", "parquet": ".parquet", "eaf": ".eaf", "boris": ".boris.csv", "srt": ".srt"}
BORIS_COLUMNS = ["Observation id", "Observation date", "Description", "Observation duration", "Observation type",
                 "Source", "Time offset (s)", "Media duration (s)", "FPS", "Subject", "Behavior",
                 "Behavioral category", "Behavior type", "Time", "Media file name", "Image index",
                 "Image file path", "Comment"]


def format_of(path: Path) -> str | None:
    """The events format a file name implies (`.boris.csv` before `.csv`), or None."""
    name = path.name.lower()
    for fmt in ("boris", "csv", "parquet", "eaf", "srt"):
        if name.endswith(SUFFIXES[fmt]):
            return fmt
    return None


def is_ours(path: Path) -> bool:
    """Whether an existing file is an events output of this tool (its sidecar says so): only those are
    replaced without --overwrite, never an annotation table or a file of the user's."""
    try:
        meta = json.loads(sidecar_path(Path(path)).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("tool") == TOOL


def _atomic(path: Path, write) -> None:
    """Call write(temp) and move the temporary file into place; remove it on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_name(path)
    try:
        write(temp)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_events(events: pd.DataFrame, path: Path, fmt: str, meta: dict) -> None:
    """Write `events` as `fmt` to `path`, then the sidecar `path.json` with `meta` (rules, inputs, counts).

    `meta["media"]` (the video's path, may be None) links .eaf files to the video; `meta["media_info"]`
    (duration_s, avg_fps) fills BORIS's media columns.
    """
    path = Path(path)
    side = sidecar_path(path)
    side.unlink(missing_ok=True)
    writers = {"csv": _csv, "parquet": _parquet, "eaf": _eaf, "boris": _boris, "srt": _srt}
    if fmt not in writers:
        raise ValueError(f"unknown events format {fmt!r}; use {', '.join(EVENT_FORMATS)}")
    _atomic(path, lambda temp: writers[fmt](events, temp, path, meta))
    record = {"complete": True, "tool": TOOL, "format": fmt, "events": int(len(events)),
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **meta}
    _atomic(side, lambda temp: temp.write_text(json.dumps(record, indent=2, default=str) + "\n"))


def _csv(events: pd.DataFrame, temp: Path, target: Path, meta: dict) -> None:
    events.to_csv(temp, index=False, float_format="%.6g")


def _parquet(events: pd.DataFrame, temp: Path, target: Path, meta: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(events, preserve_index=False)
    rules = json.dumps(meta.get("rules", {}))
    pq.write_table(table.replace_schema_metadata({**(table.schema.metadata or {}), b"fer_annotate.rules":
                                                  rules.encode()}), temp)


def tier_name(face_id: int, kind: str) -> str:
    """The ELAN tier of a face and kind of event."""
    return f"face {face_id} {kind}"


def eaf_document(events: pd.DataFrame, media: str | None, target: Path, rules: dict) -> ET.ElementTree:
    """An EAF 3.0 document: header (media link, the rules as properties), time slots, one tier per face
    and kind, the linguistic type and the standard constraints."""
    root = ET.Element("ANNOTATION_DOCUMENT", {
        "AUTHOR": "fer-annotate", "DATE": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        "FORMAT": "3.0", "VERSION": "3.0", "xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance",
        "xsi:noNamespaceSchemaLocation": "http://www.mpi.nl/tools/elan/EAFv3.0.xsd"})
    header = ET.SubElement(root, "HEADER", {"MEDIA_FILE": "", "TIME_UNITS": "milliseconds"})
    if media:
        video = Path(media)
        descriptor = {"MEDIA_URL": video.resolve().as_uri(),
                      "MIME_TYPE": mimetypes.guess_type(video.name)[0] or "video/*"}
        try:
            descriptor["RELATIVE_MEDIA_URL"] = "./" + Path(os.path.relpath(video.resolve(),
                                                                           target.resolve().parent)).as_posix()
        except ValueError:  # another drive (Windows): no relative link
            pass
        ET.SubElement(header, "MEDIA_DESCRIPTOR", descriptor)
    ET.SubElement(header, "PROPERTY", {"NAME": "fer-annotate:rules"}).text = json.dumps(rules)
    ET.SubElement(header, "PROPERTY", {"NAME": "lastUsedAnnotationId"}).text = str(len(events))
    order = ET.SubElement(root, "TIME_ORDER")
    tiers: dict[str, ET.Element] = {}
    for face_id, kind in sorted({(int(f), str(k)) for f, k in zip(events["face_id"], events["kind"], strict=True)}):
        name = tier_name(face_id, kind)
        tiers[name] = ET.SubElement(root, "TIER", {"LINGUISTIC_TYPE_REF": "default-lt", "TIER_ID": name})
    for n, row in enumerate(events.itertuples(index=False), start=1):
        start, end = round(row.start_s * 1000), round(row.end_s * 1000)
        ET.SubElement(order, "TIME_SLOT", {"TIME_SLOT_ID": f"ts{2 * n - 1}", "TIME_VALUE": str(start)})
        ET.SubElement(order, "TIME_SLOT", {"TIME_SLOT_ID": f"ts{2 * n}", "TIME_VALUE": str(max(end, start + 1))})
        annotation = ET.SubElement(tiers[tier_name(int(row.face_id), row.kind)], "ANNOTATION")
        alignable = ET.SubElement(annotation, "ALIGNABLE_ANNOTATION", {
            "ANNOTATION_ID": f"a{n}", "TIME_SLOT_REF1": f"ts{2 * n - 1}", "TIME_SLOT_REF2": f"ts{2 * n}"})
        ET.SubElement(alignable, "ANNOTATION_VALUE").text = str(row.label)
    ET.SubElement(root, "LINGUISTIC_TYPE", {"GRAPHIC_REFERENCES": "false", "LINGUISTIC_TYPE_ID": "default-lt",
                                            "TIME_ALIGNABLE": "true"})
    for stereotype, description in (
        ("Time_Subdivision", "Time subdivision of parent annotation's time interval, no time gaps allowed within "
                             "this interval"),
        ("Symbolic_Subdivision", "Symbolic subdivision of a parent annotation. Annotations refering to the same "
                                 "parent are ordered"),
        ("Symbolic_Association", "1-1 association with a parent annotation"),
        ("Included_In", "Time alignable annotations within the parent annotation's time interval, gaps are "
                        "allowed"),
    ):
        ET.SubElement(root, "CONSTRAINT", {"DESCRIPTION": description, "STEREOTYPE": stereotype})
    ET.indent(root)
    return ET.ElementTree(root)


def _eaf(events: pd.DataFrame, temp: Path, target: Path, meta: dict) -> None:
    document = eaf_document(events, meta.get("media"), target, meta.get("rules", {}))
    document.write(temp, encoding="UTF-8", xml_declaration=True)


def _boris(events: pd.DataFrame, temp: Path, target: Path, meta: dict) -> None:
    media = meta.get("media") or ""
    info = meta.get("media_info") or {}
    base = {
        "Observation id": Path(media).stem if media else str(events["video"].iloc[0]) if len(events) else "",
        "Observation date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "Description": "fer-annotate events",
        "Observation duration": info.get("duration_s", ""),
        "Observation type": "Media file",
        "Source": f"player #1:{media}",
        "Time offset (s)": 0,
        "Media duration (s)": info.get("duration_s", ""),
        "FPS": info.get("avg_fps", ""),
        "Media file name": media,
        "Image file path": "NA",
    }
    rows = []
    for row in events.itertuples(index=False):
        common = {**base, "Subject": f"face {int(row.face_id)}", "Behavior": row.label,
                  "Behavioral category": row.kind, "Comment": f"peak {row.peak:.3f} at {row.peak_s:.3f} s"}
        rows.append({**common, "Behavior type": "START", "Time": row.start_s, "Image index": row.start_frame})
        rows.append({**common, "Behavior type": "STOP", "Time": row.end_s, "Image index": row.end_frame})
    table = pd.DataFrame(rows, columns=BORIS_COLUMNS)
    table = table.sort_values("Time", kind="stable") if len(table) else table
    table.to_csv(temp, index=False, float_format="%.3f")


def srt_time(seconds: float) -> str:
    """SubRip time: HH:MM:SS,mmm."""
    ms = max(0, round(seconds * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def _srt(events: pd.DataFrame, temp: Path, target: Path, meta: dict) -> None:
    cues = []
    for n, row in enumerate(events.sort_values(["start_s", "face_id"], kind="stable").itertuples(index=False), 1):
        text = f"face {int(row.face_id)}: {row.label}" + (f" ({row.kind})" if row.kind == "expression" else "")
        cues.append(f"{n}\n{srt_time(row.start_s)} --> {srt_time(row.end_s)}\n{text}\n")
    temp.write_text("\n".join(cues), encoding="utf-8")
