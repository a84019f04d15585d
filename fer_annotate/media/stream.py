"""Forward decoding with PyAV for `video.Video.batches`: memory that does not grow with the video.

decord's threaded decoder queues decoded frames without bound when its reader is slower than it (our
pipeline is: detection and the model take 10-20 times the decoding time), so a whole process's resident
memory grew with the video's length (2.7-3.6 GiB on a 4,720-frame 640x360 clip, 1.0 GiB on 472 frames;
memray shows the queued frames in decord's `FFMPEGThreadedDecoder`). Here frames are decoded one at a
time, when asked for, so at most the batch being filled is held.

Frames are matched to decord's index by their presentation time: each decoded frame's time must be the
container time decord gave that index. Where they disagree (an edit list that hides frames from one of
them, a frame without a time) the rest of the video is read with decord, as before, so the frames and
times of a video never depend on which reader served them. The RGB pixels are the same bytes as decord's
(both convert with FFmpeg's swscale; checked on the fixture videos), turned upright by the display matrix
as decord turns them (`video_pyav.upright`).
"""

from collections.abc import Callable, Iterator

import numpy as np

from fer_annotate.media.video_pyav import upright


class ForwardFrames:
    """RGB frames of a video by increasing index, decoded forward with PyAV; `None` from `take` once the
    decoded frames stop matching `times`, after which the caller reads the rest another way."""

    def __init__(self, path: str, times: np.ndarray, threads: int = 1, start: int = 0):
        import av

        self.times = times
        self.tolerance = 0.25 * float(np.min(np.diff(times))) if len(times) > 1 else 1e-3
        self.container = av.open(path)
        stream = self.container.streams.video[0]
        stream.thread_count = max(1, threads)
        stream.thread_type = "AUTO" if threads > 1 else "SLICE"
        self.base = stream.time_base
        self.position = -1  # index of the frame last decoded; None: not known yet (after a seek)
        self.frames: Iterator = self.container.decode(stream)
        if start > 0:  # from the key frame before the first wanted frame; the frames before it are skipped
            if self._index(next(self.frames, None)) != 0:  # the first frames differ (an edit list): refuse
                raise ValueError(f"{path}: PyAV's first frame is not decord's")
            self.container.seek(int(times[start] / self.base), stream=stream, backward=True, any_frame=False)
            self.frames = self.container.decode(stream)
            self.position = None

    def _index(self, frame) -> int | None:  # noqa: ANN001 (a PyAV frame)
        """The index of a decoded frame: the next one (or, after a seek, any) whose time is the frame's."""
        if frame is None or frame.pts is None:
            return None
        t = float(frame.pts * self.base)
        index = int(np.searchsorted(self.times, t - self.tolerance))
        if index >= len(self.times) or abs(self.times[index] - t) > self.tolerance:
            return None
        if self.position is not None and index != self.position + 1:
            return None
        return index

    def take(self, indices: np.ndarray) -> np.ndarray | None:
        """Frames [B, H, W, 3] uint8 at these increasing indices (all after those taken before)."""
        out: list[np.ndarray] = []
        for wanted in indices:
            while self.position is None or self.position < wanted:
                frame = next(self.frames, None)
                index = self._index(frame)
                if index is None or index > wanted:
                    return None
                self.position = index
                if index == wanted:
                    out.append(upright(frame))
        return np.stack(out)

    def close(self) -> None:
        self.container.close()


class ForwardReader:
    """Frames by increasing index: decoded forward while they match `times`, then by `fallback` (random
    access by index) for the rest; a PyAV error (damaged data) also hands over to `fallback`, which reads
    or reports it as before."""

    def __init__(self, path: str, times: np.ndarray, threads: int, fallback: Callable[[np.ndarray], np.ndarray]):
        self.path, self.times, self.threads, self.fallback = path, times, threads, fallback
        self.forward: ForwardFrames | None = None
        self.failed = False

    def read(self, chunk: np.ndarray) -> np.ndarray:
        """RGB frames [B, H, W, 3] uint8 at `chunk` (increasing, after every index read before)."""
        frames = None
        if not self.failed:
            try:
                if self.forward is None:
                    self.forward = ForwardFrames(self.path, self.times, self.threads, int(chunk[0]))
                frames = self.forward.take(chunk)
            except Exception:  # PyAV's errors on damaged data: the fallback reads (or reports) them
                frames = None
            if frames is None:
                self.failed = True
                self.close()
        return frames if frames is not None else self.fallback(chunk)

    def close(self) -> None:
        if self.forward is not None:
            self.forward.close()
            self.forward = None
