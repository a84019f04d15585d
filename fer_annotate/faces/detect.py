"""Face detection with face-alignment's detectors, batched on downscaled frames.

Each detector returns, per frame, boxes in original pixels, scores and (where the detector gives them)
four keypoints: right eye (image left), left eye, nose tip, mouth centre. Weights come from
face-alignment's cache, `$TORCH_HOME/hub/checkpoints`, downloaded by it on first use.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F

DETECTORS = ("blazeface", "blazeface-back", "sfd", "retinaface", "dlib")
# "auto": BlazeFace's front model for videos (close faces, fast), its back model for still images (photos
# hold more and smaller faces, and one frame makes speed moot).
AUTO = "auto"
# The default minimum face side: MIN_FACE pixels, at most MIN_FACE_FRACTION of the frame's shorter side (in a
# 128 px photo of a group, 16 px is a face). A min_face given explicitly is used as is.
MIN_FACE, MIN_FACE_FRACTION = 20.0, 0.1
# Mean score a new track's first hits need before it gets an id (per detector: their scores differ in scale).
# BlazeFace values measured on the fixture videos: real faces score 0.71-0.95 (front) and 0.57-0.91 (back),
# false positives on the no-face title card 0.50-0.68 (see README, "Detectors").
CONFIRM_SCORE = {"blazeface": 0.8, "blazeface-back": 0.6, "sfd": 0.8, "retinaface": 0.8, "dlib": 0.5}


def resolve_detector(name: str, still: bool) -> str:
    """The detector to run on one input: `name`, or for "auto" the BlazeFace model that suits it."""
    if name != AUTO:
        return name
    return "blazeface-back" if still else "blazeface"


class DetectorError(Exception):
    """A detector that cannot be set up (weights missing offline, package missing)."""


@dataclass
class DetectorConfig:
    """Which detector ("auto" or one of DETECTORS) and how strict: score threshold, minimum face side in
    original pixels (None: MIN_FACE, at most MIN_FACE_FRACTION of the frame's shorter side)."""

    name: str = AUTO
    score_threshold: float = 0.5
    min_face: float | None = None
    max_side: int = 640
    device: str = "cpu"


@dataclass
class Detections:
    """Faces found in one frame: boxes [K,4] (x1,y1,x2,y2), scores [K], keypoints [K,4,2] or None."""

    boxes: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray | None

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, keep: np.ndarray) -> "Detections":
        kp = None if self.keypoints is None else self.keypoints[keep]
        return Detections(self.boxes[keep], self.scores[keep], kp)


def _checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _require_weights(detector: str, urls: list[str]) -> None:
    """Fail early, with the file name and folder, when weights are neither cached nor downloadable."""
    folder = _checkpoint_dir()
    missing = [os.path.basename(urlparse(u).path) for u in urls]
    missing = [name for name in missing if not (folder / name).is_file()]
    if missing and os.environ.get("FER_ANNOTATE_OFFLINE", "") not in ("", "0"):
        raise DetectorError(
            f"detector {detector}: weights {', '.join(missing)} not in {folder} and offline mode is on; "
            f"put the file(s) there (set TORCH_HOME to change the folder) or use --detector blazeface"
        )


def _load_error(detector: str, urls: list[str], exc: Exception) -> DetectorError:
    folder = _checkpoint_dir()
    names = [os.path.basename(urlparse(u).path) for u in urls]
    return DetectorError(
        f"detector {detector}: could not load weights {', '.join(names)} ({type(exc).__name__}); "
        f"face-alignment downloads them into {folder} on first use on a connected machine; "
        f"offline, copy them there (TORCH_HOME sets the folder)"
    )


def _load(detector: str, urls: list[str], make: Callable[[], object]) -> object:
    """Build a face-alignment detector, turning a failed weights download into a DetectorError."""
    _require_weights(detector, urls)
    try:
        return make()
    except Exception as exc:  # urllib, torch.hub and torch.load raise many kinds
        raise _load_error(detector, urls, exc) from None


def _letterbox(frames: torch.Tensor, size: int) -> tuple[torch.Tensor, float]:
    """Shrink frames [B,3,H,W] (uint8 or float) so the long side is `size`, pad bottom/right to a square.

    Returns the padded frames, in the input's dtype, and the scale back to the input's pixels.
    """
    _, _, h, w = frames.shape
    scale = max(h, w) / size
    rh, rw = min(size, round(h / scale)), min(size, round(w / scale))
    resized = F.interpolate(frames, size=(rh, rw), mode="bilinear", antialias=True, align_corners=False)
    return F.pad(resized, (0, size - rw, 0, size - rh)), scale


def _downscale(frames: torch.Tensor, max_side: int) -> tuple[torch.Tensor, float]:
    """Shrink frames [B,3,H,W] so the long side is at most max_side; returns the factor back to pixels."""
    _, _, h, w = frames.shape
    factor = max(h, w) / max_side
    if factor <= 1:
        return frames, 1.0
    size = (round(h / factor), round(w / factor))
    out = F.interpolate(frames, size=size, mode="bilinear", antialias=True, align_corners=False)
    return out, h / size[0]


