"""Temporal processing per face track, streaming in frame order with bounded lag and memory.

Two stages, both reset wherever a track breaks (a gap longer than `max_gap_s` between consecutive
rows of the same face, or time going backwards), so nothing is ever carried across two different
faces or across a break:

1. The bundle's CNN-RNN, if it has one: non-overlapping windows of `seq_len` rows; at the end of a
   segment the last window is aligned to its end (its already-emitted rows are context only), and a
   segment shorter than one window is padded by repeating its last row. It runs on the rows it is
   given, so with frame sampling (--every/--fps) a window spans more time than in training.
2. A gap-aware Gaussian filter in time (container timestamps, so irregular sampling is weighted
   correctly), truncated at 3 sigma and renormalised at segment edges.

What is smoothed: probabilities, VA values and the member spreads (the spread becomes a local
average of the per-frame spread). What is not: decisions. After smoothing, recompute them with
`fer_annotate.models.ensemble.decide(row, bundle)`: AU 1 where the smoothed probability > the bundle's
threshold; expression label = argmax of the smoothed probabilities.
"""

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from fer_annotate.models.ensemble import Ensemble, EnsembleOutput

Item = tuple[int, float, EnsembleOutput]


@dataclass
class SmoothSpec:
    """Temporal filter: kind "gauss" (sigma_s seconds) or "none"; segments break at gaps > max_gap_s."""

    kind: str = "gauss"
    sigma_s: float = 0.1
    max_gap_s: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in ("gauss", "none"):
            raise ValueError(f"unknown smoothing {self.kind!r}; use none, gauss or gauss:SIGMA")
        if not (0 < self.sigma_s < math.inf and 0 < self.max_gap_s < math.inf):
            raise ValueError("smoothing sigma and max gap must be positive, finite seconds")

    @classmethod
    def parse(cls, text: str) -> "SmoothSpec":
        """From the CLI form: "none", "gauss", "gauss:SIGMA" or "gauss:SIGMA:MAX_GAP" (seconds)."""
        kind, *numbers = text.strip().lower().split(":")
        if len(numbers) > 2 or (kind == "none" and numbers):
            raise ValueError(f"bad --smooth {text!r}; use none, gauss, gauss:SIGMA or gauss:SIGMA:MAX_GAP")
        try:
            values = [float(n) for n in numbers]
        except ValueError:
            raise ValueError(f"bad --smooth {text!r}: SIGMA and MAX_GAP are seconds") from None
        return cls(kind, *values)


class GaussianStage:
    """Streaming Gaussian smoothing within one segment: emits a row once the next `3 sigma` is seen."""

    def __init__(self, sigma_s: float, truncate: float = 3.0):
        self.sigma = sigma_s
        self.radius = truncate * sigma_s + 1e-6  # the microsecond keeps float jitter from breaking symmetry
        self.buf: deque[Item] = deque()
        self.next = 0  # index in buf of the oldest row not yet emitted

    def push(self, frame: int, time_s: float, row: EnsembleOutput) -> list[Item]:
        self.buf.append((frame, time_s, row))
        out = []
        while self.next < len(self.buf) and time_s - self.buf[self.next][1] > self.radius:
            out.append(self._smooth(self.next))
            self.next += 1
        ref = self.buf[self.next][1] if self.next < len(self.buf) else time_s
        while self.next > 0 and self.buf[0][1] < ref - self.radius:
            self.buf.popleft()
            self.next -= 1
        return out

    def end(self) -> list[Item]:
        out = [self._smooth(i) for i in range(self.next, len(self.buf))]
        self.buf.clear()
        self.next = 0
        return out

    def _smooth(self, i: int) -> Item:
        frame, t, centre = self.buf[i]
        near = [(item[1], item[2]) for item in self.buf if abs(item[1] - t) <= self.radius]
        w = np.array([math.exp(-0.5 * ((tj - t) / self.sigma) ** 2) for tj, _ in near], dtype=np.float32)
        w /= w.sum()
        values = {}
        for name in centre.present():
            if name == "hidden":
                values[name] = getattr(centre, name)
            else:
                stacked = np.stack([getattr(r, name) for _, r in near])
                values[name] = np.tensordot(w, stacked, axes=1).astype(np.float32)
        return frame, t, EnsembleOutput(**values)


class SequenceStage:
    """The bundle's CNN-RNN over one segment, in windows of seq_len rows (see the module docstring)."""

    def __init__(self, ensemble: Ensemble):
        self.ensemble = ensemble
        self.seq_len = ensemble.bundle.temporal.seq_len
        self.context: deque[Item] = deque(maxlen=self.seq_len)
        self.pending: list[Item] = []

    def push(self, frame: int, time_s: float, row: EnsembleOutput) -> list[Item]:
        self.pending.append((frame, time_s, row))
        if len(self.pending) < self.seq_len:
            return []
        out = self._run(self.pending, 0)
        self.context.extend(self.pending)
        self.pending = []
        return out

    def end(self) -> list[Item]:
        n = len(self.pending)
        out: list[Item] = []
        if n and self.context:
            context = list(self.context)
            window = context[len(context) - (self.seq_len - n) :] + self.pending
            out = self._run(window, self.seq_len - n)
        elif n:
            out = self._run(self.pending + [self.pending[-1]] * (self.seq_len - n), 0)[:n]
        self.context.clear()
        self.pending = []
        return out

    def _run(self, window: list[Item], first: int) -> list[Item]:
        """Run the window; return the rows from index `first` on (padding rows dropped by the caller)."""
        seq = self.ensemble.sequence(np.concatenate([row.hidden for _, _, row in window])[None])
        rows = EnsembleOutput(**{name: getattr(seq, name)[0] for name in seq.present()})
        return [(f, t, rows[i]) for i, (f, t, _) in enumerate(window) if i >= first]


class TrackFilter:
    """Temporal processing of one face track: push rows in frame order, get smoothed rows back.

    `ensemble` supplies the CNN-RNN when its bundle has one (else it may be None); `smooth` the
    Gaussian filter. Lag is bounded by seq_len rows plus 3 sigma; call `flush()` at the track's end.
    """

    def __init__(self, ensemble: Ensemble | None, smooth: SmoothSpec):
        self.max_gap_s = smooth.max_gap_s
        self.stages: list[SequenceStage | GaussianStage] = []
        if ensemble is not None and ensemble.temporal:
            self.stages.append(SequenceStage(ensemble))
        if smooth.kind == "gauss":
            self.stages.append(GaussianStage(smooth.sigma_s))
        self.last_time: float | None = None

    def push(self, frame: int, time_s: float, row: EnsembleOutput) -> list[tuple[int, EnsembleOutput]]:
        """Add the row of `frame` (a one-row EnsembleOutput); returns the rows now final, in frame order."""
        out = []
        if self.last_time is not None and not (0 <= time_s - self.last_time <= self.max_gap_s):
            out = self.flush()
        self.last_time = time_s
        items = [(frame, time_s, row)]
        for stage in self.stages:
            items = [done for item in items for done in stage.push(*item)]
        return out + [(f, r) for f, _, r in items]

    def flush(self) -> list[tuple[int, EnsembleOutput]]:
        """End the current segment (track end or break): every row still held, in frame order."""
        items: list[Item] = []
        for stage in self.stages:
            items = [done for item in items for done in stage.push(*item)] + stage.end()
        self.last_time = None
        return [(f, r) for f, _, r in items]
