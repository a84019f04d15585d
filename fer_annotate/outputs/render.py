"""Draw a table onto its video: an H.264 overlay video at the source's frame rate, size and timestamps.

Per face: the box in a stable colour per face_id, the id, the top expression and its probability, a
bar chart of the expression probabilities, the AUs that are on, a valence/arousal dot on a circumplex,
and the ensemble's spread (uncertainty), each where the table has it. Frames without a face pass through
unchanged; frames between two sampled frames (`--every`, `--fps`) show the last annotation faded.
Frames are decoded, drawn (Pillow) and encoded one at a time (PyAV), so memory stays flat; audio packets
are copied. Frames are matched to rows by container timestamp. The output is written to a temporary
file and renamed into place when complete.
"""

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from fer_annotate.outputs.names import short_stem
from fer_annotate.outputs.source import source_mismatch
from fer_annotate.outputs.table import TableError, au_names, expression_names, load_table, read_sidecar

# tab10: distinct, readable on video
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
FADED_ALPHA = 0.5
MATCH_TOLERANCE_S = 1e-3  # a decoded frame and a table row are the same frame
CONTAINERS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov"}
MP4_AUDIO = {"aac", "mp3", "mp3float", "ac3", "eac3", "opus", "alac", "flac"}


class RenderError(Exception):
    """A video and table that cannot be rendered together; one line naming the file."""


@dataclass
class RenderSummary:
    """What a render wrote."""

    output: Path
    frames: int
    seconds: float

    @property
    def frames_per_second(self) -> float:
        return self.frames / max(self.seconds, 1e-9)


def face_colour(face_id: int) -> tuple[int, int, int]:
    """The stable colour of a face id."""
    return PALETTE[int(face_id) % len(PALETTE)]


def render_path(table: Path, output_root: Path, render_dir: Path) -> Path:
    """Where the overlay of `table` goes in `render_dir`: its path relative to the output folder, the table's
    suffix replaced by `.overlay.mp4` (`clip.mp4.csv` -> `clip.mp4.overlay.mp4`: never a source video's name)."""
    try:
        rel = table.relative_to(output_root)
    except ValueError:
        rel = Path(table.name)
    if rel == Path("."):
        rel = Path(table.name)
    return render_dir / rel.with_suffix(".overlay.mp4")


@dataclass
class Mark:
    """What is drawn for one face on one sampled frame."""

    face_id: int
    box: tuple[float, float, float, float]
    expression: str | None
    probs: np.ndarray | None
    aus_on: list[str]
    va: tuple[float, float] | None
    spread: dict[str, float]


class TableIndex:
    """The sampled frames of a table, by time, and their faces as arrays (no per-frame DataFrame work)."""

    def __init__(self, df: pd.DataFrame):
        cols = list(df.columns)
        df = df.sort_values(["frame", "face_id"], kind="stable", na_position="first").reset_index(drop=True)
        first = df.groupby("frame", sort=True).head(1)
        self.times = first["time_s"].to_numpy(dtype=np.float64)
        self.start = first.index.to_numpy()
        self.stop = np.append(self.start[1:], len(df))
        steps = np.diff(self.times)
        self.step = float(np.median(steps)) if len(steps) else float("inf")
        self.ok = (df["status"] == "ok").to_numpy()
        self.face_id = df["face_id"].fillna(-1).to_numpy(dtype=np.int64) if "face_id" in cols else None
        self.boxes = df[["x1", "y1", "x2", "y2"]].to_numpy(dtype=np.float64)
        self.expr_names = expression_names(cols)
        self.probs = df[[f"expr_{n}" for n in self.expr_names]].to_numpy(dtype=np.float64) \
            if self.expr_names else None
        self.expression = df["expression"].astype(str).to_numpy() if "expression" in cols else None
        self.au_names = au_names(cols)
        self.aus = df[self.au_names].astype("float64").to_numpy() if self.au_names else None
        self.va = df[["valence", "arousal"]].to_numpy(dtype=np.float64) if "valence" in cols else None
        self.spread = {k: df[c].to_numpy(dtype=np.float64) for k, c in
                       (("expr", "expr_std"), ("au", "au_std"), ("va", "valence_std")) if c in cols}

    def locate(self, t: float) -> tuple[int, bool] | None:
        """The sampled frame shown at time t and whether it is t itself; None: nothing to show."""
        k = int(np.searchsorted(self.times, t + MATCH_TOLERANCE_S, side="right")) - 1
        if k < 0:
            return None
        if abs(self.times[k] - t) <= MATCH_TOLERANCE_S:
            return k, True
        step = self.times[k + 1] - self.times[k] if k + 1 < len(self.times) else self.step
        return (k, False) if t - self.times[k] < step else None

    def marks(self, k: int) -> list[Mark]:
        """The faces of sampled frame k."""
        out = []
        for i in range(self.start[k], self.stop[k]):
            if not self.ok[i] or np.isnan(self.boxes[i]).any():
                continue
            probs = self.probs[i] if self.probs is not None and not np.isnan(self.probs[i]).any() else None
            aus_on = [] if self.aus is None else [a for a, v in zip(self.au_names, self.aus[i], strict=True) if v == 1]
            va = None
            if self.va is not None and not np.isnan(self.va[i]).any():
                va = (float(self.va[i, 0]), float(self.va[i, 1]))
            spread = {k_: float(v[i]) for k_, v in self.spread.items() if not np.isnan(v[i])}
            out.append(Mark(int(self.face_id[i]) if self.face_id is not None else 0, tuple(self.boxes[i]),
                            self.expression[i] if probs is not None else None, probs, aus_on, va, spread))
        return out


