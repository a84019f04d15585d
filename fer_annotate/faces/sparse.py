"""Faces in every sampled frame with the detector run on only some of them (`--detect-every K`).

The detector runs on every Kth sampled frame. In between, each confirmed face's box (and keypoints)
is the tracker's constant-velocity prediction, and the frame is detected at once instead when

- a shot cut is seen (faces/cuts.py), or
- a predicted box no longer shows the face it followed (its grey 16x16 thumbnail correlates less than
  `min_similarity` with the one taken at the face's last detection: the face moved off its
  prediction, turned away, or was covered), or
- a new face is waiting for confirmation, or a known face was missed in its last frame (the tracker
  needs real detections, frame after frame, to confirm the one and keep or end the other).

With K = 1 every frame is detected (one batched call), as before. The tracker is updated here, frame
by frame, because a prediction needs the state after the previous frame; at a shot cut it is told
first (every track ends there) unless cut detection is off (`CutConfig.cuts`).
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fer_annotate.faces.cuts import CutConfig, CutDetector
from fer_annotate.faces.detect import Detections, FaceDetector
from fer_annotate.faces.track import Tracker

DETECT_EVERY = 2  # the CLI default, chosen from the speed / accuracy table in the README ("Detecting every Kth frame")
FACE_THUMB = 16


@dataclass
class SparseConfig:
    """How often to detect and when to detect anyway: the appearance threshold."""

    every: int = 1
    min_similarity: float = 0.7  # correlation of a predicted face's thumbnail with its last detected one

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError("detect-every must be >= 1")


def face_thumbnails(frame: torch.Tensor, boxes: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-norm grey 16x16 thumbnails [K, 256] of the boxes in one RGB frame [H, W, 3] uint8."""
    h, w = frame.shape[:2]
    out = np.zeros((len(boxes), FACE_THUMB * FACE_THUMB), dtype=np.float32)
    for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes)):
        x1, y1 = int(np.clip(np.floor(x1), 0, w - 1)), int(np.clip(np.floor(y1), 0, h - 1))
        x2, y2 = int(np.clip(np.ceil(x2), x1 + 1, w)), int(np.clip(np.ceil(y2), y1 + 1, h))
        region = frame[y1:y2, x1:x2].permute(2, 0, 1)[None].float().mean(1, keepdim=True)
        v = F.adaptive_avg_pool2d(region, FACE_THUMB).flatten().cpu().numpy()
        v = v - v.mean()
        out[i] = v / max(float(np.linalg.norm(v)), 1e-6)
    return out


class FrameFinder:
    """Detections for every frame of a batch, detected or predicted, fed to the tracker in order."""

    def __init__(self, detector: FaceDetector, config: SparseConfig, shots: CutConfig | None = None):
        self.detector = detector
        self.config = config
        self.shots = shots or CutConfig()
        self.cut_detector = CutDetector(self.shots)
        self.cuts = np.zeros(0, dtype=bool)  # the last batch's shot cuts
        self.detected = 0
        self.forced = 0

    def __call__(self, frames: torch.Tensor, times: np.ndarray, tracker: Tracker) -> list[Detections]:
        """Detections of frames [B, H, W, 3] uint8 at container times [B]; updates the tracker per frame."""
        cfg = self.config
        cut = self.cut_detector(frames) if self.shots.cuts or cfg.every > 1 else np.zeros(len(frames), dtype=bool)
        self.cuts = cut
        if cfg.every == 1:
            found = self.detector(frames)
            self.detected += len(found)
            for frame, dets, t, at_cut in zip(frames, found, times, cut, strict=True):
                if at_cut and self.shots.cuts:
                    tracker.cut()
                tracker.update(dets.boxes, float(t), dets.scores, appearance=list(face_thumbnails(frame, dets.boxes)))
            return found
        first = tracker.position + 1
        scheduled = [j for j in range(len(frames)) if (first + j) % cfg.every == 0 or cut[j]]
        found: dict[int, Detections] = {}
        if scheduled:
            picked = frames.index_select(0, torch.tensor(scheduled, device=frames.device))  # 9x frames[list]
            found = dict(zip(scheduled, self.detector(picked), strict=True))
            self.detected += len(scheduled)
        out = []
        for j, t in enumerate(times):
            t = float(t)
            if cut[j] and self.shots.cuts:
                tracker.cut()
            dets, predicted = found.get(j), False
            if dets is None:
                dets = self._predicted(frames[j], t, tracker)
                predicted = dets is not None
            if dets is None:
                dets = self.detector(frames[j : j + 1])[0]
                self.detected += 1
                self.forced += 1
            appearance = None if predicted else list(face_thumbnails(frames[j], dets.boxes))
            tracker.update(dets.boxes, t, dets.scores, dets.keypoints, appearance, predicted=predicted)
            if predicted:  # the tracker keeps the unclipped prediction; rows get boxes inside the frame
                h, w = frames.shape[1:3]
                boxes = dets.boxes.copy()
                boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
                boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
                dets = Detections(boxes, dets.scores, dets.keypoints)
            out.append(dets)
        return out

    def _predicted(self, frame: torch.Tensor, time_s: float, tracker: Tracker) -> Detections | None:
        """The tracker's predicted faces in a frame, or None when the frame must be detected."""
        if tracker.uncertain:
            return None
        boxes, scores, keypoints, refs = tracker.predicted(time_s)
        if len(boxes) and any(r is None for r in refs):
            return None
        if len(boxes):
            now = face_thumbnails(frame, boxes)
            similarity = (now * np.stack(refs)).sum(1)
            if np.any(similarity < self.config.min_similarity):
                return None
        return Detections(boxes.astype(np.float32), scores.astype(np.float32),
                          None if keypoints is None else keypoints.astype(np.float32))
