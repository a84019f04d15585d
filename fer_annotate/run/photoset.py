"""A folder of photos into one table: `fer-annotate photos/ -o faces.csv` (or .parquet).

One row per face per image (a `no_face` row for an image without faces), with a `path` column relative to
the folder, in the order of the folder's sorted file names (images added while a run was stopped come
last). Resumable like a folder run: finished images are kept in parts (`.<OUT>.parts/`, beside the
output: CSV chunks of PART_IMAGES images, each followed by its manifest, which marks it done); a run
stopped midway continues where it stopped, and the table and then its sidecar appear only when every
image is done, so nothing partial ever looks complete. Parts made with other settings, or from images
since removed or changed, are discarded. An image that cannot be read is listed in the sidecar
(`failed`) and the others go on.

An existing output is treated as a video's (`run.resume`): the complete table of these images with these
settings is kept; ours but of other images is redone; ours with other settings, or a file that is not
ours, is refused unless `overwrite`. Face crops (`--save-crops`) inside the folder are never inputs.
"""

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fer_annotate.media.still import is_image
from fer_annotate.media.video import find_videos
from fer_annotate.outputs.names import short_stem
from fer_annotate.outputs.output import sidecar_path, temp_name, write_sidecar
from fer_annotate.run.lock import OutputLock
from fer_annotate.run.own_outputs import drop_own_outputs
from fer_annotate.run.pipeline import Annotator
from fer_annotate.run.resume import TOOL
from fer_annotate.run.settings import SIDECAR_KEY, differing

PART_IMAGES = 128
TABLE_SUFFIXES = {".csv": "csv", ".parquet": "parquet"}


class PhotoSetError(ValueError):
    """A photo set that cannot be run (videos in the folder, no images, an output that is not a table file
    or is refused); one line."""


@dataclass
class PhotoSetReport:
    """How a photo set went: images annotated now, taken from earlier parts, failed (path, message)."""

    output: Path
    images: int = 0
    annotated: int = 0
    resumed: int = 0
    rows: int = 0
    skipped: bool = False
    failed: list[tuple[str, str]] = field(default_factory=list)


def is_photo_set(inputs: list[Path], output: Path) -> bool:
    """Whether a run is a photo set: one folder in, and -o a table file name (.csv, .parquet)."""
    return (len(inputs) == 1 and inputs[0].is_dir() and output.suffix.lower() in TABLE_SUFFIXES
            and not output.is_dir())


def photo_format(output: Path, fmt: str | None) -> str:
    """The table format of a photo set: its file's suffix (a contradicting --format is an error)."""
    implied = TABLE_SUFFIXES.get(output.suffix.lower())
    if implied is None:
        raise PhotoSetError(f"-o {output}: one table for a folder of photos is a .csv or .parquet file")
    if fmt is not None and fmt != implied:
        raise PhotoSetError(f"-o {output} is a {implied} file name but --format is {fmt}")
    return implied


def find_photos(folder: Path, crops: Path | None = None) -> list[Path]:
    """The images under `folder` (recursively, sorted; our face crops and `crops` left out); a video there
    is an error."""
    media = drop_own_outputs(find_videos(folder), folder, [crops])
    videos = [p for p in media if not is_image(p)]
    if videos:
        raise PhotoSetError(f"one table for a folder holds photos, but {videos[0]} is a video ({len(videos)} "
                            f"in {folder}); give an output folder to annotate videos")
    if not media:
        raise PhotoSetError(f"{folder}: no images found")
    return media


def stamps(folder: Path, photos: list[Path]) -> dict[str, list[int]]:
    """Each image's path relative to the folder -> [size, modification time in ns], in order."""
    out = {}
    for p in photos:
        stat = p.stat()
        out[p.relative_to(folder).as_posix()] = [stat.st_size, stat.st_mtime_ns]
    return out


def listing(folder: Path, stamped: dict[str, list[int]]) -> dict:
    """What identifies the set for resuming: the folder, the count, a digest of names, sizes and times."""
    digest = hashlib.sha256()
    for name, (size, mtime) in stamped.items():
        digest.update(f"{name}\0{size}\0{mtime}\n".encode())
    return {"path": str(folder.resolve()), "images": len(stamped), "sha256_listing": digest.hexdigest()}


def parts_dir(output: Path) -> Path:
    """Where the finished chunks of an unfinished photo set are kept."""
    return output.with_name(f".{short_stem(output.name)}.parts")


def existing(output: Path, source: dict, settings: dict) -> str:
    """What is at `output` before a run: `absent`, `complete` (these images, these settings: keep), `stale`
    (ours, of other images: redo), or the one-line reason to leave it alone."""
    if not output.exists() and not output.is_symlink():
        return "absent"
    try:
        meta = json.loads(sidecar_path(output).read_text())
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict) or meta.get("tool") != TOOL or meta.get("complete") is not True:
        return (f"{output}: exists without a complete fer-annotate sidecar ({sidecar_path(output).name}), so it "
                "is not ours or was left by an interrupted run; --overwrite to replace it")
    if meta.get("source") != source:
        return "stale"
    differ = differing(meta.get(SIDECAR_KEY), settings)
    return f"{output}: exists with other settings: {', '.join(differ)}; --overwrite to redo" if differ else "complete"


def _atomic_text(path: Path, text: str) -> None:
    temp = temp_name(path)
    temp.write_text(text)
    os.replace(temp, path)