class Painter:
    """Draws marks onto frames; panels (the per-face text, bars and circumplex) are drawn once per sampled
    frame and pasted, so unsampled frames cost only a paste."""

    def __init__(self, height: int, expr_names: list[str]):
        self.s = max(1.0, height / 400)
        self.font = ImageFont.load_default(size=round(11 * self.s))
        self.bold = ImageFont.load_default(size=round(12 * self.s))
        self.small = ImageFont.load_default(size=max(6, round(8 * self.s)))
        self.expr_names = expr_names
        self.width = round(150 * self.s)

    def panel(self, mark: Mark) -> Image.Image:
        """The RGBA panel of one face."""
        s, w, colour = self.s, self.width, face_colour(mark.face_id)
        line = round(15 * s)
        bar_h = round(8 * s)
        circ = round(40 * s) if mark.va is not None else 0
        n_bars = len(mark.probs) if mark.probs is not None else 0
        au_lines = self._au_lines(mark.aus_on)
        spread = self._spread_text(mark.spread)
        h = line + n_bars * (bar_h + 1) + round(3 * s) + circ + line * (len(au_lines) + bool(spread)) + round(4 * s)
        img = Image.new("RGBA", (w, h), (0, 0, 0, 165))
        d = ImageDraw.Draw(img)
        pad = round(3 * s)
        d.rectangle((0, 0, w - 1, line - 2), fill=colour + (255,))
        title = f"#{mark.face_id}"
        if mark.probs is not None:
            title += f"  {mark.expression} {float(np.max(mark.probs)):.2f}"
        d.text((pad, round(1 * s)), title, fill=(255, 255, 255, 255), font=self.bold)
        y = line
        if mark.probs is not None:
            label_w = round(30 * s)
            top = int(np.argmax(mark.probs))
            for j, p in enumerate(mark.probs):
                d.text((pad, y - round(2 * s)), self.expr_names[j][:3], fill=(220, 220, 220, 255), font=self.small)
                x0, x1 = pad + label_w, w - pad
                d.rectangle((x0, y, x1, y + bar_h - 1), fill=(60, 60, 60, 255))
                fill = colour + (255,) if j == top else (200, 200, 200, 255)
                d.rectangle((x0, y, x0 + round((x1 - x0) * float(np.clip(p, 0, 1))), y + bar_h - 1), fill=fill)
                y += bar_h + 1
            y += round(3 * s)
        if mark.va is not None:
            r = circ // 2 - 2
            cx, cy = pad + r, y + r
            d.ellipse((cx - r, cy - r, cx + r, cy + r), outline=(200, 200, 200, 255))
            d.line((cx - r, cy, cx + r, cy), fill=(120, 120, 120, 255))
            d.line((cx, cy - r, cx, cy + r), fill=(120, 120, 120, 255))
            v, a = (float(np.clip(x, -1, 1)) for x in mark.va)
            dot = max(2, round(3 * s))
            px, py = cx + v * r, cy - a * r
            d.ellipse((px - dot, py - dot, px + dot, py + dot), fill=colour + (255,))
            d.text((cx + r + pad, cy - line), f"V {v:+.2f}", fill=(230, 230, 230, 255), font=self.font)
            d.text((cx + r + pad, cy), f"A {a:+.2f}", fill=(230, 230, 230, 255), font=self.font)
            y += circ
        for text in au_lines:
            d.text((pad, y), text, fill=(255, 230, 120, 255), font=self.font)
            y += line
        if spread:
            d.text((pad, y), spread, fill=(170, 170, 170, 255), font=self.font)
        return img

    def _au_lines(self, aus_on: list[str]) -> list[str]:
        if not aus_on:
            return []
        names = [a.removeprefix("AU") for a in aus_on]
        per_line = max(1, (self.width - round(30 * self.s)) // round(17 * self.s))
        return ["AU " + " ".join(names[i : i + per_line]) for i in range(0, len(names), per_line)]

    @staticmethod
    def _spread_text(spread: dict[str, float]) -> str:
        return "sd " + " ".join(f"{k} {v:.2f}" for k, v in spread.items()) if spread else ""

    def draw(self, image: Image.Image, marks: list[Mark], panels: list[Image.Image], faded: bool) -> None:
        """Boxes and panels onto an RGB frame, in place."""
        d = ImageDraw.Draw(image, "RGBA")
        width, height = image.size
        line_w = max(2, round(2 * self.s))
        for mark, panel in zip(marks, panels, strict=True):
            x1, y1, x2, y2 = mark.box
            alpha = round(255 * FADED_ALPHA) if faded else 255
            d.rectangle((x1, y1, x2, y2), outline=face_colour(mark.face_id) + (alpha,), width=line_w)
            pw, ph = panel.size
            if x2 + 4 + pw <= width:
                px = x2 + 4
            elif x1 - 4 - pw >= 0:
                px = x1 - 4 - pw
            else:
                px = min(max(0, x2 + 4), width - pw)
            py = min(max(0, y1), max(0, height - ph))
            image.paste(panel, (round(px), round(py)), panel)


def _fade(panel: Image.Image) -> Image.Image:
    faded = panel.copy()
    faded.putalpha(panel.getchannel("A").point(lambda v: round(v * FADED_ALPHA)))
    return faded


def check_belongs(video: Path, table: Path, meta: dict) -> None:
    """The table's sidecar must describe this video (its recorded source, frame count and size); raises
    RenderError."""
    from fer_annotate.media.still import is_image
    from fer_annotate.media.video import Video

    if is_image(video):
        raise RenderError(f"{video}: a still image; overlays are drawn on videos (the table has its boxes)")
    info = Video(video).info
    recorded = meta.get("video") or {}
    ours = (info.n_frames, info.width, info.height)
    theirs = (recorded.get("n_frames"), recorded.get("width"), recorded.get("height"))
    if ours != theirs:
        raise RenderError(
            f"{table}: annotates {recorded.get('path', 'another video')} ({theirs[0]} frames, {theirs[1]}x"
            f"{theirs[2]}), not {video} ({ours[0]} frames, {ours[1]}x{ours[2]})"
        )
    mismatch = source_mismatch(video, table, meta)
    if mismatch:
        raise RenderError(mismatch)


def render_overlay(video: str | Path, table: str | Path, output: str | Path,
                   on_frames: Callable[[int, int], None] | None = None) -> RenderSummary:
    """Write `output` (H.264, .mp4/.mkv/.mov): `video` with `table`'s annotations drawn on it."""
    try:
        import av
    except ImportError:
        raise RenderError("rendering needs PyAV: pip install 'fer-annotate[render]'") from None
    from fer_annotate.media.video import VideoError

    video, table, output = Path(video), Path(table), Path(output)
    if output.suffix.lower() not in CONTAINERS:
        raise RenderError(f"{output}: unknown video container (use {', '.join(CONTAINERS)})")
    started = time.time()
    try:
        meta = read_sidecar(table)
        check_belongs(video, table, meta)
        index = TableIndex(load_table(table))
    except (TableError, VideoError) as exc:
        raise RenderError(str(exc)) from None
    total = int(meta["video"]["n_frames"])
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{short_stem(output.name)}.", suffix=".partial" + output.suffix,
                                dir=output.parent)  # short_stem: the temporary name fits wherever `output` does
    os.close(fd)
    temp = Path(name)
    os.chmod(temp, 0o644)  # mkstemp makes it private; the overlay is an ordinary output file
    try:
        frames = _transcode(av, video, temp, index, total, on_frames)
        os.replace(temp, output)
    except BaseException as exc:
        temp.unlink(missing_ok=True)
        if isinstance(exc, av.FFmpegError):
            raise RenderError(f"{video}: cannot render ({exc})") from None
        raise
    return RenderSummary(output, frames, time.time() - started)


