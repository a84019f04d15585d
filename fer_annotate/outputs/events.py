"""Events per face from a table: blinks, smiles and episodes of each expression, with start, end, peak.

Every rule works on one face's samples in time order. A sampled frame where the face is absent (no row
for it: no face, or another face only) ends any event of that face, so events never bridge a gap.
Each sample stands for the time until the next sampled frame of the video (as in `summary`), so an
event runs from its first sample's time to the next sampled frame after its last sample; with
`--every`/`--fps` a sample stands for more time and times stay container times.

Blinks (`BlinkRule`): the signal is the lower of the two eyes' eyeBlink scores (both eyes must close),
measured above the face's own running baseline (the median over `baseline_s` around each sample),
because the baseline differs by face and over time (0.04-0.16 with eyes open, 0.75 while laughing on
the fixture clips) and the peak of a blink is low on some faces (0.3-0.4). An event starts where the
signal rises `on` above the baseline and ends where it falls below `off` (hysteresis), lasts between
`min_s` and `max_s` (longer closures are not blinks), and two events closer than `gap_s` merge.
Unsmoothed scores (`bs_eyeBlink*_raw`, written beside the smoothed ones) are read when the table has them.

Smiles (`SmileRule`): the mean of the mouthSmile blendshapes (else the happiness probability), absolute
thresholds with hysteresis, a minimum duration and gap merging.

Expression episodes (`EpisodeRule`): the dominant expression switches only when another one's
probability has exceeded the current one's by `margin` (hysteresis) for `min_s`; so a shorter
intrusion stays inside the episode around it, and runs shorter than `min_s` (at a face's first
appearance) are dropped.
"""

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from fer_annotate.outputs.table import expression_names

EVENT_COLUMNS = ["video", "face_id", "kind", "label", "start_s", "end_s", "duration_s", "peak", "peak_s",
                 "start_frame", "end_frame", "source"]
BLINK_EYES = ("eyeBlinkLeft", "eyeBlinkRight")
SMILE_SHAPES = ("mouthSmileLeft", "mouthSmileRight")
KINDS = ("blink", "smile", "expression")


@dataclass
class BlinkRule:
    """Blinks: rise above the face's running baseline, with hysteresis (see the module docstring).

    `baseline_s` 0 makes `on`/`off` absolute scores instead of rises above the baseline.
    """

    on: float = 0.15
    off: float = 0.08
    baseline_s: float = 2.0
    min_s: float = 0.0
    max_s: float = 0.5
    gap_s: float = 0.05


@dataclass
class SmileRule:
    """Smiles: `source` "auto" (blendshapes when the table has them, else happiness), "blendshapes" or
    "happiness"; absolute thresholds with hysteresis."""

    source: str = "auto"
    on: float = 0.5
    off: float = 0.4
    min_s: float = 0.3
    gap_s: float = 0.2


@dataclass
class EpisodeRule:
    """Expression episodes: switch when another expression leads by `margin`; at least `min_s` long."""

    margin: float = 0.1
    min_s: float = 0.5


@dataclass
class EventRules:
    """All rules of a run, and which kinds to find (recorded with the output)."""

    blink: BlinkRule = field(default_factory=BlinkRule)
    smile: SmileRule = field(default_factory=SmileRule)
    episode: EpisodeRule = field(default_factory=EpisodeRule)
    kinds: tuple[str, ...] = KINDS

    def describe(self) -> dict:
        """The rules as plain data, for sidecars and file headers."""
        return asdict(self)


@dataclass
class FaceSeries:
    """One face's samples on the video's sampled frames: times, durations, frames, presence, the rows."""

    face_id: int
    frames: np.ndarray  # [n] every sampled frame of the video
    times: np.ndarray  # [n] container times
    durations: np.ndarray  # [n] seconds each sampled frame stands for
    present: np.ndarray  # [n] bool: the face has a row here
    rows: pd.DataFrame  # the face's rows reindexed on the sampled frames (NaN where absent)


def face_series(df: pd.DataFrame) -> list[FaceSeries]:
    """Each face of a table on the video's sampled frames (sorted by face id)."""
    times = df.groupby("frame", sort=True)["time_s"].first()
    frames = times.index.to_numpy(dtype=np.int64)
    t = times.to_numpy(dtype=np.float64)
    step = np.diff(t)
    durations = np.append(step, float(np.median(step)) if len(step) else 0.0)
    ok = df[df["status"] == "ok"]
    out = []
    for face_id, rows in ok.groupby("face_id", sort=True, observed=True):
        rows = rows.drop_duplicates("frame").set_index("frame").reindex(frames)
        out.append(FaceSeries(int(face_id), frames, t, durations, rows["status"].notna().to_numpy(), rows))
    return out


