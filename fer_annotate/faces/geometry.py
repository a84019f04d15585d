"""Face geometry from MediaPipe's face landmarker: 52 blendshape scores, head pose and 478 3D landmarks.

The landmarker (Tasks API, IMAGE mode, one face) runs on face regions that we cut out ourselves, so
face ids and boxes stay ours. Small regions are upscaled and padded with black first: on 200 FER2013
faces (48 px) it found 163 as is and 186 upscaled to 192 px and padded by 48 px each side
(benchmarks/geometry_benchmark.py).

Head pose comes from the facial transformation matrix (canonical face -> camera, x right, y up,
z towards the viewer), decomposed as R = Ry(yaw) Rx(-pitch) Rz(roll), in degrees:
  yaw   > 0: the person turns to their left (nose towards the image's right);
  pitch > 0: the person looks up;
  roll  > 0: the face is rotated counter-clockwise in the image as the viewer sees it
             (the head tilts towards the person's right shoulder).
Mirroring an image negates yaw and roll and keeps pitch; rotating it counter-clockwise by a degrees
adds about a to roll.

The model file (`face_landmarker.task`, Apache-2.0) is resolved by `resolve_model`: an explicit path,
else the cache, downloaded there on first use and checked against its SHA-256.
"""

import logging
import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from fer_annotate.files.fetch import DownloadError, cache_dir, download, sha256_file

if TYPE_CHECKING:
    from fer_annotate.faces.detect import Detections

log = logging.getLogger(__name__)

MODEL_URL = ("https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/float16/1/"
             "face_landmarker.task")
MODEL_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
MODEL_NAME = "face_landmarker.task"

BLENDSHAPES: tuple[str, ...] = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft",
    "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft",
    "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft",
    "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft",
    "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
)
POSE_ANGLES = ("yaw", "pitch", "roll")
N_LANDMARKS = 478

POSE_COLUMNS = tuple(f"pose_{a}" for a in POSE_ANGLES)
BLENDSHAPE_COLUMNS = tuple(f"bs_{n.lstrip('_')}" for n in BLENDSHAPES)
LANDMARK_COLUMNS = tuple(f"lm{i}_{c}" for i in range(N_LANDMARKS) for c in "xyz")


def landmark_columns() -> list[str]:
    """Column names of the 478 landmarks: lm0_x, lm0_y, lm0_z, lm1_x, ..."""
    return list(LANDMARK_COLUMNS)


class GeometryError(Exception):
    """The landmarker cannot run: mediapipe missing, model file missing or bad."""


@dataclass
class FaceGeometry:
    """Landmarker results for N face images; NaN rows where no face was found."""

    found: np.ndarray  # [N] bool
    blendshapes: np.ndarray  # [N, 52] float32 in [0, 1]
    pose: np.ndarray  # [N, 3] float32 degrees (yaw, pitch, roll)
    landmarks: np.ndarray  # [N, 478, 3] float32: x, y in input pixels, z scaled like x

    @classmethod
    def empty(cls, n: int) -> "FaceGeometry":
        return cls(np.zeros(n, bool), np.full((n, len(BLENDSHAPES)), np.nan, np.float32),
                   np.full((n, 3), np.nan, np.float32), np.full((n, N_LANDMARKS, 3), np.nan, np.float32))


