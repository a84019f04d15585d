"""Write the per-frame table: CSV, Parquet or ABAW challenge files, always atomically, plus a JSON sidecar.

Every writer writes into temporary files next to the destination and renames them into place only when
the whole video is done, so an interrupted or failed run never leaves output that looks complete. The
sidecar (`OUT.json`) is written last and is the mark of a complete result.
"""

import hashlib
import json
import os
import re
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

# The table's columns are defined with the model stage that names its cells by them; kept importable from here.
from fer_annotate.models.columns import IDENTITY_COLUMNS as IDENTITY_COLUMNS
from fer_annotate.models.columns import TableSchema, au_column
from fer_annotate.outputs.names import short_stem

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("csv", "parquet", "abaw")
EXPR_ABAW_HEADER = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise"


def output_suffix(fmt: str) -> str:
    """The suffix of a format's output in a folder run; ABAW output is a folder named `<video>.abaw`."""
    return {"csv": ".csv", "parquet": ".parquet", "abaw": ".abaw"}[fmt]


def temp_name(path: Path) -> Path:
    """A fresh hidden temporary name beside `path`: `.NAME.<pid>-<random>.partial` (NAME shortened when long,
    see names.short_stem, so that it fits wherever `path` does)."""
    return path.with_name(f".{short_stem(path.name)}.{os.getpid()}-{secrets.token_hex(4)}.partial")


def stale_temps(path: Path) -> list[Path]:
    """Temporary files and folders of `path` and of its sidecar left by earlier runs (e.g. after kill -9)."""
    if not path.parent.is_dir():
        return []
    names = "|".join(re.escape(short_stem(p.name)) for p in (path, sidecar_path(path)))
    pattern = re.compile(rf"\.({names})\.\d+-[0-9a-f]{{8}}\.partial")
    return sorted(p for p in path.parent.iterdir() if pattern.fullmatch(p.name))


def remove_path(path: Path) -> None:
    """Remove a file or a folder tree."""
    if path.is_dir() and not path.is_symlink():
        _remove_tree(path)
    else:
        path.unlink(missing_ok=True)


def _temp_beside(path: Path) -> Path:
    """Create an empty temporary file beside `path`, with the permissions the umask gives (not 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_name(path)
    os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return temp


def _temp_folder_beside(path: Path) -> Path:
    """Create an empty temporary folder beside `path` (permissions from the umask)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_name(path)
    temp.mkdir(0o777)
    return temp


class WriteError(OSError):
    """An output that could not be written (a full disk, a read-only folder); the message names the file."""


@contextmanager
def writing(path: Path):
    """Turn a file system error while writing `path` into a WriteError naming `path` (not a temporary name)."""
    try:
        yield
    except WriteError:
        raise
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise WriteError(f"{path}: cannot be written ({reason}); nothing of it is kept") from None