def runs(active: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) indices of each run of True."""
    edges = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1, strict=True))


def hysteresis(signal: np.ndarray, present: np.ndarray, on: float, off: float) -> np.ndarray:
    """Active where the signal has risen to `on` and not yet fallen below `off`; absence resets it."""
    active = np.zeros(len(signal), bool)
    state = False
    for i, (value, here) in enumerate(zip(signal, present, strict=True)):
        if not here or np.isnan(value):
            state = False
        elif state:
            state = value >= off
        else:
            state = value >= on
        active[i] = state
    return active


def merge_gaps(spans: list[tuple[int, int]], face: FaceSeries, gap_s: float) -> list[tuple[int, int]]:
    """Join spans separated by less than `gap_s` when the face is present all through the gap."""
    merged: list[tuple[int, int]] = []
    for first, last in spans:
        if merged:
            prev_first, prev_last = merged[-1]
            gap = face.times[first] - (face.times[prev_last] + face.durations[prev_last])
            if gap < gap_s - 1e-9 and face.present[prev_last : first + 1].all():
                merged[-1] = (prev_first, last)
                continue
        merged.append((first, last))
    return merged


def _span_times(face: FaceSeries, first: int, last: int) -> tuple[float, float]:
    return float(face.times[first]), float(face.times[last] + face.durations[last])


def _event(video: str, face: FaceSeries, kind: str, label: str, first: int, last: int, value: np.ndarray,
           source: str) -> dict:
    start, end = _span_times(face, first, last)
    segment = value[first : last + 1]
    peak = first + int(np.nanargmax(segment)) if np.isfinite(segment).any() else first
    return {"video": video, "face_id": face.face_id, "kind": kind, "label": label, "start_s": round(start, 6),
            "end_s": round(end, 6), "duration_s": round(end - start, 6), "peak": round(float(value[peak]), 5),
            "peak_s": round(float(face.times[peak]), 6), "start_frame": int(face.frames[first]),
            "end_frame": int(face.frames[last]), "source": source}


def _column(face: FaceSeries, name: str) -> np.ndarray:
    return face.rows[name].to_numpy(dtype=np.float64, na_value=np.nan)


def blink_columns(columns: list[str]) -> list[str] | None:
    """The columns blinks read: the unsmoothed eyeBlink scores when present, else the table's; None if absent."""
    raw = [f"bs_{eye}_raw" for eye in BLINK_EYES]
    if all(c in columns for c in raw):
        return raw
    plain = [f"bs_{eye}" for eye in BLINK_EYES]
    return plain if all(c in columns for c in plain) else None


def running_median(values: np.ndarray, times: np.ndarray, present: np.ndarray, width_s: float) -> np.ndarray:
    """Median of the present values within `width_s` centred on each sample (NaN where absent)."""
    out = np.full(len(values), np.nan)
    keep = present & np.isfinite(values)
    if not keep.any():
        return out
    series = pd.Series(values[keep], index=pd.to_timedelta(times[keep], unit="s"))
    out[keep] = series.rolling(pd.Timedelta(seconds=width_s), center=True, min_periods=1).median().to_numpy()
    return out


def blinks(video: str, face: FaceSeries, columns: list[str], rule: BlinkRule) -> list[dict]:
    """Blink events of one face (see the module docstring); `columns` from `blink_columns`."""
    signal = np.minimum(_column(face, columns[0]), _column(face, columns[1]))
    level = signal
    if rule.baseline_s > 0:
        level = signal - running_median(signal, face.times, face.present, rule.baseline_s)
    spans = merge_gaps(runs(hysteresis(level, face.present, rule.on, rule.off)), face, rule.gap_s)
    source = "min(" + ", ".join(columns) + ")" + (f" - median over {rule.baseline_s:g} s" if rule.baseline_s else "")
    events = []
    for first, last in spans:
        start, end = _span_times(face, first, last)
        if rule.min_s <= end - start <= rule.max_s + 1e-9:
            events.append(_event(video, face, "blink", "blink", first, last, signal, source))
    return events


def smile_signal(columns: list[str], rows: pd.DataFrame, source: str) -> tuple[np.ndarray, str] | None:
    """The smile score of each sample and its description, or None when the table has no such column."""
    shapes = [f"bs_{s}" for s in SMILE_SHAPES]
    has_shapes, has_happy = all(c in columns for c in shapes), "expr_happiness" in columns
    if source not in ("auto", "blendshapes", "happiness"):
        raise ValueError(f"smile source {source!r}: use auto, blendshapes or happiness")
    if has_shapes and source in ("auto", "blendshapes"):
        values = rows[shapes].to_numpy(dtype=np.float64, na_value=np.nan).mean(axis=1)
        return values, f"mean({', '.join(shapes)})"
    if has_happy and source in ("auto", "happiness"):
        return rows["expr_happiness"].to_numpy(dtype=np.float64, na_value=np.nan), "expr_happiness"
    return None


