"""Per-video, per-face summary of a table: time seen, expression shares and seconds, mean valence/arousal,
AU base rates, and the event figures (blinks per minute, mean blink duration, share of time smiling) found
by `events.find_events` with its default rules.

Written into each output's sidecar (`summary`) and printed by `fer-annotate summary`, so that a folder of
outputs can be compared at a glance. Time is counted from the container timestamps: each sampled frame
lasts until the next sampled frame (the last one: the median step), so `--every`/`--fps` runs count
the time they stand for.
"""

import math

import numpy as np
import pandas as pd

from fer_annotate.outputs.events import EventRules, blink_columns, find_events, smile_signal
from fer_annotate.outputs.table import au_names, expression_names

DIGITS = 4


def _num(value: float) -> float | None:
    """A JSON-friendly float: rounded; NaN -> None."""
    value = float(value)
    return None if math.isnan(value) else round(value, DIGITS)


def frame_durations(df: pd.DataFrame) -> pd.Series:
    """Seconds each sampled frame stands for, indexed by frame number."""
    times = df.groupby("frame", sort=True)["time_s"].first()
    if times.empty:
        return times
    step = np.diff(times.to_numpy())
    last = float(np.median(step)) if len(step) else 0.0
    return pd.Series(np.append(step, last), index=times.index)


def summarize_table(df: pd.DataFrame) -> list[dict]:
    """The summaries of a table: one for a video's table; one per photo, named by its path, for a table of a
    photo folder (its `path` column), whose face ids are counted per photo and never name one face across
    photos."""
    if "path" not in df.columns:
        return [summarize(df)]
    return [{**summarize(rows), "video": str(path)} for path, rows in df.groupby("path", sort=False)]


def summarize(df: pd.DataFrame) -> dict:
    """The summary of one video's table (any extra columns are ignored)."""
    columns = list(df.columns)
    durations = frame_durations(df)
    video = str(df["video"].iloc[0]) if "video" in df.columns and len(df) else ""
    ok = df[df["status"] == "ok"] if len(df) else df
    result = {
        "video": video,
        "frames_sampled": int(len(durations)),
        "seconds_sampled": _num(durations.sum()),
        "frames_with_face": int(ok["frame"].nunique()) if len(ok) else 0,
        "faces": [],
    }
    if not len(ok) or "face_id" not in columns:
        return result
    exprs, aus = expression_names(columns), au_names(columns)
    events = find_events(df, EventRules(kinds=("blink", "smile")))
    has_blinks = blink_columns(columns) is not None
    has_smiles = smile_signal(columns, ok.iloc[:0], "auto") is not None
    for face_id, rows in ok.groupby("face_id", sort=True, observed=True):
        frames = rows["frame"].to_numpy(dtype=np.int64)
        face: dict = {
            "face_id": int(face_id),
            "frames": int(len(rows)),
            "seconds": _num(durations.reindex(frames).sum()),
            "first_s": _num(rows["time_s"].min()),
            "last_s": _num(rows["time_s"].max()),
        }
        if "person_id" in columns and rows["person_id"].notna().any():
            face["person_id"] = int(rows["person_id"].dropna().iloc[0])
        if exprs and "expression" in columns:
            counts = rows["expression"].astype(str).value_counts()
            face["expression_share"] = {name: _num(counts.get(name, 0) / len(rows)) for name in exprs}
            seconds = durations.reindex(frames).groupby(rows["expression"].astype(str).to_numpy()).sum()
            face["expression_seconds"] = {name: _num(seconds.get(name, 0.0)) for name in exprs}
            face["top_expression"] = max(exprs, key=lambda n: counts.get(n, 0))
        for col in ("valence", "arousal"):
            if col in columns:
                face[f"{col}_mean"] = _num(rows[col].astype(float).mean())
        if aus:
            face["au_rate"] = {au: _num(rows[au].astype(float).mean()) for au in aus}
        face.update(_event_figures(events[events["face_id"] == face_id], face["seconds"], has_blinks, has_smiles))
        result["faces"].append(face)
    return result


def _event_figures(events: pd.DataFrame, seconds: float | None, blinks: bool, smiles: bool) -> dict:
    """Blinks per minute, mean blink duration (s), share of the face's time smiling; only those the table gives."""
    out: dict = {}
    if not seconds:
        return out
    if blinks:
        found = events[events["kind"] == "blink"]
        out["blinks"] = int(len(found))
        out["blinks_per_minute"] = _num(len(found) / seconds * 60)
        out["blink_mean_s"] = _num(found["duration_s"].mean()) if len(found) else None
    if smiles:
        out["smile_share"] = _num(events.loc[events["kind"] == "smile", "duration_s"].sum() / seconds)
    return out


def summary_lines(summaries: list[dict]) -> tuple[list[str], list[list[str]]]:
    """A header and one row per video and face (a video without faces gets one row), for a text table."""
    exprs: list[str] = []
    aus: list[str] = []
    for s in summaries:
        for face in s["faces"]:
            exprs += [n for n in face.get("expression_share", {}) if n not in exprs]
            aus += [a for a in face.get("au_rate", {}) if a not in aus]
    has_va = any("valence_mean" in f for s in summaries for f in s["faces"])
    has_blinks = any("blinks_per_minute" in f for s in summaries for f in s["faces"])
    has_smiles = any("smile_share" in f for s in summaries for f in s["faces"])
    header = ["video", "face", "seconds", "frames", "top", *[n[:4] for n in exprs]]
    header += ["valence", "arousal"] if has_va else []
    header += ["blinks/min", "blink_s"] if has_blinks else []
    header += ["smiling"] if has_smiles else []
    header += aus
    rows: list[list[str]] = []
    for s in summaries:
        if not s["faces"]:
            rows.append([s["video"], "-", "0", "0", "-", *[""] * (len(header) - 5)])
        for face in s["faces"]:
            share, rate = face.get("expression_share", {}), face.get("au_rate", {})
            row = [s["video"], str(face["face_id"]), f"{face['seconds']:.1f}", str(face["frames"]),
                   face.get("top_expression", "-")]
            row += [_fmt(share.get(n)) for n in exprs]
            row += [_fmt(face.get("valence_mean"), signed=True), _fmt(face.get("arousal_mean"), signed=True)] \
                if has_va else []
            row += [_fmt(face.get("blinks_per_minute"), digits=1), _fmt(face.get("blink_mean_s"), digits=3)] \
                if has_blinks else []
            row += [_fmt(face.get("smile_share"))] if has_smiles else []
            row += [_fmt(rate.get(a)) for a in aus]
            rows.append(row)
    return header, rows


def _fmt(value: float | None, signed: bool = False, digits: int = 2) -> str:
    if value is None:
        return ""
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