BLAZEFACE_URLS = {  # as in face_alignment.detection.blazeface.blazeface_detector (its cache file names)
    "blazeface": ("https://github.com/hollance/BlazeFace-PyTorch/blob/master/blazeface.pth?raw=true",
                  "https://github.com/hollance/BlazeFace-PyTorch/blob/master/anchors.npy?raw=true"),
    "blazeface-back": ("https://github.com/hollance/BlazeFace-PyTorch/blob/master/blazefaceback.pth?raw=true",
                       "https://github.com/hollance/BlazeFace-PyTorch/blob/master/anchorsback.npy?raw=true"),
}


def _blazeface_module():
    """face_alignment's BlazeFace network module, loaded on its own.

    Importing it the usual way runs face_alignment's package imports (its landmark API with scikit-image
    and numba, about 0.3-0.5 s); the network file itself needs only torch and numpy.
    """
    import importlib.util
    import sys

    name = "fer_annotate._face_alignment_net_blazeface"
    if name in sys.modules:
        return sys.modules[name]
    package = importlib.util.find_spec("face_alignment")
    if package is None or not package.submodule_search_locations:
        raise DetectorError("detector blazeface: the face-alignment package is not installed")
    path = Path(package.submodule_search_locations[0]) / "detection" / "blazeface" / "net_blazeface.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


class BlazeFace:
    """MediaPipe BlazeFace (front 128 px for close faces, back 256 px for smaller ones), with 6 keypoints.

    Weights in face-alignment's cache are loaded straight into its network; otherwise face-alignment's
    detector class fetches them. Frames are letterboxed while still uint8 (on CPU) and only the small
    image is converted to float: converting full frames first cost a third of the detector's time. On CPU
    the network and its input are channels-last: its depthwise convolutions then ran twice as fast.
    """

    def __init__(self, config: DetectorConfig, back: bool):
        name = "blazeface-back" if back else "blazeface"
        urls = list(BLAZEFACE_URLS[name])
        weights, anchors = (_checkpoint_dir() / os.path.basename(urlparse(u).path) for u in urls)
        if weights.is_file() and anchors.is_file():
            try:
                net = _blazeface_module().BlazeFace(back_model=back)
                net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
                net.load_anchors_from_npy(np.load(anchors), config.device)
            except Exception as exc:  # torch.load and numpy raise many kinds on a damaged file
                raise _load_error(name, urls, exc) from None
            net.min_score_thresh = config.score_threshold
            net.min_suppression_threshold = 0.3
            self.net = net.to(config.device).eval()
        else:
            from face_alignment.detection.blazeface import blazeface_detector as bf

            det = _load(name, urls, lambda: bf.BlazeFaceDetector(
                config.device, back_model=back, min_score_thresh=config.score_threshold))
            self.net = det.face_detector
        self.size = 256 if back else 128
        self.layout = torch.channels_last if torch.device(config.device).type == "cpu" else torch.contiguous_format
        self.net = self.net.to(memory_format=self.layout)

    def __call__(self, frames: torch.Tensor) -> list[Detections]:
        if frames.device.type != "cpu":  # uint8 resampling is a CPU kernel
            frames = frames.float()
        small, scale = _letterbox(frames, self.size)
        preds = self.net.predict_on_batch(small.float().clamp(0, 255).contiguous(memory_format=self.layout))
        out = []
        for p in preds:
            p = p.detach().cpu().numpy().reshape(-1, 17)
            boxes = p[:, [1, 0, 3, 2]] * self.size * scale
            keypoints = p[:, 4:12].reshape(-1, 4, 2) * self.size * scale
            out.append(Detections(boxes.astype(np.float32), p[:, 16].astype(np.float32), keypoints.astype(np.float32)))
        return out


class SFD:
    """S3FD, the face-alignment default: accurate on small faces, no keypoints (box crops)."""

    def __init__(self, config: DetectorConfig):
        from face_alignment.detection.sfd import sfd_detector as sfd

        urls = [sfd.models_urls["s3fd"]]
        self.det = _load("sfd", urls, lambda: sfd.SFDDetector(config.device, filter_threshold=config.score_threshold))
        self.max_side = config.max_side

    def __call__(self, frames: torch.Tensor) -> list[Detections]:
        small, factor = _downscale(frames.float(), self.max_side)
        out = []
        for boxes in self.det.detect_from_batch(small):
            arr = np.asarray(boxes, dtype=np.float32).reshape(-1, 5)
            out.append(Detections(arr[:, :4] * factor, arr[:, 4], None))
        return out