def resolve_model(path: str | os.PathLike | None = None) -> Path:
    """The landmarker model file: `path` if given, else the cache copy, downloaded on first use.

    The cache is $FER_ANNOTATE_CACHE (default ~/.cache/fer-annotate) /mediapipe/face_landmarker.task.
    With FER_ANNOTATE_OFFLINE=1, or when the download fails, raises GeometryError saying where to put it.
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise GeometryError(f"{p}: face landmarker model not found")
        return p
    dest = cache_dir() / "mediapipe" / MODEL_NAME
    if dest.is_file():
        return dest
    where = (f"put {MODEL_NAME} (SHA-256 {MODEL_SHA256[:12]}..., from {MODEL_URL}) at {dest} "
             "or pass its path explicitly")
    if os.environ.get("FER_ANNOTATE_OFFLINE") == "1":
        raise GeometryError(f"face landmarker model not in the cache and FER_ANNOTATE_OFFLINE=1: {where}")
    log.info("downloading %s to %s", MODEL_URL, dest)
    try:
        download(MODEL_URL, dest, sha256=MODEL_SHA256, progress=False)
    except DownloadError as exc:
        raise GeometryError(f"face landmarker model not in the cache and not downloadable ({exc}); {where}") from None
    return dest


def pose_from_matrix(matrix: np.ndarray) -> np.ndarray:
    """(yaw, pitch, roll) in degrees from a 4x4 facial transformation matrix (conventions in the module doc)."""
    r = np.asarray(matrix, np.float64)[:3, :3]
    r = r / np.linalg.norm(r, axis=0, keepdims=True)  # drop any uniform scale
    yaw = np.arctan2(r[0, 2], r[2, 2])
    pitch = np.arcsin(np.clip(r[1, 2], -1.0, 1.0))  # R[1,2] = -sin(x-rotation); x-rotation > 0 looks down
    roll = np.arctan2(r[1, 0], r[1, 1])
    return np.degrees([yaw, pitch, roll]).astype(np.float32)


def _prepare(image: np.ndarray, min_side: int, pad: float) -> tuple[np.ndarray, float, int, int]:
    """Upscale so the short side is at least min_side, pad with black; returns the image, scale and offsets."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 HxWx3 image, got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    scale = max(1.0, min_side / max(1, min(h, w)))
    if scale > 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
        scale_x, scale_y = size[0] / w, size[1] / h
        scale = (scale_x + scale_y) / 2
    margin = round(pad * max(image.shape[:2]))
    if margin:
        image = np.pad(image, ((margin, margin), (margin, margin), (0, 0)))
    return np.ascontiguousarray(image), scale, margin, margin


def face_regions(frame: np.ndarray, boxes: np.ndarray, scale: float) -> tuple[list[np.ndarray], np.ndarray]:
    """Square regions of side `scale` x the longer box side around boxes [K,4], clipped to the frame;
    returns them and their top-left corners [K,2]."""
    h, w = frame.shape[:2]
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = np.max(boxes[:, 2:] - boxes[:, :2], axis=1, keepdims=True) * scale / 2
    lo = np.clip(np.floor(centre - half), 0, [w - 1, h - 1]).astype(int)
    hi = np.maximum(np.clip(np.ceil(centre + half), 0, [w, h]).astype(int), lo + 1)
    return [frame[y0:y1, x0:x1] for (x0, y0), (x1, y1) in zip(lo, hi, strict=True)], lo


def _close_task(task: object) -> None:
    """Close a mediapipe task; at interpreter exit its executor is gone, and the OS frees what is left."""
    try:
        task.close()
    except RuntimeError:
        task._handle = None  # keeps mediapipe's own __del__ from retrying (and failing) during shutdown


class Landmarker:
    """MediaPipe's face landmarker on face regions (one face each), results in each input's pixel coordinates."""

    def __init__(self, model: str | os.PathLike | None = None, min_side: int = 192, pad: float = 0.25):
        try:
            import mediapipe as mp
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError:
            raise GeometryError("the geometry stage needs mediapipe: pip install 'fer-annotate[geometry]'") from None
        self.model_path = resolve_model(model)
        self.min_side, self.pad = min_side, pad
        self._mp = mp
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(self.model_path)),
            running_mode=vision.RunningMode.IMAGE, num_faces=1,
            output_face_blendshapes=True, output_facial_transformation_matrixes=True)
        try:
            self._task = vision.FaceLandmarker.create_from_options(options)
        except (RuntimeError, ValueError) as exc:
            raise GeometryError(f"{self.model_path}: cannot load the face landmarker ({exc})") from None
        self._finalizer = weakref.finalize(self, _close_task, self._task)

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> "Landmarker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, images: list[np.ndarray]) -> FaceGeometry:
        """Run on RGB uint8 face regions of any size; landmarks are mapped back to each input's pixels."""
        out = FaceGeometry.empty(len(images))
        index = {name: i for i, name in enumerate(BLENDSHAPES)}
        for i, image in enumerate(images):
            prepared, scale, off_x, off_y = _prepare(image, self.min_side, self.pad)
            result = self._task.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=prepared))
            if not result.face_landmarks:
                continue
            ph, pw = prepared.shape[:2]
            pts = np.array([(p.x, p.y, p.z) for p in result.face_landmarks[0]], np.float64)
            out.landmarks[i, :, 0] = (pts[:, 0] * pw - off_x) / scale
            out.landmarks[i, :, 1] = (pts[:, 1] * ph - off_y) / scale
            out.landmarks[i, :, 2] = pts[:, 2] * pw / scale
            for category in result.face_blendshapes[0]:
                out.blendshapes[i, index[category.category_name]] = category.score
            out.pose[i] = pose_from_matrix(np.asarray(result.facial_transformation_matrixes[0]))
            out.found[i] = True
        return out