class TableWriter:
    """Streams row chunks into a temporary file; `commit` renames it into place, `abort` removes it."""

    def __init__(self, path: Path, schema: TableSchema, fmt: str, video_name: str, n_frames: int):
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}")
        self.path, self.schema, self.fmt = Path(path), schema, fmt
        self.video_name, self.n_frames = video_name, n_frames
        self.rows = 0
        self._parquet = None
        self._abaw: dict[int, dict[str, np.ndarray]] = {}
        self._temp = None
        with writing(self.path):
            self._temp = None if fmt == "abaw" else _temp_beside(self.path)
            if fmt == "csv":
                import pandas as pd  # imported when first needed: it adds ~0.3 s to every start-up

                try:
                    pd.DataFrame(columns=schema.columns).to_csv(self._temp, index=False)
                except BaseException:
                    self.abort()
                    raise

    def write(self, rows: list[dict]) -> None:
        """Append rows (dicts keyed by column; missing keys are empty cells); WriteError when the disk is full."""
        if not rows:
            return
        with writing(self.path):
            self._write(rows)

    def _write(self, rows: list[dict]) -> None:
        import pandas as pd

        df = pd.DataFrame.from_records(rows, columns=self.schema.columns)
        types = {**dict.fromkeys(self.schema.integer_columns, "Int64"), **dict.fromkeys(self.schema.extra, "float64")}
        df = df.astype(types)
        self.rows += len(df)
        if self.fmt == "csv":
            df.to_csv(self._temp, mode="a", header=False, index=False, float_format="%.6g")
        elif self.fmt == "parquet":
            self._write_parquet(df)
        else:
            self._collect_abaw(df)

    def _write_parquet(self, df: "pd.DataFrame") -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(df, preserve_index=False)
        if self._parquet is None:
            self._schema = table.schema
            self._parquet = pq.ParquetWriter(self._temp, self._schema)
        self._parquet.write_table(table.cast(self._schema))

    def _collect_abaw(self, df: "pd.DataFrame") -> None:
        s = self.schema
        au_cols = [au_column(a) for a in s.au_names]
        for row in df[df["status"] == "ok"].itertuples(index=False):
            rec = row._asdict()
            face = self._abaw.setdefault(int(rec["face_id"]), self._empty_abaw())
            f = int(rec["frame"])
            if au_cols:
                face["AU"][f] = [rec[c] for c in au_cols]
            if s.expr_names:
                face["EXPR"][f] = s.expr_names.index(rec["expression"])
            if s.has_va:
                face["VA"][f] = [rec["valence"], rec["arousal"]]

    def _empty_abaw(self) -> dict[str, np.ndarray]:
        n = self.n_frames
        return {
            "AU": np.full((n, len(self.schema.au_names)), -1, dtype=np.int64),
            "EXPR": np.full(n, -1, dtype=np.int64),
            "VA": np.full((n, 2), -5.0),
        }

    def _write_abaw(self, folder: Path) -> None:
        """ABAW files: header, then one line per video frame; -1 (AU, EXPR) / -5 (VA) where no face."""
        s = self.schema
        faces = self._abaw or {0: self._empty_abaw()}
        for face_id, arrays in sorted(faces.items()):
            stem = self.video_name if len(faces) == 1 else f"{self.video_name}_face{face_id}"
            if s.au_names:
                header = ",".join(s.au_names)
                lines = [",".join(str(int(v)) for v in r) for r in arrays["AU"]]
                (folder / "AU_Set").mkdir(exist_ok=True)
                (folder / "AU_Set" / f"{stem}.txt").write_text("\n".join([header, *lines]) + "\n")
            if s.expr_names:
                lines = [str(int(v)) for v in arrays["EXPR"]]
                (folder / "EXPR_Set").mkdir(exist_ok=True)
                (folder / "EXPR_Set" / f"{stem}.txt").write_text("\n".join([EXPR_ABAW_HEADER, *lines]) + "\n")
            if s.has_va:
                lines = [f"{v:.6g},{a:.6g}" if v > -5 else "-5,-5" for v, a in arrays["VA"]]
                (folder / "VA_Set").mkdir(exist_ok=True)
                (folder / "VA_Set" / f"{stem}.txt").write_text("\n".join(["valence,arousal", *lines]) + "\n")

    def set_person_ids(self, persons: dict[int, int]) -> None:
        """Fill the person_id column from face_id (known only once the video is done), before `commit`.

        The temporary table is rewritten into a second temporary file: CSV line by line (the other cells
        keep their exact text), Parquet batch by batch. ABAW files have no person column."""
        if self.fmt == "abaw" or self.rows == 0:
            return
        from fer_annotate.outputs.persons import fill_csv, fill_parquet

        target = _temp_beside(self.path)
        try:
            if self.fmt == "csv":
                fill_csv(self._temp, target, persons)
            else:
                self._parquet.close()
                self._parquet = None
                fill_parquet(self._temp, target, persons)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        self._temp.unlink(missing_ok=True)
        self._temp = target

    def commit(self) -> None:
        """Move the finished output into place; WriteError (and nothing left behind) when it cannot be written."""
        with writing(self.path):
            self._commit()

    def _commit(self) -> None:
        if self.fmt == "abaw":
            staging = _temp_folder_beside(self.path)
            try:
                self._write_abaw(staging)
            except BaseException:
                _remove_tree(staging)
                raise
            if self.path.exists():
                _remove_tree(self.path)
            os.replace(staging, self.path)
            return
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        elif self.fmt == "parquet" and self.rows == 0:
            import pandas as pd
            import pyarrow as pa
            import pyarrow.parquet as pq

            empty = pd.DataFrame(columns=self.schema.columns)
            pq.write_table(pa.Table.from_pandas(empty, preserve_index=False), self._temp)
        os.replace(self._temp, self.path)

    def abort(self) -> None:
        """Remove the temporary output of a failed run."""
        if self._parquet is not None:
            try:
                self._parquet.close()
            except OSError:  # the disk is full: the file goes anyway
                pass
            self._parquet = None
        if self._temp is not None:
            self._temp.unlink(missing_ok=True)


def _remove_tree(path: Path) -> None:
    for child in sorted(path.rglob("*"), key=lambda p: -len(p.parts)):
        child.rmdir() if child.is_dir() else child.unlink()
    path.rmdir()


def sidecar_path(output: Path) -> Path:
    """Where the JSON sidecar of an output goes."""
    return output.with_name(output.name + ".json")


def write_sidecar(output: Path, meta: dict) -> None:
    """Write the sidecar atomically; it is written last and marks the output as complete."""
    path = sidecar_path(output)
    with writing(path):
        temp = _temp_beside(path)
        try:
            temp.write_text(json.dumps(meta, indent=2, default=str) + "\n")
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise


HEAD_BYTES = 1 << 20


def source_record(video: Path) -> dict:
    """What identifies a video's content for resuming: path, size, modification time, SHA-256 of its first MiB."""
    stat = video.stat()
    with open(video, "rb") as f:
        head = hashlib.sha256(f.read(HEAD_BYTES)).hexdigest()
    return {"path": str(video.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256_head": head}


def is_complete(output: Path, video: Path) -> bool:
    """Whether `output` is a finished result of this very `video`: its sidecar marks it complete and records
    a source of the same size, modification time and head hash (a replaced or edited video is redone)."""
    side = sidecar_path(output)
    if not output.exists() or not side.is_file():
        return False
    try:
        meta = json.loads(side.read_text())
        source = meta.get("source") or {}
        if not meta.get("complete"):
            return False
        now = source_record(video)
    except (OSError, ValueError, AttributeError):
        return False
    return all(source.get(k) == now[k] for k in ("size", "mtime_ns", "sha256_head"))