class RetinaFace:
    """RetinaFace (MobileNet 0.25) with its five landmarks, run through face-alignment's network."""

    def __init__(self, config: DetectorConfig):
        from face_alignment.detection.retinaface import retinaface_detector as rf

        urls = [rf.models_urls["retinaface_mobilenet0.25"]]
        self.det = _load("retinaface", urls, lambda: rf.RetinaFaceDetector(
            config.device, confidence_threshold=config.score_threshold))
        self.max_side = config.max_side
        self.threshold = config.score_threshold

    def __call__(self, frames: torch.Tensor) -> list[Detections]:
        from face_alignment.detection.retinaface.box_utils import decode, py_cpu_nms
        from face_alignment.detection.retinaface.prior_box import PriorBox

        small, factor = _downscale(frames.float(), self.max_side)
        _, _, h, w = small.shape
        bgr = small.flip(1) - torch.tensor([104.0, 117.0, 123.0], device=small.device).view(1, 3, 1, 1)
        with torch.inference_mode():
            loc, conf, landms = self.det.face_detector(bgr)
        priors = PriorBox(self.det.cfg, image_size=(h, w)).forward().to(small.device)
        var = self.det.variance
        size = torch.tensor([w, h], device=small.device, dtype=torch.float32)
        out = []
        for i in range(small.shape[0]):
            scores = conf[i, :, 1]
            keep = scores > self.threshold
            boxes = decode(loc[i][keep], priors[keep], var) * size.repeat(2)
            pts = landms[i][keep].view(-1, 5, 2) * var[0] * priors[keep, None, 2:] + priors[keep, None, :2]
            pts = pts * size
            dets = np.hstack([boxes.cpu().numpy(), scores[keep].cpu().numpy()[:, None]]).astype(np.float32)
            order = py_cpu_nms(dets, self.det.nms_threshold) if len(dets) else []
            dets, pts = dets[order], pts.cpu().numpy()[order]
            # RetinaFace order: left eye, right eye (image left/right), nose, mouth left, mouth right.
            four = np.stack([pts[:, 0], pts[:, 1], pts[:, 2], (pts[:, 3] + pts[:, 4]) / 2], axis=1)
            out.append(Detections(dets[:, :4] * factor, dets[:, 4], (four * factor).astype(np.float32)))
        return out


class Dlib:
    """dlib's HOG frontal detector (CPU, no weights file); score = logistic of the SVM margin."""

    def __init__(self, config: DetectorConfig):
        try:
            import dlib
        except ImportError:
            raise DetectorError("detector dlib: the dlib package is not installed (pip install dlib-bin)") from None
        self.det = dlib.get_frontal_face_detector()
        self.max_side = config.max_side

    def __call__(self, frames: torch.Tensor) -> list[Detections]:
        small, factor = _downscale(frames.float(), self.max_side)
        gray = (small * torch.tensor([0.299, 0.587, 0.114], device=small.device).view(1, 3, 1, 1)).sum(1)
        gray = gray.clamp(0, 255).to(torch.uint8).cpu().numpy()
        out = []
        for img in gray:
            rects, scores, _ = self.det.run(img, 0, 0.0)
            boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], dtype=np.float32)
            confidence = 1 / (1 + np.exp(-np.asarray(scores, dtype=np.float32)))
            out.append(Detections(boxes.reshape(-1, 4) * factor, confidence, None))
        return out


class FaceDetector:
    """The chosen detector plus the score and minimum-size filters, on batches of RGB frames."""

    def __init__(self, config: DetectorConfig):
        config = replace(config, name=resolve_detector(config.name, still=False))
        if config.name not in DETECTORS:
            raise DetectorError(f"unknown detector {config.name!r}; choose one of {', '.join(DETECTORS)}")
        self.config = config
        if config.name in ("blazeface", "blazeface-back"):
            self.impl = BlazeFace(config, back=config.name == "blazeface-back")
        elif config.name == "sfd":
            self.impl = SFD(config)
        elif config.name == "retinaface":
            self.impl = RetinaFace(config)
        else:
            self.impl = Dlib(config)

    def __call__(self, frames: np.ndarray | torch.Tensor) -> list[Detections]:
        """Detect faces in RGB frames [B,H,W,3] uint8; boxes clipped to the frame."""
        if isinstance(frames, np.ndarray):
            frames = torch.from_numpy(frames)
        frames = frames.to(self.config.device)
        h, w = frames.shape[1:3]
        min_face = self.config.min_face
        if min_face is None:
            min_face = min(MIN_FACE, MIN_FACE_FRACTION * min(h, w))
        with torch.inference_mode():
            found = self.impl(frames.permute(0, 3, 1, 2))
        out = []
        for d in found:
            d.boxes[:, [0, 2]] = d.boxes[:, [0, 2]].clip(0, w)
            d.boxes[:, [1, 3]] = d.boxes[:, [1, 3]].clip(0, h)
            side = np.minimum(d.boxes[:, 2] - d.boxes[:, 0], d.boxes[:, 3] - d.boxes[:, 1])
            keep = (d.scores >= self.config.score_threshold) & (side >= min_face)
            out.append(d.select(keep))
        return out
