"""PyAV decoding for the videos decord mishandles (some widths, e.g. 16, 24, 48, 72 px, fail in its copy).

Same contract as decord's reader as `video.Video` uses it: frame count, presentation timestamps (start
of each frame, from the container), average rate, and RGB frames by increasing index, decoded in one
forward pass (random access reopens the file). Frames are turned upright by their display matrix (a
phone's rotation metadata) exactly as decord turns them, so every reader (and the overlay renderer)
sees the same pixels and coordinates.
"""

from pathlib import Path

import numpy as np


class PyAVFrames:
    """A video's frames by index, decoded with PyAV."""

    def __init__(self, path: str | Path):
        import av  # optional: only this fallback needs it

        self.path = str(path)
        self._av = av
        with av.open(self.path) as container:
            stream = container.streams.video[0]
            base = stream.time_base
            starts, last_end = [], 0.0
            for frame in container.decode(stream):
                t = float(frame.pts * base) if frame.pts is not None else float(frame.time or 0.0)
                starts.append(t)
                last_end = t + float((frame.duration or 0) * base)
                self.height, self.width = upright_size(frame)
            self.avg_fps = float(stream.average_rate or 0.0)
        self.stamps = np.array([starts, [*starts[1:], max(last_end, starts[-1] if starts else 0.0)]]).T
        self._container = None
        self._frames = None
        self._position = -1

    def __len__(self) -> int:
        return len(self.stamps)

    def read(self, indices: list[int]) -> np.ndarray:
        """RGB frames [B, H, W, 3] at these indices (sorted ascending)."""
        out = []
        for index in indices:
            if self._frames is None or index <= self._position:
                self._restart()
            while self._position < index:
                frame = next(self._frames)
                self._position += 1
            out.append(upright(frame))
        return np.stack(out) if out else np.zeros((0, self.height, self.width, 3), np.uint8)

    def _restart(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container = self._av.open(self.path)
        self._frames = self._container.decode(video=0)
        self._position = -1


def quarter_turns(frame) -> int:
    """Counter-clockwise quarter turns that show a decoded PyAV frame as its display matrix says."""
    return round((getattr(frame, "rotation", 0) or 0) / 90) % 4


def upright_size(frame) -> tuple[int, int]:
    """(height, width) of a decoded frame once turned upright."""
    return (frame.width, frame.height) if quarter_turns(frame) % 2 else (frame.height, frame.width)


def upright(frame) -> np.ndarray:
    """A decoded frame's RGB pixels [H, W, 3] turned upright, identical to what decord returns for it."""
    rgb = frame.to_ndarray(format="rgb24")
    turns = quarter_turns(frame)
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb
