"""Multi-person videos with known identities, shot cuts and boxes (for benchmarks/identity_benchmark.py).

Synthetic scenes are drawn with tests/synth.py from the fixture stills: every face in every frame has
a known person and box. Shots are joined by hard cuts that change the background (a real cut changes
the scene), and several put a different person where another was just before the cut, the failure of
issue 22. People also leave and come back after long absences, are hidden by a bar for longer than the
tracker's patience, swap sides across a cut, and appear both in a wide group shot and in a close-up.

Real clips are fixture videos cut together; their truth is per segment (which recording, hence which
person: pyfeat_single_face.mp4 and pyfeat_face_noface.mov show the same man, the Pexels clip a woman),
and the boxes are the detector's own (identity-only scoring, see identity_benchmark.py).
"""

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import synth  # noqa: E402

SIZE = (640, 360)
Frame = tuple[np.ndarray, list[synth.GTFace]]


@dataclass
class Scene:
    """A written video, its per-frame truth and the first frame of every shot after the first."""

    name: str
    path: Path
    frames: list[list[synth.GTFace]]
    cuts: list[int] = field(default_factory=list)
    segments: list[tuple[int, int, int]] = field(default_factory=list)  # real clips: (start, end, person)


def _backgrounds(images: Path) -> list[np.ndarray]:
    """Three face-free backgrounds that differ as different scenes do."""
    grass = synth._background(images, SIZE)
    tinted = np.ascontiguousarray(grass[::-1, ::-1].astype(np.float32) * [1.4, 0.8, 0.6]).clip(0, 255)
    yy, xx = np.mgrid[0 : SIZE[1], 0 : SIZE[0]].astype(np.float32)
    rng = np.random.default_rng(0)
    wall = np.stack([90 + 60 * xx / SIZE[0], 120 + 40 * yy / SIZE[1], 170 - 50 * xx / SIZE[0]], -1)
    wall = wall + rng.normal(0, 6, wall.shape)
    return [grass, tinted.astype(np.uint8), wall.clip(0, 255).astype(np.uint8)]


def _shots(path: Path, name: str, shots: list[tuple[int, Callable[[int], Frame]]]) -> Scene:
    """Write shots (frame count, frame function of the shot's own frame number) joined by hard cuts."""
    starts = np.cumsum([0] + [n for n, _ in shots])

    def frame(i: int) -> Frame:
        k = int(np.searchsorted(starts, i, side="right") - 1)
        return shots[k][1](i - int(starts[k]))

    video = synth.write_video(path, int(starts[-1]), 25.0, SIZE, frame)
    return Scene(name, path, video.frames, [int(s) for s in starts[1:-1]])


def _people(images: Path) -> list[synth.Sprite]:
    """Persons 0-3 from the single-face stills, 4-8 the five faces of the group photo."""
    singles = ["astronaut.png", "grace_hopper.jpg", "fa_aflw-test.jpg", "pyfeat_single_face.jpg"]
    sprites = [synth.Sprite(images, name, k, 140) for k, name in enumerate(singles)]
    sprites += [synth.Sprite(images, "pyfeat_multi_face.jpg", 4 + k, 140, index=k) for k in range(5)]
    return sprites


def cut_swap(images: Path, path: Path) -> Scene:
    """Two people; cut to two others standing where they stood; cut back to the first two, sides swapped;
    cut to one of the second pair alone, larger."""
    bg = _backgrounds(images)
    p = _people(images)
    w, h = SIZE

    def pair(a: int, b: int, back: int, drift: float) -> Callable[[int], Frame]:
        return lambda i: synth.render(bg[back], [p[a].layer(0.3 * w + drift * i, 0.5 * h, 100),
                                                 p[b].layer(0.7 * w - drift * i, 0.5 * h, 100)])

    def alone(i: int) -> Frame:
        return synth.render(bg[2], [p[3].layer(0.5 * w, 0.5 * h, 150 + 0.5 * i)])

    return _shots(path, "cut_swap", [(60, pair(0, 1, 0, 0.5)), (60, pair(2, 3, 1, -0.5)),
                                     (60, pair(1, 0, 0, 0.3)), (50, alone)])


