"""Clips with known shot boundaries, built from ../shared/fixtures (for benchmarks/cut_benchmark.py).

A clip is a list of shots joined by hard cuts, fades through black or a cross-fade (dissolve). A shot is a stretch of a
fixture video or a camera moving over a fixture still (slow pans, whip pans, fast zooms), and some
shots carry a two-frame flash: pans, zooms and flashes are changes that are not cuts.
Truth: each boundary is a range of frames [first, last]; a detection inside it is a hit, one frame
off a hard cut counts too (a two-frame tolerance in all), any other detection is a false cut.
"""

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

SIZE = (640, 360)  # width, height
FADE = 8  # frames of fade-out and of fade-in


@dataclass
class Clip:
    """Frames [N, H, W, 3] RGB uint8 and the frame ranges where a shot boundary is."""

    name: str
    frames: np.ndarray
    boundaries: list[tuple[int, int]] = field(default_factory=list)


def video_shot(path: Path, start: int, n: int) -> np.ndarray:
    """n frames of a fixture video from frame `start`, resized to SIZE."""
    import decord

    reader = decord.VideoReader(str(path))
    idx = [min(start + i, len(reader) - 1) for i in range(n)]
    frames = reader.get_batch(idx).asnumpy()
    return np.stack([cv2.resize(f, SIZE, interpolation=cv2.INTER_AREA) for f in frames])


def still_shot(path: Path, n: int, start: tuple[float, float, float], end: tuple[float, float, float]) -> np.ndarray:
    """A camera over a still: window (left, top, width) as fractions of the still, moved linearly."""
    image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    h, w = image.shape[:2]
    out = np.empty((n, SIZE[1], SIZE[0], 3), np.uint8)
    for i in range(n):
        t = i / max(n - 1, 1)
        left, top, width = (a + (b - a) * t for a, b in zip(start, end, strict=True))
        s = SIZE[0] / (width * w)
        m = np.array([[s, 0, -left * w * s], [0, s, -top * h * s]], np.float32)
        out[i] = cv2.warpAffine(image, m, SIZE, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
    return out


def flash(frames: np.ndarray, at: int, gain: float = 1.8) -> np.ndarray:
    """Brighten two frames (a photographer's flash): not a cut."""
    frames = frames.copy()
    frames[at : at + 2] = np.clip(frames[at : at + 2].astype(np.float32) * gain + 40, 0, 255).astype(np.uint8)
    return frames


def join(name: str, shots: list[np.ndarray], transitions: list[str]) -> Clip:
    """Shots joined by 'cut' or 'fade' (through black: the last FADE frames of one shot darken, the
    first FADE of the next brighten)."""
    parts, boundaries, n = [], [], 0
    for k, shot in enumerate(shots):
        shot = shot.astype(np.float32)
        if k > 0 and transitions[k - 1] == "fade":
            shot[:FADE] *= np.linspace(0, 1, FADE + 2)[1:-1, None, None, None]
        if k < len(shots) - 1 and transitions[k] == "fade":
            shot[-FADE:] *= np.linspace(1, 0, FADE + 2)[1:-1, None, None, None]
        if k > 0:
            if transitions[k - 1] == "cut":
                boundaries.append((n - 1, n))
            else:
                boundaries.append((n - FADE, n + FADE - 1))
        parts.append(np.clip(shot + 0.5, 0, 255).astype(np.uint8))
        n += len(shot)
    return Clip(name, np.concatenate(parts), boundaries)


def dissolve(name: str, a: np.ndarray, b: np.ndarray, n: int) -> Clip:
    """Shot a cross-fading into shot b over n frames (a boundary over the whole cross-fade)."""
    alpha = np.linspace(0, 1, n + 2)[1:-1, None, None, None]
    blend = a[-n:].astype(np.float32) * (1 - alpha) + b[:n].astype(np.float32) * alpha
    frames = np.concatenate([a[:-n], np.clip(blend + 0.5, 0, 255).astype(np.uint8), b[n:]])
    return Clip(name, frames, [(len(a) - n, len(a) - 1)])


def clips(shared: Path) -> list[Clip]:
    """The benchmark's clips (about 1,900 frames at 640x360)."""
    v, im = shared / "fixtures" / "videos", shared / "fixtures" / "images"
    wolf, single = v / "pyfeat_WolfgangLanger_Pexels.mp4", v / "pyfeat_single_face.mp4"
    noface, facenoface = v / "pyfeat_no_face.mp4", v / "pyfeat_face_noface.mov"
    group, crowd, grass = im / "pyfeat_multi_face.jpg", im / "t1.jpg", im / "fa_grass.jpg"
    grid, hopper, astro = im / "fa_aflw-test-grid3x3.jpg", im / "grace_hopper.jpg", im / "astronaut.png"
    out = [
        join("videos-cuts", [video_shot(wolf, 0, 60), video_shot(single, 0, 50), video_shot(wolf, 200, 40),
                             video_shot(noface, 0, 45), video_shot(facenoface, 0, 72), video_shot(facenoface, 73, 50),
                             video_shot(wolf, 400, 50)], ["cut"] * 6),  # the .mov cuts at its frame 72 (black)
        # the same person's video cut to another moment of itself: similar colours on both sides
        join("same-scene-cuts", [video_shot(wolf, 0, 50), video_shot(wolf, 150, 50), video_shot(wolf, 300, 50),
                                 video_shot(wolf, 420, 45)], ["cut"] * 3),
        join("stills-pans", [still_shot(group, 60, (0, 0.1, 0.6), (0.4, 0.1, 0.6)),
                             still_shot(crowd, 40, (0.0, 0.1, 0.5), (0.5, 0.2, 0.5)),  # whip pan
                             still_shot(grass, 50, (0.0, 0.0, 0.7), (0.3, 0.1, 0.7)),
                             still_shot(grid, 50, (0.0, 0.0, 1.0), (0.35, 0.35, 0.3)),  # fast zoom
                             still_shot(hopper, 40, (0.1, 0.05, 0.8), (0.05, 0.0, 0.9))],
             ["cut", "cut", "cut", "cut"]),
        join("fades", [video_shot(wolf, 0, 60), still_shot(group, 60, (0.2, 0.1, 0.6), (0.1, 0.1, 0.6)),
                       video_shot(single, 0, 60), still_shot(astro, 50, (0, 0, 1), (0.1, 0.1, 0.8))],
             ["fade", "fade", "cut"]),
        join("pans-zooms", [np.concatenate([still_shot(crowd, 30, (0.0, 0.2, 0.4), (0.0, 0.2, 0.4)),
                                            still_shot(crowd, 12, (0.0, 0.2, 0.4), (0.6, 0.2, 0.4)),  # whip pan
                                            still_shot(crowd, 30, (0.6, 0.2, 0.4), (0.6, 0.2, 0.4))]),
                            np.concatenate([still_shot(group, 20, (0.0, 0.0, 0.9), (0.0, 0.0, 0.9)),
                                            still_shot(group, 10, (0.0, 0.0, 0.9), (0.4, 0.3, 0.3)),  # crash zoom
                                            still_shot(group, 30, (0.4, 0.3, 0.3), (0.45, 0.3, 0.3))])], ["cut"]),
        dissolve("dissolve", video_shot(single, 0, 60), video_shot(wolf, 100, 70), 12),
        join("flashes", [flash(video_shot(wolf, 100, 80), 30), flash(video_shot(single, 0, 70), 40)], ["cut"]),
    ]
    return out