@dataclass
class GeometryConfig:
    """The pipeline's geometry stage: which model file, how regions are cut, whether landmarks are written."""

    model: Path | None = None  # None: the cache copy (see resolve_model)
    region_scale: float = 1.5  # region side / longer side of our detection box, square around its centre
    min_side: int = 192
    pad: float = 0.25
    landmarks: bool = False


class GeometryStage:
    """Per detection: cut a square region around our box, run the landmarker, return table cells."""

    def __init__(self, config: GeometryConfig):
        self.config = config
        self.landmarker = Landmarker(config.model, config.min_side, config.pad)
        self.sha256 = sha256_file(self.landmarker.model_path)

    def columns(self) -> list[str]:
        """Table columns this stage adds: pose, blendshapes, then (optionally) landmarks."""
        return [*POSE_COLUMNS, *BLENDSHAPE_COLUMNS, *(LANDMARK_COLUMNS if self.config.landmarks else ())]

    def describe(self) -> dict:
        """What the sidecar records: the model file and its checksum, the settings, mediapipe's version."""
        from importlib.metadata import version

        return {"kind": "mediapipe-face-landmarker", "model": str(self.landmarker.model_path), "sha256": self.sha256,
                "mediapipe": version("mediapipe"), "region_scale": self.config.region_scale,
                "min_side": self.config.min_side, "pad": self.config.pad, "landmarks": self.config.landmarks}

    def regions(self, frame: np.ndarray, boxes: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """Square regions around boxes [K,4], clipped to the frame; returns them and their top-left corners."""
        return face_regions(frame, boxes, self.config.region_scale)

    def __call__(self, frames: np.ndarray, found: "list[Detections]") -> list[list[dict]]:
        """Cells for every detection of a batch of frames [B,H,W,3]; {} where no face was found in the region."""
        regions, corners, counts = [], [], []
        for frame, dets in zip(frames, found, strict=True):
            counts.append(len(dets))
            if len(dets):
                r, c = self.regions(frame, dets.boxes)
                regions += r
                corners.append(c)
        if not regions:
            return [[] for _ in found]
        geo = self.landmarker(regions)
        geo.landmarks[:, :, :2] += np.concatenate(corners)[:, None, :]
        cells = [self._cells(geo, i) for i in range(len(regions))]
        out, k = [], 0
        for n in counts:
            out.append(cells[k : k + n])
            k += n
        return out

    def _cells(self, geo: FaceGeometry, i: int) -> dict:
        if not geo.found[i]:
            return {}
        cells = {c: round(float(v), 3) for c, v in zip(POSE_COLUMNS, geo.pose[i], strict=True)}
        cells.update({c: round(float(v), 5) for c, v in zip(BLENDSHAPE_COLUMNS, geo.blendshapes[i], strict=True)})
        if self.config.landmarks:
            cells.update(zip(LANDMARK_COLUMNS, np.round(geo.landmarks[i].astype(np.float64), 2).ravel().tolist(),
                             strict=True))
        return cells