def reentry(images: Path, path: Path) -> Scene:
    """One shot: person 0 stays and is hidden by a bar for 20 frames; person 1 leaves through the right
    edge and comes back 3 s later; person 2 walks in from the left and out again."""
    bg = _backgrounds(images)[0]
    p = _people(images)
    w, h = SIZE

    def frame(i: int) -> Frame:
        if i < 100:
            x1 = synth._lerp(0.8 * w, 1.2 * w, (i - 20) / 20)
        else:
            x1 = synth._lerp(1.2 * w, 0.78 * w, (i - 100) / 20)
        x2 = synth._lerp(-0.15 * w, 0.5 * w, (i - 40) / 40) if i < 130 else synth._lerp(0.5 * w, -0.2 * w,
                                                                                         (i - 130) / 30)
        layers = [p[0].layer(0.2 * w, 0.35 * h, 90), p[1].layer(x1, 0.45 * h, 90), p[2].layer(x2, 0.7 * h, 80)]
        if 60 <= i < 80:
            layers.append(synth._occluder(130, 150, 0.2 * w - 65, 0.35 * h - 75, (40, 40, 40)))
        return synth.render(bg, layers)

    video = synth.write_video(path, 180, 25.0, SIZE, frame)
    return Scene("reentry", path, video.frames)


def group(images: Path, path: Path) -> Scene:
    """An audience: the five-face photo wide, a cut to a close-up of its centre person on another
    background, a cut back to the group (a slow pan)."""
    bg = _backgrounds(images)
    p = _people(images)
    still = synth._read_still(images, "pyfeat_multi_face.jpg")
    alpha = np.ones(still.shape[:2], np.float32)
    faces = [(4 + k, box) for k, box in enumerate(synth.FACE_BOXES["pyfeat_multi_face.jpg"])]
    black = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    w, h = SIZE

    def wide(left0: float, left1: float, n: int) -> Callable[[int], Frame]:
        def frame(i: int) -> Frame:
            left = synth._lerp(left0, left1, i / n)
            s = w / 900
            return synth.render(black, [synth.Layer(still, alpha, s, -left * s, -80 * s, faces)])
        return frame

    def close(i: int) -> Frame:
        return synth.render(bg[2], [p[7].layer(0.45 * w, 0.5 * h, 140)])

    return _shots(path, "group", [(60, wide(50, 100, 60)), (50, close), (60, wide(100, 40, 60))])


def crossing(images: Path, path: Path) -> Scene:
    """tests/synth.py's crossing: one face passes in front of another, a third stays."""
    video = synth.crossing(images, path)
    return Scene("crossing", path, video.frames)


SYNTHETIC: dict[str, Callable[[Path, Path], Scene]] = {
    "cut_swap": cut_swap, "reentry": reentry, "group": group, "crossing": crossing,
}


def real_cuts(videos: Path, path: Path) -> Scene:
    """Fixture recordings cut together: (file, first frame, frames, person)."""
    parts = [("pyfeat_WolfgangLanger_Pexels.mp4", 0, 70, 0), ("pyfeat_single_face.mp4", 0, 50, 1),
             ("pyfeat_WolfgangLanger_Pexels.mp4", 250, 60, 0), ("pyfeat_face_noface.mov", 0, 60, 1),
             ("pyfeat_single_face.mp4", 45, 27, 1), ("pyfeat_WolfgangLanger_Pexels.mp4", 400, 70, 0)]
    import decord

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, SIZE)
    segments, n = [], 0
    try:
        for name, start, count, person in parts:
            reader = decord.VideoReader(str(videos / name))
            for frame in reader.get_batch(list(range(start, start + count))).asnumpy():
                writer.write(cv2.cvtColor(cv2.resize(frame, SIZE, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR))
            segments.append((n, n + count, person))
            n += count
    finally:
        writer.release()
    return Scene("real_cuts", path, [], [s for s, _, _ in segments[1:]], segments)
