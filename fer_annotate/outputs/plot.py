"""A figure of one table: per face, stacked panels over time, and a summary panel.

Per face (as the table has them): expression probabilities as a stacked area, AU probabilities as a
heat map, valence and arousal with their spread as a band, head pose as lines; gaps where the face was
not seen. Then the share of time per expression per face. Long videos are averaged into at most
`max_points` time bins for drawing only; the summary panel is computed from every row.
Uses matplotlib's object API (no pyplot state), so it is safe in notebooks and threads.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fer_annotate.outputs.output import temp_file_beside
from fer_annotate.outputs.summary import summarize
from fer_annotate.outputs.table import au_names, expression_names

EXPR_COLOURS = {"neutral": "#9e9e9e", "anger": "#d62728", "disgust": "#8c564b", "fear": "#9467bd",
                "happiness": "#ffbf00", "sadness": "#1f77b4", "surprise": "#17becf", "contempt": "#e377c2"}
FIGURE_FORMATS = (".png", ".svg", ".pdf")
WIDTH_IN = 12.0


@dataclass
class PlotOptions:
    """How the figure is drawn."""

    max_faces: int = 8
    max_points: int = 2000
    dpi: int = 100


@dataclass
class Series:
    """One face's values on the drawing time grid (NaN where the face was not seen)."""

    times: np.ndarray
    edges: np.ndarray
    values: dict[str, np.ndarray]


