"""Shot boundaries (hard cuts, cuts through a blank frame) from tiny thumbnails of the decoded frames.

Each frame is shrunk to a 36x64 grey thumbnail and normalised (zero mean, unit spread), so that a fade,
a flash or an exposure change moves it little. Its change from the frame before is the mean absolute
difference after the best global shift of up to 8 columns and 4 rows (an eighth of the frame), so a
pan or a moving camera changes it little too. A cut changes it by about its whole spread (0.7-1.1 on
the benchmark's cuts), a shot from within by 0.0-0.3.

A frame starts a new shot when its change is at least `min_change` and `ratio` times the median change
of the last `window` frames of the current shot (a shot that keeps changing - a crash zoom, flicker -
raises its own bar), or when it turns blank (a fade to black or white: grey spread below `blank_std`),
so faces before and after a fade are never joined. A cut closer than `min_shot` frames to the last
one is ignored (the second half of a two-frame transition).

Jump cuts within one set-up (the same person in the same framing a moment later: changes of 0.3-0.45)
are deliberately below the bar: they cannot be told from a whip pan or a flash by this signal, and they
do not move an identity. The detector is causal (no look-ahead) and keeps its state between batches,
so it streams with the pipeline (benchmarks/cut_benchmark.py measures it against PySceneDetect).
"""

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from numpy.lib.stride_tricks import sliding_window_view

THUMB = (36, 64)  # rows, columns
SHIFT = (4, 8)  # the largest global shift searched (rows, columns)


@dataclass
class CutConfig:
    """Whether to detect shot cuts (`cuts`), and the thresholds of the change signal."""

    cuts: bool = True
    min_change: float = 0.5
    ratio: float = 3.0
    window: int = 10
    blank_std: float = 4.0
    min_shot: int = 3


def thumbnails(frames: torch.Tensor) -> np.ndarray:
    """Grey thumbnails [B, 36, 64] float32 0-255 of RGB frames [B, H, W, 3] uint8 (any device)."""
    x = frames.permute(0, 3, 1, 2)
    x = x if x.device.type == "cpu" else x.float()  # uint8 resampling is a CPU kernel
    return F.interpolate(x, size=THUMB, mode="bilinear", antialias=True).float().mean(1).cpu().numpy()


def shifted_change(previous: np.ndarray, current: np.ndarray) -> float:
    """Mean absolute difference of two normalised thumbnails [h, w] under the best shift up to SHIFT:
    the centre of `current` against every window of `previous`."""
    dy, dx = SHIFT
    centre = current[dy : current.shape[0] - dy, dx : current.shape[1] - dx]
    windows = sliding_window_view(previous, centre.shape)  # [2dy+1, 2dx+1, h-2dy, w-2dx]
    return float(np.abs(windows - centre).mean((2, 3)).min())


class CutDetector:
    """Flags the frames that start a new shot, batch after batch (state carries over)."""

    def __init__(self, config: CutConfig | None = None):
        self.config = config or CutConfig()
        self.last: tuple[np.ndarray, bool] | None = None  # normalised thumbnail, blank
        self.history: deque[float] = deque(maxlen=self.config.window)
        self.since_cut = self.config.min_shot
        self.cuts = 0

    def __call__(self, frames: torch.Tensor) -> np.ndarray:
        """Booleans [B]: whether each frame of RGB frames [B, H, W, 3] uint8 starts a new shot."""
        return self.from_thumbnails(thumbnails(frames))

    def from_thumbnails(self, thumbs: np.ndarray) -> np.ndarray:
        """As `__call__`, from grey thumbnails [B, h, w] (0-255) made by `thumbnails`."""
        out = np.array([self._step(t) for t in thumbs], dtype=bool)
        self.cuts += int(out.sum())
        return out

    def _step(self, thumb: np.ndarray) -> bool:
        cfg = self.config
        spread = float(thumb.std())
        blank = spread < cfg.blank_std
        norm = (thumb - thumb.mean()) / max(spread, 1e-3)
        last, self.last = self.last, (norm, blank)
        self.since_cut += 1
        if last is None:
            return False
        change = shifted_change(last[0], norm)
        bar = cfg.ratio * float(np.median(self.history)) if self.history else 0.0
        cut = change >= max(cfg.min_change, bar) or (blank and not last[1])
        if cut and self.since_cut >= cfg.min_shot:
            self.since_cut = 0
            self.history.clear()
            return True
        self.history.append(change)
        return False