def _transcode(av, video: Path, temp: Path, index: TableIndex, total: int,
               on_frames: Callable[[int, int], None] | None) -> int:
    fmt = CONTAINERS[temp.suffix.lower()]
    with av.open(str(video)) as src, av.open(str(temp), "w", format=fmt) as dst:
        vin = src.streams.video[0]
        vin.thread_type = "AUTO"
        width, height = vin.codec_context.width, vin.codec_context.height
        rate = vin.average_rate or vin.guessed_rate or Fraction(25)
        vout = dst.add_stream("libx264", rate=rate)
        vout.width, vout.height = width, height
        vout.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        vout.time_base = vin.time_base
        vout.options = {"crf": "20", "preset": "veryfast"}
        ain = src.streams.audio[0] if src.streams.audio else None
        aout = None
        if ain is not None and (fmt != "mp4" or ain.codec_context.name in MP4_AUDIO):
            aout = dst.add_stream_from_template(ain)
        painter = Painter(height, index.expr_names)
        cache: dict[int, tuple[list[Mark], list[Image.Image], list[Image.Image]]] = {}
        done = 0
        streams = [vin] if aout is None else [vin, ain]
        for packet in src.demux(*streams):
            if packet.stream is ain:
                if packet.dts is not None:
                    packet.stream = aout
                    dst.mux(packet)
                continue
            for frame in packet.decode():
                out = _draw(frame, index, painter, cache)
                out.pts, out.time_base = frame.pts, frame.time_base
                dst.mux(vout.encode(out))
                done += 1
                if on_frames is not None and (done % 16 == 0):
                    on_frames(done, total)
        dst.mux(vout.encode(None))
    if on_frames is not None:
        on_frames(done, total)
    return done


def _draw(frame, index: TableIndex, painter: Painter, cache: dict) -> object:
    """The frame with its annotation, or the frame itself where there is nothing to draw."""
    import av

    if frame.pts is None:
        return frame
    found = index.locate(float(frame.pts * frame.time_base))
    if found is None:
        return _plain(frame)
    k, exact = found
    if k not in cache:
        cache.clear()
        marks = index.marks(k)
        panels = [painter.panel(m) for m in marks]
        cache[k] = (marks, panels, [_fade(p) for p in panels])
    marks, panels, faded = cache[k]
    if not marks:
        return _plain(frame)
    image = frame.to_image()
    painter.draw(image, marks, panels if exact else faded, faded=not exact)
    return av.VideoFrame.from_image(image)


def _plain(frame) -> object:
    """A decoded frame handed to the encoder unchanged (its picture type left to the encoder)."""
    frame.pict_type = 0  # AV_PICTURE_TYPE_NONE: the encoder chooses
    return frame
