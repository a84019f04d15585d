"""Decode a video with decord: frames in batches, container timestamps, time window and sampling.

Still images (`still.py`) open as one-frame videos at time 0.

Timestamps are the presentation timestamps decord reads from the container (the start of each frame),
never index / fps, so variable-frame-rate video gets exact times.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import decord
import numpy as np

from fer_annotate.media.native import captured_stderr
from fer_annotate.media.still import IMAGE_EXTENSIONS, StillError, StillImage, is_image
from fer_annotate.media.stream import ForwardReader

decord.logging.set_level(decord.logging.QUIET)

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")


class VideoError(Exception):
    """A video that cannot be read; the message is one line naming the file."""


@dataclass
class Sampling:
    """Which frames to annotate: a time window in seconds and every Nth frame or a target rate."""

    start_s: float | None = None
    end_s: float | None = None
    every: int = 1
    fps: float | None = None

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError("every must be >= 1")
        if self.fps is not None and self.fps <= 0:
            raise ValueError("fps must be > 0")
        if self.start_s is not None and self.end_s is not None and self.end_s <= self.start_s:
            raise ValueError("end must be after start")


@dataclass
class VideoInfo:
    """What the container says about a video."""

    path: str
    n_frames: int
    width: int
    height: int
    avg_fps: float
    duration_s: float


@dataclass
class FrameBatch:
    """Decoded frames: indices into the video, their container timestamps and RGB pixels [B, H, W, 3]."""

    indices: np.ndarray
    times: np.ndarray
    frames: np.ndarray


def _reason(exc: Exception, logs: list[str]) -> str:
    """A decoder failure as a plain sentence (never the decoder's internal file names or checks)."""
    text = " ".join([*logs, str(exc)])
    for needle, reason in (
        ("cannot find video stream", "no video stream (audio only, or no pictures at all)"),
        ("moov atom not found", "not a readable video container (no index: empty, truncated or not a video)"),
        ("broken metadata", "not a video with a frame count and duration (an image, a raw stream without a "
                            "container, or a broken container)"),
        ("Invalid data found", "not a video file (invalid data)"),
        ("partial file", "truncated file"),
        ("av_read_frame failed", "truncated or corrupt video (reading packets failed)"),
        ("filter graph", "corrupt or truncated video (frame decoding failed)"),
        ("Error reading", "not a readable video (unknown format or corrupt data)"),
    ):
        if needle in text:
            return reason
    return "the decoder could not read it (corrupt data or an unsupported codec)"


def _readable(path: Path) -> str | None:
    """Why a path cannot be opened as a file, or None."""
    if not path.exists():
        return "no such file"
    if not path.is_file():
        return "not a file"
    try:
        with open(path, "rb") as f:
            if not f.read(1):
                return "empty file (0 bytes)"
    except PermissionError:
        return "not readable (permission denied)"
    except OSError as exc:
        return f"not readable ({exc.strerror or type(exc).__name__})"
    return None


@contextmanager
def _utf8_name(path: str) -> Iterator[str]:
    """A name decord can take for `path`: decord passes names as UTF-8, so a name with bytes that are not
    UTF-8 is opened here and given as /proc/self/fd/N (Linux; decord opens its own descriptor from it)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        if os.path.isdir("/proc/self/fd"):
            fd = os.open(path, os.O_RDONLY)
            try:
                yield f"/proc/self/fd/{fd}"
            finally:
                os.close(fd)
            return
    yield path


def _decord_mishandles(exc: Exception, logs: list[str]) -> bool:
    """decord's frame copy fails for some small widths (16, 24, 48, 72 px); PyAV decodes those."""
    return "from_size == to_size" in " ".join([*logs, str(exc)])


class Video:
    """Container timestamps and batched, sampled frame access (decord; PyAV where decord mishandles a size;
    torchvision for still images, as one frame at time 0)."""

    def __init__(self, path: str | Path, threads: int = 0):
        """Open a video; `threads` is decord's decoder thread count (0: ffmpeg's choice, one per core)."""
        self.path = str(path)
        problem = _readable(Path(path))
        if problem is not None:
            raise VideoError(f"{self.path}: {problem}")
        self._reader = self._fallback = None
        self._threads = threads
        self.still = is_image(path)
        n, stamps, first, avg_fps = self._open_still() if self.still else self._open_decord()
        if n == 0:
            raise VideoError(f"{self.path}: no video frames")
        self.times = np.asarray(stamps[:, 0], dtype=np.float64)
        if not np.all(np.isfinite(self.times)):
            raise VideoError(f"{self.path}: container has invalid timestamps")
        self.info = VideoInfo(
            path=self.path,
            n_frames=n,
            width=int(first[1]),
            height=int(first[0]),
            avg_fps=avg_fps,
            duration_s=float(stamps[-1, 1] - stamps[0, 0]) if n else 0.0,
        )

    def _open_decord(self) -> tuple[int, np.ndarray, tuple[int, int, int], float]:
        with captured_stderr() as logs, _utf8_name(self.path) as name:
            try:
                self._reader = decord.VideoReader(name, ctx=decord.cpu(0), num_threads=self._threads)
                n = len(self._reader)
                stamps = self._reader.get_frame_timestamp(range(n)) if n else np.zeros((0, 2))
                first = self._reader.get_batch([0]).asnumpy().shape[1:] if n else (0, 0, 3)
                avg_fps = float(self._reader.get_avg_fps())
                self._reader.seek(0)
            except UnicodeEncodeError:
                raise VideoError(f"{self.path}: the file name is not valid UTF-8 and the decoder cannot open "
                                 "it on this system; rename the file") from None
            except Exception as exc:  # decord raises DECORDError / RuntimeError with multi-line logs
                if not _decord_mishandles(exc, logs):
                    raise VideoError(f"{self.path}: {_reason(exc, logs)}") from None
                self._reader = None
        if self._reader is None:
            return self._open_fallback()
        return n, stamps, first, avg_fps

    def _open_still(self) -> tuple[int, np.ndarray, tuple[int, int, int], float]:
        try:
            self._fallback = StillImage(self.path)
        except StillError as exc:
            raise VideoError(f"{self.path}: {exc}") from None
        fb = self._fallback
        return len(fb), fb.stamps, (fb.height, fb.width, 3), fb.avg_fps

    def _open_fallback(self) -> tuple[int, np.ndarray, tuple[int, int, int], float]:
        try:
            from fer_annotate.media.video_pyav import PyAVFrames

            self._fallback = PyAVFrames(self.path)
        except ImportError:
            raise VideoError(f"{self.path}: decord cannot decode this frame size; `pip install av` "
                             "lets fer-annotate decode it with PyAV") from None
        except Exception:
            raise VideoError(f"{self.path}: {_reason(RuntimeError(), [])}") from None
        fb = self._fallback
        return len(fb), fb.stamps, (fb.height, fb.width, 3), fb.avg_fps

    def select(self, sampling: Sampling) -> np.ndarray:
        """Indices of the frames to annotate, chosen by container time."""
        t = self.times
        keep = np.ones(len(t), dtype=bool)
        if sampling.start_s is not None:
            keep &= t >= sampling.start_s - 1e-6
        if sampling.end_s is not None:
            keep &= t < sampling.end_s - 1e-6
        idx = np.flatnonzero(keep)
        if sampling.fps is not None and len(idx):
            slot = np.floor((t[idx] - t[idx[0]]) * sampling.fps + 1e-6).astype(np.int64)
            first_of_slot = np.concatenate([[True], slot[1:] != slot[:-1]])
            idx = idx[first_of_slot]
        return idx[:: sampling.every]

    def batches(self, indices: np.ndarray, batch_size: int = 16) -> Iterator[FrameBatch]:
        """Decode the chosen frames in order, batch by batch (memory stays flat: decord's frames are decoded
        forward with PyAV, `stream.ForwardReader`, where the two agree on the frames' times)."""
        forward = None
        if self._reader is not None and len(indices):
            forward = ForwardReader(self.path, self.times, self._threads or 1, self._read)
        reader = forward.read if forward is not None else self._read
        try:
            for s in range(0, len(indices), batch_size):
                chunk = indices[s : s + batch_size]
                with captured_stderr() as logs:
                    try:
                        frames = reader(chunk)
                    except Exception as exc:
                        raise VideoError(
                            f"{self.path}: {_reason(exc, logs)}; decoding failed at frame {int(chunk[0])} "
                            f"of {self.info.n_frames}"
                        ) from None
                yield FrameBatch(indices=chunk, times=self.times[chunk], frames=frames)
        finally:
            if forward is not None:
                forward.close()

    def _read(self, chunk: np.ndarray) -> np.ndarray:
        """Frames at these indices by random access (decord, or the PyAV fallback reader)."""
        if self._reader is not None:
            return self._reader.get_batch(chunk.tolist()).asnumpy()
        return self._fallback.read(chunk.tolist())


def find_videos(root: Path) -> list[Path]:
    """Video and image files under a folder, recursively, by extension, in a stable order."""
    media = VIDEO_EXTENSIONS + IMAGE_EXTENSIONS
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in media)