class PhotoSet:
    """One run of a photo set (see the module docstring)."""

    def __init__(self, annotator: Annotator, folder: Path, output: Path, fmt: str):
        self.annotator, self.folder, self.output, self.fmt = annotator, folder, output, fmt
        self.columns = ["path", *annotator.schema().columns]
        self.parts = parts_dir(output)

    def run(self, overwrite: bool = False, on_images: Callable[[int, int], None] | None = None,
            arguments: dict | None = None) -> PhotoSetReport:
        """Annotate the images not yet done, then assemble the table and its sidecar."""
        photos = find_photos(self.folder, self.annotator.config.save_crops)
        stamped = stamps(self.folder, photos)
        source = listing(self.folder, stamped)
        report = PhotoSetReport(self.output, images=len(photos))
        found = existing(self.output, source, self.annotator.settings())
        if not overwrite and found == "complete":
            report.skipped = True
            return report
        if not overwrite and found not in ("absent", "stale"):
            raise PhotoSetError(found)
        with OutputLock(self.output):
            sidecar_path(self.output).unlink(missing_ok=True)
            done = self._done_parts(overwrite, stamped)
            report.resumed = sum(len(m["images"]) for m in done)
            finished = {name for m in done for name in m["images"]}
            todo = [p for p in photos if p.relative_to(self.folder).as_posix() not in finished]
            for start in range(0, len(todo), PART_IMAGES):
                chunk = todo[start : start + PART_IMAGES]
                self._write_part(len(done), chunk, stamped, report, on_images)
                done = self._done_parts(False, stamped)
            report.failed = [tuple(f) for m in done for f in m["failed"]]
            report.rows = self._assemble(done)
            write_sidecar(self.output, self._metadata(source, report, arguments))
            shutil.rmtree(self.parts)
        return report

    def _done_parts(self, overwrite: bool, stamped: dict[str, list[int]]) -> list[dict]:
        """Manifests of the finished parts, when they were made with these settings from these very images
        (an image since removed or changed discards them all: the table must be of the folder as it is)."""
        settings = {**self.annotator.settings(), "columns": self.columns}
        stamp = self.parts / "settings.json"
        manifests = []
        if self.parts.is_dir() and not overwrite and stamp.is_file() and json.loads(stamp.read_text()) == settings:
            manifests = [json.loads(m.read_text()) for m in sorted(self.parts.glob("part-*.json"))]
            if any(stamped.get(name) != st for m in manifests for name, st in m["images"].items()):
                manifests = []
        if not manifests and self.parts.is_dir():
            shutil.rmtree(self.parts)
        if not self.parts.is_dir():
            self.parts.mkdir(parents=True)
            _atomic_text(stamp, json.dumps(settings))
        return manifests

    def _write_part(self, index: int, chunk: list[Path], stamped: dict[str, list[int]], report: PhotoSetReport,
                    on_images: Callable[[int, int], None] | None) -> None:
        import pandas as pd

        from fer_annotate.media.still import StillError
        from fer_annotate.media.video import VideoError

        rows: list[dict] = []
        failed: list[tuple[str, str]] = []
        for photo in chunk:
            name = photo.relative_to(self.folder).as_posix()
            try:
                rows += [{"path": name, **row} for row in self.annotator.rows(photo)]
            except (VideoError, StillError, OSError, ValueError) as exc:
                failed.append((name, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__))
            report.annotated += 1
            if on_images is not None:
                on_images(report.resumed + report.annotated, report.images)
        schema = self.annotator.schema()
        df = pd.DataFrame.from_records(rows, columns=self.columns)
        types = {**dict.fromkeys(schema.integer_columns, "Int64"), **dict.fromkeys(schema.extra, "float64")}
        table = self.parts / f"part-{index:06d}.csv"
        temp = temp_name(table)
        df.astype(types).to_csv(temp, index=False, float_format="%.6g")
        os.replace(temp, table)
        names = [p.relative_to(self.folder).as_posix() for p in chunk]
        manifest = {"table": table.name, "images": {name: stamped[name] for name in names}, "failed": failed}
        _atomic_text(self.parts / f"part-{index:06d}.json", json.dumps(manifest))

    def _assemble(self, done: list[dict]) -> int:
        """The parts, in order, into the output (atomically); returns the row count."""
        import pandas as pd

        from fer_annotate.outputs.table import load_table

        tables = [self.parts / m["table"] for m in done]
        temp = temp_name(self.output)
        try:
            if self.fmt == "csv":
                rows = 0
                with open(temp, "w", encoding="utf-8") as out:
                    out.write(",".join(self.columns) + "\n")
                    for table in tables:
                        with open(table, encoding="utf-8") as part:
                            part.readline()
                            for line in part:
                                out.write(line)
                                rows += 1
            else:
                df = pd.concat([load_table(t) for t in tables], ignore_index=True)
                df.to_parquet(temp, index=False)
                rows = len(df)
            os.replace(temp, self.output)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return rows

    def _metadata(self, source: dict, report: PhotoSetReport, arguments: dict | None) -> dict:
        from dataclasses import asdict

        annotator = self.annotator
        return {"complete": True, "tool": TOOL, "kind": "photo set", "source": source,
                SIDECAR_KEY: annotator.settings(), "arguments": arguments or {},
                "config": json.loads(json.dumps(asdict(annotator.config), default=str)),
                "model": annotator.model.describe() if annotator.model is not None else None,
                "geometry": annotator.geometry.describe() if annotator.geometry is not None else None,
                "columns": self.columns, "images": report.images, "rows": report.rows,
                "frames": {"rows": report.rows},
                "failed": [{"path": p, "error": e} for p, e in report.failed]}