def smiles(video: str, face: FaceSeries, columns: list[str], rule: SmileRule) -> list[dict]:
    """Smile events of one face (none when the table has neither smile blendshapes nor happiness)."""
    found = smile_signal(columns, face.rows, rule.source)
    if found is None:
        return []
    signal, source = found
    spans = merge_gaps(runs(hysteresis(signal, face.present, rule.on, rule.off)), face, rule.gap_s)
    events = []
    for first, last in spans:
        start, end = _span_times(face, first, last)
        if end - start >= rule.min_s - 1e-9:
            events.append(_event(video, face, "smile", "smile", first, last, signal, source))
    return events


def dominant(probs: np.ndarray, face: FaceSeries, margin: float, min_s: float) -> np.ndarray:
    """Index of the dominant expression per sample (-1 where absent).

    Another expression takes over only once it has led the current one by `margin` for `min_s` (its
    episode then starts where it began to lead), so a short intrusion does not split an episode.
    """
    out = np.full(len(probs), -1)
    current, candidate, since = -1, -1, 0
    for i, (p, here) in enumerate(zip(probs, face.present, strict=True)):
        if not here or not np.isfinite(p).all():
            current, candidate = -1, -1
            continue
        best = int(np.argmax(p))
        if current < 0:
            current = best
        elif best != current and p[best] - p[current] >= margin:
            if candidate != best:
                candidate, since = best, i
            if face.times[i] + face.durations[i] - face.times[since] >= min_s - 1e-9:
                out[since:i] = current = best
                candidate = -1
        else:
            candidate = -1
        out[i] = current
    return out


def episodes(video: str, face: FaceSeries, columns: list[str], rule: EpisodeRule) -> list[dict]:
    """Episodes of each expression of one face (none when the table has no expression probabilities)."""
    names = expression_names(columns)
    if not names:
        return []
    probs = face.rows[[f"expr_{n}" for n in names]].to_numpy(dtype=np.float64, na_value=np.nan)
    state = dominant(probs, face, rule.margin, rule.min_s)
    events = []
    for k, name in enumerate(names):
        for first, last in runs(state == k):
            start, end = _span_times(face, first, last)
            if end - start >= rule.min_s - 1e-9:
                events.append(_event(video, face, "expression", name, first, last, probs[:, k], f"expr_{name}"))
    return events


def find_events(df: pd.DataFrame, rules: EventRules | None = None) -> pd.DataFrame:
    """Events of every face of one video's table, ordered by face, start and kind (columns EVENT_COLUMNS).

    A requested kind the table cannot give (no eyeBlink columns for blinks, ...) is skipped; see `missing`.
    """
    rules = rules or EventRules()
    columns = list(df.columns)
    video = str(df["video"].iloc[0]) if "video" in df.columns and len(df) else ""
    found: list[dict] = []
    eyes = blink_columns(columns)
    for face in face_series(df):
        if "blink" in rules.kinds and eyes is not None:
            found += blinks(video, face, eyes, rules.blink)
        if "smile" in rules.kinds:
            found += smiles(video, face, columns, rules.smile)
        if "expression" in rules.kinds:
            found += episodes(video, face, columns, rules.episode)
    events = pd.DataFrame(found, columns=EVENT_COLUMNS)
    order = {k: i for i, k in enumerate(KINDS)}
    events = events.sort_values(["face_id", "start_s", "kind"], key=lambda c: c.map(order) if c.name == "kind" else c)
    return events.reset_index(drop=True)


def missing(columns: list[str], rules: EventRules) -> dict[str, str]:
    """Kinds the rules ask for that a table with `columns` cannot give, and why."""
    why: dict[str, str] = {}
    if "blink" in rules.kinds and blink_columns(columns) is None:
        why["blink"] = ("no bs_eyeBlinkLeft/Right columns (annotate with a bundle that has blendshapes, such as "
                        "the default, or with --geometry mediapipe)")
    if "smile" in rules.kinds and smile_signal(columns, pd.DataFrame(columns=columns), rules.smile.source) is None:
        why["smile"] = f"no smile columns for source {rules.smile.source} (bs_mouthSmile*, expr_happiness)"
    if "expression" in rules.kinds and not expression_names(columns):
        why["expression"] = "no expression probabilities (expr_*)"
    return why
