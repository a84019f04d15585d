"""Read an output table back (CSV or Parquet) with the right dtypes, and its sidecar.

Integers that may be missing (frame, face_id, the 0/1 AU decisions) come back as nullable Int64,
labels (video, status, expression) as categories, everything else as floats. Columns added by other
stages (pose_*, bs_* blendshapes, ...) are kept as they are. An output is read only when its sidecar
says it is complete: a table without one is partial or was not written by this tool.
"""

import json
from pathlib import Path

import pandas as pd

from fer_annotate.outputs.output import sidecar_path

CATEGORY_COLUMNS = ("video", "status", "expression")
INTEGER_COLUMNS = ("frame", "face_id", "person_id")
TABLE_SUFFIXES = (".csv", ".parquet")
STATUSES = ("ok", "no_face")


class TableError(Exception):
    """An output that cannot be read back; the message is one line naming the file."""


def read_sidecar(path: Path) -> dict:
    """The sidecar of an output, checked to mark it complete."""
    path = Path(path)
    side = sidecar_path(path)
    if not path.is_file():
        raise TableError(f"{path}: no such file")
    if not side.is_file():
        raise TableError(f"{path}: no sidecar {side.name} next to it, so the output is incomplete or not ours")
    try:
        meta = json.loads(side.read_text())
    except (OSError, ValueError) as exc:
        raise TableError(f"{side}: unreadable sidecar ({exc})") from None
    if not isinstance(meta, dict) or not meta.get("complete"):
        raise TableError(f"{path}: its sidecar {side.name} says the output is incomplete (rerun the annotation)")
    return meta


def decision_columns(columns: list[str]) -> list[str]:
    """The 0/1 AU decision columns: every `X` that has an `X_prob` next to it."""
    names = set(columns)
    return [c for c in columns if f"{c}_prob" in names]


def expression_names(columns: list[str]) -> list[str]:
    """Expression labels in table order, from the `expr_<name>` columns (not `expr_std`)."""
    return [c.removeprefix("expr_") for c in columns if c.startswith("expr_") and c != "expr_std"]


def au_names(columns: list[str]) -> list[str]:
    """AU column names (`AU01`, ...) in table order."""
    return decision_columns(columns)


def load_table(path: Path) -> pd.DataFrame:
    """A CSV or Parquet table as this tool writes it, with its dtypes; no sidecar check (see read_table)."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            header = list(pd.read_csv(path, nrows=0).columns)
            text = {c: str for c in CATEGORY_COLUMNS if c in header}
            df = pd.read_csv(path, dtype=text, keep_default_na=True)
        elif suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            raise TableError(f"{path}: not a table this tool writes (expected .csv or .parquet)")
    except (OSError, ValueError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TableError(f"{path}: cannot read the table ({first})") from None
    missing = [c for c in ("frame", "time_s", "status") if c not in df.columns]
    if missing:
        raise TableError(f"{path}: not an annotation table (no column {', '.join(missing)})")
    return _typed(df)


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    columns = list(df.columns)
    dtypes: dict[str, object] = {}
    for c in [*INTEGER_COLUMNS, *decision_columns(columns)]:
        if c in df.columns:
            dtypes[c] = "Int64"
    for c in CATEGORY_COLUMNS:
        if c in df.columns:
            dtypes[c] = "category"
    df = df.astype(dtypes)
    names = expression_names(columns)
    if "expression" in df.columns and names and set(df["expression"].dropna().unique()) <= set(names):
        df["expression"] = df["expression"].cat.set_categories(names)
    if "status" in df.columns:
        extra = [s for s in df["status"].cat.categories if s not in STATUSES]
        df["status"] = df["status"].cat.set_categories([*STATUSES, *extra])
    for c in columns:
        if c not in dtypes and df[c].dtype != "float64" and pd.api.types.is_numeric_dtype(df[c]):
            df[c] = df[c].astype("float64")
    return df


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a complete output (CSV or Parquet) with its dtypes; the sidecar's metadata goes in `df.attrs`.

    Refuses (TableError, one line naming the file) an output whose sidecar is missing or not complete, or
    whose rows are not as many as the sidecar records.
    """
    path = Path(path)
    meta = read_sidecar(path)
    df = load_table(path)
    check_rows(path, df, meta)
    df.attrs.update(meta)
    return df


def check_rows(path: Path, df: pd.DataFrame, meta: dict) -> None:
    """A table must hold the rows its sidecar records: fewer (cut short by a copy, an editor, a full disk)
    or more is not the result the sidecar describes (TableError, naming the file)."""
    frames = meta.get("frames")
    recorded = frames.get("rows") if isinstance(frames, dict) else None
    if isinstance(recorded, int) and not isinstance(recorded, bool) and len(df) != recorded:
        kind = "truncated" if len(df) < recorded else "has rows added"
        raise TableError(f"{path}: {len(df)} rows, but its sidecar {sidecar_path(path).name} records {recorded}: "
                         f"the table is {kind} (rerun the annotation with --overwrite)")