def _grid(df: pd.DataFrame, max_points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Sampled frame times, the drawing bins' centres and edges, and each frame's bin (None: no binning)."""
    times = df.groupby("frame", sort=True)["time_s"].first().to_numpy(dtype=np.float64)
    if len(times) > max_points:
        edges = np.linspace(times[0], times[-1] + 1e-9, max_points + 1)
        which = np.clip(np.searchsorted(edges, times, side="right") - 1, 0, max_points - 1)
        return (edges[:-1] + edges[1:]) / 2, edges, which
    step = np.diff(times)
    last = float(np.median(step)) if len(step) else 1.0
    edges = np.append(times, times[-1] + last) if len(times) else np.zeros(1)
    return times, edges, None


def face_series(df: pd.DataFrame, columns: list[str], max_points: int) -> dict[int, Series]:
    """Per face id: `columns` on the drawing grid, binned by mean where the video is long."""
    frames = np.sort(df["frame"].dropna().unique().astype(np.int64))
    centres, edges, which = _grid(df, max_points)
    slot = pd.Series(np.arange(len(frames)), index=frames)
    ok = df[df["status"] == "ok"]
    out: dict[int, Series] = {}
    for face_id, rows in ok.groupby("face_id", sort=True, observed=True):
        pos = slot.reindex(rows["frame"].to_numpy(dtype=np.int64)).to_numpy()
        values = {}
        for c in columns:
            v = rows[c].to_numpy(dtype=np.float64, na_value=np.nan)
            if which is None:
                full = np.full(len(frames), np.nan)
                full[pos] = v
            else:
                b = which[pos]
                good = ~np.isnan(v)
                sums = np.bincount(b[good], weights=v[good], minlength=len(centres))
                counts = np.bincount(b[good], minlength=len(centres))
                full = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
            values[c] = full
        out[int(face_id)] = Series(centres, edges, values)
    return out


def plot_table(df: pd.DataFrame, output: str | Path | None = None, options: PlotOptions | None = None):
    """Draw the figure of a table (one video); save it to `output` (.png, .svg, .pdf) when given.

    Returns the matplotlib Figure. Each face's axes carry the gid `face<ID>-<panel>` (panel: expr, au, va,
    pose, seen) and the summary axes `summary`, so that SVG output names them.
    """
    opt = options or PlotOptions()
    cols = list(df.columns)
    exprs, aus = expression_names(cols), au_names(cols)
    has_va = "valence" in cols and "arousal" in cols
    pose = [c for c in ("pose_yaw", "pose_pitch", "pose_roll") if c in cols]
    summary = summarize(df)
    faces = sorted(summary["faces"], key=lambda f: -f["frames"])[: opt.max_faces]
    shown = sorted(f["face_id"] for f in faces)
    wanted = [f"expr_{n}" for n in exprs] + [f"{a}_prob" for a in aus]
    wanted += ["valence", "arousal", "valence_std", "arousal_std"] if has_va else []
    wanted += pose + ([] if exprs or aus or has_va else ["score"])
    series = face_series(df[df["face_id"].isin(shown)] if "face_id" in cols else df, wanted, opt.max_points)

    panels = [("expr", 1.6)] if exprs else []
    panels += [("au", 0.6 + 0.16 * len(aus))] if aus else []
    panels += [("va", 1.3)] if has_va else []
    panels += [("pose", 1.2)] if pose else []
    panels = panels or [("seen", 0.9)]
    heights = [h for _ in shown for _, h in panels] + ([0.5 + 0.3 * max(1, len(shown))] if shown else [])
    fig = Figure(figsize=(WIDTH_IN, max(2.0, sum(heights) + 0.5 * len(shown) + 1.0)), layout="constrained")
    title = f"{summary['video']}: {summary['frames_sampled']} sampled frames, {summary['seconds_sampled'] or 0:.1f} s"
    if len(summary["faces"]) > len(shown):
        title += f" ({len(summary['faces']) - len(shown)} more faces not shown; max_faces={opt.max_faces})"
    fig.suptitle(title, fontsize=10)
    if not shown:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no face in this table", ha="center", va="center")
        ax.set_axis_off()
        return _save(fig, output, opt)
    axes = fig.subplots(len(heights), 1, gridspec_kw={"height_ratios": heights}, squeeze=False)[:, 0]
    t_max = max(float(s.edges[-1]) for s in series.values())
    t_min = min(float(s.edges[0]) for s in series.values())
    k = 0
    faces_by_id = sorted(faces, key=lambda f: f["face_id"])
    for face in faces_by_id:
        s = series[face["face_id"]]
        for j, (kind, _) in enumerate(panels):
            ax = axes[k]
            k += 1
            ax.set_gid(f"face{face['face_id']}-{kind}")
            ax.set_xlim(t_min, t_max)
            if j == 0:
                ax.set_title(f"face {face['face_id']}: seen {face['seconds']:.1f} s ({face['frames']} frames)",
                             fontsize=9, loc="left")
            _PANELS[kind](ax, s, exprs, aus, pose, first=face is faces_by_id[0])
            ax.tick_params(labelsize=7, labelbottom=(j == len(panels) - 1))
        axes[k - 1].set_xlabel("time (s)" if summary["frames_sampled"] > 1 else "one frame (a still image)",
                               fontsize=8)
    _summary_panel(axes[k], faces, exprs)
    return _save(fig, output, opt)


def _expr(ax, s: Series, exprs, aus, pose, first: bool) -> None:
    ys = [s.values[f"expr_{n}"] for n in exprs]
    x, step = s.times, None
    if len(s.times) < 200:  # each sample drawn over its own frame time, the last one (or a still's only one) too
        x, step = s.edges, "post"
        ys = [np.append(y, y[-1]) for y in ys]
    ax.stackplot(x, ys, colors=[EXPR_COLOURS.get(n, None) for n in exprs], labels=exprs, linewidth=0, step=step)
    ax.set_ylim(0, 1)
    ax.set_ylabel("expression", fontsize=8)
    if first:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)


def _au(ax, s: Series, exprs, aus, pose, first: bool) -> None:
    data = np.ma.masked_invalid(np.stack([s.values[f"{a}_prob"] for a in aus]))
    mesh = ax.pcolormesh(s.edges, np.arange(len(aus) + 1) - 0.5, data, vmin=0, vmax=1, cmap="viridis",
                         shading="flat", rasterized=True)
    ax.set_yticks(range(len(aus)), aus, fontsize=6)
    ax.invert_yaxis()
    if first:
        ax.figure.colorbar(mesh, ax=ax, fraction=0.02, pad=0.01, label="AU prob")


def _va(ax, s: Series, exprs, aus, pose, first: bool) -> None:
    for name, colour in (("valence", "#2ca02c"), ("arousal", "#d62728")):
        mean, sd = s.values[name], s.values[f"{name}_std"]
        ax.plot(s.times, mean, color=colour, linewidth=0.9, label=name, marker=_marker(s))
        ax.fill_between(s.times, mean - sd, mean + sd, color=colour, alpha=0.25, linewidth=0)
    ax.axhline(0, color="#888888", linewidth=0.5)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("V / A", fontsize=8)
    if first:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)


def _pose(ax, s: Series, exprs, aus, pose, first: bool) -> None:
    for name in pose:
        ax.plot(s.times, s.values[name], linewidth=0.9, label=name.removeprefix("pose_"), marker=_marker(s))
    ax.set_ylabel("pose (deg)", fontsize=8)
    if first:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)


def _seen(ax, s: Series, exprs, aus, pose, first: bool) -> None:
    ax.plot(s.times, s.values["score"], linewidth=0.9, color="#1f77b4", marker=_marker(s))
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("detector score", fontsize=8)


def _marker(s: Series) -> str | None:
    """A dot where there is a single sample (a still image): a line through one point is invisible."""
    return "o" if len(s.times) == 1 else None


_PANELS = {"expr": _expr, "au": _au, "va": _va, "pose": _pose, "seen": _seen}


def _summary_panel(ax, faces: list[dict], exprs: list[str]) -> None:
    """Share of the face's frames per expression (from every row), one bar per face."""
    ax.set_gid("summary")
    ids = [f["face_id"] for f in sorted(faces, key=lambda f: f["face_id"])]
    rows = {f["face_id"]: f for f in faces}
    y = np.arange(len(ids))
    if exprs:
        left = np.zeros(len(ids))
        for name in exprs:
            share = np.array([rows[i]["expression_share"][name] or 0.0 for i in ids])
            ax.barh(y, share, left=left, color=EXPR_COLOURS.get(name), label=name)
            left += share
        ax.set_xlim(0, 1)
        ax.set_xlabel("share of the face's frames per expression", fontsize=8)
    else:
        ax.barh(y, [rows[i]["seconds"] for i in ids], color="#1f77b4")
        ax.set_xlabel("seconds seen", fontsize=8)
    ax.set_yticks(y, [f"face {i}" for i in ids], fontsize=7)
    ax.invert_yaxis()
    ax.tick_params(labelsize=7)


def _save(fig, output: str | Path | None, opt: PlotOptions):
    if output is not None:
        path = Path(output)
        if path.suffix.lower() not in FIGURE_FORMATS:
            raise ValueError(f"{path}: unknown figure format (use {', '.join(FIGURE_FORMATS)})")
        temp = temp_file_beside(path)  # the umask's permissions, like every output
        try:
            fig.savefig(temp, dpi=opt.dpi, format=path.suffix.lower()[1:])
            os.replace(temp, path)
        finally:
            temp.unlink(missing_ok=True)
    return fig
