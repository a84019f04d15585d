"""Synthetic multi-face test videos with exact per-frame ground truth.

Faces are cut from the real stills in ../shared/fixtures/images and moved over a face-free
background (or the camera pans and zooms over a group photo), so the box of every face in every
frame is known exactly: each layer is drawn with a scale + translation of its still, and a face's
box is that same map applied to the face's box in the still (`FACE_BOXES`).

The still boxes are hand-measured constants: BlazeFace's back model run once on each still
(padded to a square, full resolution), rounded to whole pixels and checked by eye;
`tests/test_multiface.py::test_still_face_boxes` re-checks them against the detector.

Visibility of a face in a frame is the share of its box area that lies inside the frame and is
not covered by a layer drawn above it (opaque where that layer's alpha > 0.5).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

Box = tuple[float, float, float, float]

# Face boxes (x1, y1, x2, y2) in still pixels, in a fixed order per still.
FACE_BOXES: dict[str, list[Box]] = {
    "astronaut.png": [(173, 74, 277, 178)],
    "grace_hopper.jpg": [(170, 140, 364, 333)],
    "fa_aflw-test.jpg": [(141, 198, 304, 361)],
    "pyfeat_single_face.jpg": [(185, 192, 384, 391)],
    "pyfeat_multi_face.jpg": [
        (212, 77, 313, 178),  # top left, sunglasses
        (311, 259, 412, 360),  # second from left
        (436, 231, 513, 308),  # at the back, curly hair (smallest)
        (530, 330, 637, 436),  # centre
        (681, 319, 792, 430),  # right
    ],
}
BACKGROUND = "fa_grass.jpg"  # no face in it


@dataclass
class GTFace:
    """One face in one frame: its identity, its full box in video pixels (may reach past the
    frame edge) and the visible share of that box (0..1)."""

    gt_id: int
    box: Box
    visible: float


@dataclass
class SynthVideo:
    """A written synthetic video and its ground truth: `frames[i]` lists the faces with any part
    visible in frame i; `render_frame(i)` draws frame i again (BGR) to compare with the decoder."""

    path: Path
    width: int
    height: int
    fps: float
    frames: list[list[GTFace]]
    render_frame: Callable[[int], tuple[np.ndarray, list[GTFace]]] = field(repr=False, compare=False)

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    @property
    def gt_ids(self) -> list[int]:
        return sorted({f.gt_id for faces in self.frames for f in faces})

    def visible_faces(self, frame: int, min_visible: float = 0.9) -> list[GTFace]:
        """Faces in `frame` with at least `min_visible` of their box visible."""
        return [f for f in self.frames[frame] if f.visible >= min_visible]


@dataclass
class Layer:
    """An image drawn over the canvas through `alpha` (same size, 0..1) with the map
    canvas = still * scale + (tx, ty); `faces` are (gt_id, box in still pixels)."""

    image: np.ndarray
    alpha: np.ndarray
    scale: float
    tx: float
    ty: float
    faces: list[tuple[int, Box]]


def _read_still(images: Path, name: str) -> np.ndarray:
    image = cv2.imread(str(images / name), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(images / name)
    return image


def _disc_alpha(shape: tuple[int, int], box: Box, radius_factor: float = 1.0) -> np.ndarray:
    """A soft disc around a face box (radius = radius_factor * box side), so a cut-out face looks
    like a head on the background rather than a pasted square."""
    h, w = shape
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    radius = radius_factor * max(box[2] - box[0], box[3] - box[1])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dist = np.hypot(xx - cx, yy - cy)
    feather = 0.08 * radius
    return np.clip((radius - dist) / feather + 0.5, 0.0, 1.0).astype(np.float32)


class Sprite:
    """A face cut from a still, placed by its face centre and face side in video pixels."""

    def __init__(self, images: Path, name: str, gt_id: int, max_side: float, index: int = 0):
        still = _read_still(images, name)
        box = FACE_BOXES[name][index]
        side = max(box[2] - box[0], box[3] - box[1])
        # pre-shrink with area filtering so the per-frame bilinear warp never downsamples much
        pre = min(1.0, 1.5 * max_side / side)
        if pre < 1.0:
            still = cv2.resize(still, None, fx=pre, fy=pre, interpolation=cv2.INTER_AREA)
            box = tuple(v * pre for v in box)
            side *= pre
        self.image = still
        self.box: Box = box
        self.side = side
        self.alpha = _disc_alpha(still.shape[:2], box)
        self.gt_id = gt_id

    def layer(self, cx: float, cy: float, face_side: float) -> Layer:
        s = face_side / self.side
        bcx, bcy = (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2
        return Layer(self.image, self.alpha, s, cx - s * bcx, cy - s * bcy, [(self.gt_id, self.box)])


def _occluder(width: int, height: int, x: float, y: float, colour: tuple[int, int, int]) -> Layer:
    """A solid rectangle with its top left corner at (x, y)."""
    image = np.empty((height, width, 3), np.uint8)
    image[:] = colour
    return Layer(image, np.ones((height, width), np.float32), 1.0, x, y, [])


def _map_box(layer: Layer, box: Box) -> Box:
    s = layer.scale
    return (box[0] * s + layer.tx, box[1] * s + layer.ty, box[2] * s + layer.tx, box[3] * s + layer.ty)


def render(background: np.ndarray, layers: list[Layer]) -> tuple[np.ndarray, list[GTFace]]:
    """Composite `layers` (bottom first) over `background` (BGR uint8) and measure each face."""
    h, w = background.shape[:2]
    canvas = background.astype(np.float32)
    opaque = []
    for layer in layers:
        m = np.array([[layer.scale, 0, layer.tx], [0, layer.scale, layer.ty]], np.float32)
        image = cv2.warpAffine(layer.image, m, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        alpha = cv2.warpAffine(layer.alpha, m, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        canvas = canvas * (1 - alpha[..., None]) + image.astype(np.float32) * alpha[..., None]
        opaque.append(alpha > 0.5)
    # pixel centres (x + 0.5, y + 0.5) decide whether a pixel belongs to a box
    xs = np.arange(w) + 0.5
    ys = np.arange(h) + 0.5
    faces = []
    for i, layer in enumerate(layers):
        above = np.zeros((h, w), bool)
        for mask in opaque[i + 1:]:
            above |= mask
        for gt_id, still_box in layer.faces:
            box = _map_box(layer, still_box)
            inside = ((ys >= box[1]) & (ys < box[3]))[:, None] & ((xs >= box[0]) & (xs < box[2]))[None, :]
            area = (box[2] - box[0]) * (box[3] - box[1])
            visible = float(np.count_nonzero(inside & ~above)) / area
            if visible > 0:
                faces.append(GTFace(gt_id, box, min(1.0, visible)))
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8), faces


def write_video(path: Path, n_frames: int, fps: float, size: tuple[int, int],
                frame_fn: Callable[[int], tuple[np.ndarray, list[GTFace]]]) -> SynthVideo:
    """Write frames 0..n_frames-1 from frame_fn(i) -> (BGR image, faces) as MPEG-4 part 2 .mp4."""
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"cv2.VideoWriter cannot write {path}")
    frames = []
    try:
        for i in range(n_frames):
            image, faces = frame_fn(i)
            writer.write(image)
            frames.append(faces)
    finally:
        writer.release()
    return SynthVideo(Path(path), w, h, fps, frames, frame_fn)


def _background(images: Path, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    still = _read_still(images, BACKGROUND)
    sh, sw = still.shape[:2]
    s = max(w / sw, h / sh)
    still = cv2.resize(still, (round(sw * s), round(sh * s)), interpolation=cv2.INTER_AREA)
    y0, x0 = (still.shape[0] - h) // 2, (still.shape[1] - w) // 2
    return np.ascontiguousarray(still[y0:y0 + h, x0:x0 + w])


def _lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * min(1.0, max(0.0, t))


def crossing(images: Path, path: Path, size: tuple[int, int] = (640, 360), fps: float = 25.0,
             n_frames: int = 100) -> SynthVideo:
    """Two faces cross in opposite directions (gt 1 passes in front of gt 0, hiding it for a
    while) below a third face that stays put (gt 2)."""
    w, h = size
    bg = _background(images, size)
    walker_a = Sprite(images, "astronaut.png", 0, 90)
    walker_b = Sprite(images, "grace_hopper.jpg", 1, 90)
    still = Sprite(images, "pyfeat_single_face.jpg", 2, 70)

    def frame(i: int) -> tuple[np.ndarray, list[GTFace]]:
        t = i / (n_frames - 1)
        layers = [
            still.layer(0.5 * w, 0.2 * h, 70),
            walker_a.layer(_lerp(0.12 * w, 0.88 * w, t), 0.64 * h, 90),
            walker_b.layer(_lerp(0.88 * w, 0.12 * w, t), 0.66 * h, 90),
        ]
        return render(bg, layers)

    return write_video(path, n_frames, fps, size, frame)


def enter_leave(images: Path, path: Path, size: tuple[int, int] = (640, 360), fps: float = 25.0,
                n_frames: int = 125) -> SynthVideo:
    """gt 0 walks in from the left edge and stays, a bar sweeps briefly over it; gt 1 leaves
    through the right edge and comes back; gt 2 in the middle zooms from small to large."""
    w, h = size
    bg = _background(images, size)
    walker = Sprite(images, "fa_aflw-test.jpg", 0, 90)
    leaver = Sprite(images, "pyfeat_single_face.jpg", 1, 90)
    zoomer = Sprite(images, "astronaut.png", 2, 120)

    def frame(i: int) -> tuple[np.ndarray, list[GTFace]]:
        # gt 0: enters over frames 0..30, then stays at x = 0.17 w
        x0 = _lerp(-0.12 * w, 0.17 * w, i / 30)
        # gt 1: out through the right edge over frames 10..40, away, back over frames 75..105
        if i < 75:
            x1 = _lerp(0.82 * w, 1.15 * w, (i - 10) / 30)
        else:
            x1 = _lerp(1.15 * w, 0.82 * w, (i - 75) / 30)
        zoom_side = _lerp(50, 120, i / (n_frames - 1))
        layers = [
            zoomer.layer(0.5 * w, 0.5 * h, zoom_side),
            walker.layer(x0, 0.45 * h, 90),
            leaver.layer(x1, 0.4 * h, 90),
        ]
        # a dark bar sweeps left to right across gt 0 during frames 60..66
        if 58 <= i <= 68:
            bar_x = _lerp(-60, 0.4 * w, (i - 58) / 10)
            layers.append(_occluder(40, h, bar_x, 0, (30, 30, 30)))
        return render(bg, layers)

    return write_video(path, n_frames, fps, size, frame)


def group_pan(images: Path, path: Path, size: tuple[int, int] = (640, 360), fps: float = 25.0,
              n_frames: int = 100) -> SynthVideo:
    """A camera over the five-face group photo: starts wide (all five), zooms into the right
    side (the left faces leave the view), then pans left (right faces leave, left ones return)."""
    w, h = size
    still = _read_still(images, "pyfeat_multi_face.jpg")
    sh, sw = still.shape[:2]
    alpha = np.ones((sh, sw), np.float32)
    faces = [(gt_id, box) for gt_id, box in enumerate(FACE_BOXES["pyfeat_multi_face.jpg"])]
    black = np.zeros((h, w, 3), np.uint8)
    # camera window (left, top, width) in still pixels at key frames; aspect follows the video
    keys = [(0, (0.0, 60.0, 1000.0)), (30, (0.0, 60.0, 1000.0)), (55, (440.0, 180.0, 520.0)),
            (70, (440.0, 180.0, 520.0)), (99, (120.0, 40.0, 520.0))]

    def window(i: int) -> tuple[float, float, float]:
        for (f0, a), (f1, b) in zip(keys, keys[1:], strict=False):
            if i <= f1:
                t = (i - f0) / (f1 - f0)
                return tuple(_lerp(u, v, t) for u, v in zip(a, b, strict=True))
        return keys[-1][1]

    def frame(i: int) -> tuple[np.ndarray, list[GTFace]]:
        left, top, width = window(i)
        s = w / width
        return render(black, [Layer(still, alpha, s, -left * s, -top * s, faces)])

    return write_video(path, n_frames, fps, size, frame)


def pass_by(images: Path, path: Path, size: tuple[int, int] = (640, 360), fps: float = 25.0,
            n_frames: int = 75) -> SynthVideo:
    """Two faces pass each other close enough that the front one (gt 1) covers the chin of the
    back one (gt 0) while both stay more than half visible; a small face (gt 2) runs fast
    (16 px a frame) along the top, in through the left edge and out through the right."""
    w, h = size
    bg = _background(images, size)
    back = Sprite(images, "pyfeat_single_face.jpg", 0, 80)
    front = Sprite(images, "fa_aflw-test.jpg", 1, 80)
    runner = Sprite(images, "astronaut.png", 2, 60)

    def frame(i: int) -> tuple[np.ndarray, list[GTFace]]:
        t = i / (n_frames - 1)
        layers = [
            runner.layer(_lerp(-0.1 * w, 1.1 * w, i / 48), 0.15 * h, 60),
            back.layer(_lerp(0.2 * w, 0.8 * w, t), 0.42 * h, 80),
            front.layer(_lerp(0.8 * w, 0.2 * w, t), 0.68 * h, 80),
        ]
        return render(bg, layers)

    return write_video(path, n_frames, fps, size, frame)


SCENES: dict[str, Callable[..., SynthVideo]] = {
    "crossing": crossing,
    "pass_by": pass_by,
    "enter_leave": enter_leave,
    "group_pan": group_pan,
}


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def clip_box(box: Box, width: int, height: int) -> Box:
    """The part of a box inside a width x height frame."""
    return (max(0.0, box[0]), max(0.0, box[1]), min(float(width), box[2]), min(float(height), box[3]))
