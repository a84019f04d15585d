"""Stable face ids over a whole video: association by overlap and motion, confirmed births, timed deaths.

A detection starts a tentative track; the track is confirmed (and only then gets an id) once its
last `min_hits` consecutive hits have a mean detector score of at least `confirm_score`, so short-lived
false positives never consume an id and a known face keeps its weaker detections (turned head, blur).
A confirmed track survives up to `max_misses` sampled frames without a detection (occlusion, a missed
detection) and keeps its id; after that it ends and its id is never reused. Boxes are predicted forward
with a constant-velocity model in container time, so association works under sampling and variable
frame rate. At a shot cut (`cut`) every track ends: a face after the cut gets a new id, however close its
box is to one before it. Where the caller describes each face by a unit-norm appearance vector (a grey
thumbnail), a track is also never matched to a detection that correlates with its last real detection
less than `min_appearance`: a different face in its place, as after a cut the cut detector missed
(different faces' thumbnails correlate 0.2 at the median, one face's 0.5 or more across 6 frames).

Because a birth is decided `min_hits - 1` frames late, results come out with that lag: `update` takes a
frame, `finalize` returns the frames whose assignments can no longer change.
"""

from collections import deque
from dataclasses import dataclass, field

import numpy as np


@dataclass
class TrackerConfig:
    """Association and life-cycle settings."""

    min_hits: int = 3
    confirm_score: float | None = 0.0  # None: the detector's (detect.CONFIRM_SCORE), set per input by the pipeline
    max_misses: int = 10
    iou_threshold: float = 0.2
    max_centre_shift: float = 0.6
    max_speed: float = 4.0
    max_size_ratio: float = 1.6
    velocity_smoothing: float = 0.5
    min_appearance: float = 0.2  # below this thumbnail correlation a track never takes a detection


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes a [N,4] and b [M,4] (x1, y1, x2, y2)."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def _cxcywh(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1]])


def _xyxy(c: np.ndarray) -> np.ndarray:
    return np.array([c[0] - c[2] / 2, c[1] - c[3] / 2, c[0] + c[2] / 2, c[1] + c[3] / 2])


@dataclass
class _Track:
    state: np.ndarray
    time_s: float
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    hits: int = 1
    misses: int = 0
    face_id: int | None = None
    pending: list[tuple[int, int, float]] = field(default_factory=list)
    score: float = 0.0
    keypoints: np.ndarray | None = None  # at the last detection, relative to the box: (point - centre) / size
    appearance: np.ndarray | None = None  # the caller's description of the face at the last detection

    def predict(self, time_s: float) -> np.ndarray:
        return _xyxy(self.state + self.velocity * (time_s - self.time_s))

    def observe(self, score: float, keypoints: np.ndarray | None, appearance: np.ndarray | None) -> None:
        """Keep what the last real detection said about the face (used for predicted frames)."""
        self.score = score
        self.keypoints = None if keypoints is None else (keypoints - self.state[:2]) / self.state[2:]
        self.appearance = appearance


class Tracker:
    """Assigns stable face ids to per-frame detections, frame by frame."""

    def __init__(self, config: TrackerConfig | None = None):
        self.config = config or TrackerConfig()
        self.tracks: list[_Track] = []
        self.next_id = 0
        self.position = -1
        self.frames: deque[tuple[int, dict[int, int]]] = deque()

    def _similarity(self, predicted: np.ndarray, boxes: np.ndarray, elapsed: np.ndarray) -> np.ndarray:
        """Overlap where boxes overlap enough, else a gated centre-distance score below any overlap match.

        The centre-distance gate (in face sizes) widens by `max_speed` face sizes per second since each
        track was last seen, so sparse sampling (--every, --fps) and short misses do not lose fast faces.
        """
        cfg = self.config
        iou = iou_matrix(predicted, boxes)
        p, d = np.array([_cxcywh(b) for b in predicted]), np.array([_cxcywh(b) for b in boxes])
        scale = np.sqrt(np.maximum(p[:, None, 2] * p[:, None, 3], 1.0))
        shift = np.hypot(p[:, None, 0] - d[None, :, 0], p[:, None, 1] - d[None, :, 1]) / scale
        ratio = np.sqrt((d[None, :, 2] * d[None, :, 3]) / np.maximum(p[:, None, 2] * p[:, None, 3], 1e-9))
        size_ok = (ratio < cfg.max_size_ratio) & (ratio > 1 / cfg.max_size_ratio)
        gate = (cfg.max_centre_shift + cfg.max_speed * np.clip(elapsed, 0, None))[:, None]
        near = size_ok & (shift < gate)
        fallback = np.where(near, cfg.iou_threshold * (1 - shift / gate), 0.0)
        return np.where((iou >= cfg.iou_threshold) & size_ok, iou + 1.0, fallback)

    def _match(self, boxes: np.ndarray, time_s: float, appearance: list) -> dict[int, int]:
        """Greedy best-first matching of live tracks to detections; returns {detection: track index}."""
        if not self.tracks or not len(boxes):
            return {}
        predicted = np.array([t.predict(time_s) for t in self.tracks])
        elapsed = np.array([time_s - t.time_s for t in self.tracks])
        sim = self._similarity(predicted, boxes, elapsed)
        for ti, track in enumerate(self.tracks):
            if track.appearance is None:
                continue
            for di, seen in enumerate(appearance):
                if seen is not None and float(np.dot(track.appearance, seen)) < self.config.min_appearance:
                    sim[ti, di] = 0.0
        confirmed = np.array([t.face_id is not None for t in self.tracks])
        sim = sim + np.where(sim > 0, 0.5 * confirmed[:, None], 0.0)
        matches: dict[int, int] = {}
        used: set[int] = set()
        for flat in np.argsort(-sim, axis=None):
            ti, di = np.unravel_index(flat, sim.shape)
            if sim[ti, di] <= 0:
                break
            if ti in used or di in matches:
                continue
            matches[int(di)] = int(ti)
            used.add(int(ti))
        return matches

    def cut(self) -> None:
        """A shot cut comes before the next frame: every track ends here (confirmed ids are never reused,
        unconfirmed tracks are dropped), so no id spans two shots."""
        self.tracks = []

    @property
    def uncertain(self) -> bool:
        """Whether a track waits for confirmation or missed its last frame (both need real detections)."""
        return any(t.face_id is None or t.misses > 0 for t in self.tracks)

    def predicted(self, time_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list]:
        """Boxes [K,4], scores [K], keypoints [K,4,2] (None if any track lacks them) and appearances of the
        confirmed tracks seen in the last frame, moved to `time_s` (for frames that are not detected)."""
        live = [t for t in self.tracks if t.face_id is not None and t.misses == 0]
        boxes = np.array([t.predict(time_s) for t in live]).reshape(-1, 4)
        scores = np.array([t.score for t in live], dtype=np.float64)
        keypoints = None
        if live and all(t.keypoints is not None for t in live):
            c = np.array([_cxcywh(b) for b in boxes])
            keypoints = np.stack([c[i, None, :2] + t.keypoints * c[i, None, 2:] for i, t in enumerate(live)])
        return boxes, scores, keypoints, [t.appearance for t in live]

    def update(self, boxes: np.ndarray, time_s: float, scores: np.ndarray | None = None,
               keypoints: np.ndarray | None = None, appearance: list | None = None, predicted: bool = False) -> None:
        """Take the detections [K,4] (and their scores [K]) of the next sampled frame.

        keypoints [K,4,2] and appearance (one unit-norm vector per detection, or None) are kept per track for
        `predicted` and compared in matching (`min_appearance`);
        `predicted=True` marks boxes that came from `predicted` itself: they move the tracks but leave
        what the last real detection said (score, keypoints, appearance) as it was.
        """
        cfg = self.config
        self.position += 1
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.ones(len(boxes)) if scores is None else np.asarray(scores, dtype=np.float64)
        appearance = appearance if appearance is not None else [None] * len(boxes)
        self.frames.append((self.position, {}))
        matches = self._match(boxes, time_s, appearance)
        matched_tracks = set(matches.values())
        survivors = []
        for ti, track in enumerate(self.tracks):
            if ti not in matched_tracks:
                track.misses += 1
                if track.face_id is None or track.misses > cfg.max_misses:
                    continue
            survivors.append(track)
        for di, ti in matches.items():
            self._extend(self.tracks[ti], boxes[di], di, float(scores[di]), time_s)
            if not predicted:
                self.tracks[ti].observe(float(scores[di]), None if keypoints is None else keypoints[di], appearance[di])
        for di in range(len(boxes)):
            if di not in matches:
                track = _Track(state=_cxcywh(boxes[di]), time_s=time_s)
                track.observe(float(scores[di]), None if keypoints is None else keypoints[di], appearance[di])
                survivors.append(track)
                self._record(track, di, float(scores[di]))
        self.tracks = survivors

    def _extend(self, track: _Track, box: np.ndarray, det: int, score: float, time_s: float) -> None:
        """Move a track to its new detection and update its velocity estimate."""
        new = _cxcywh(box)
        dt = time_s - track.time_s
        if dt > 0:
            a = self.config.velocity_smoothing if track.hits > 1 else 0.0
            track.velocity = a * track.velocity + (1 - a) * (new - track.state) / dt
        track.state, track.time_s = new, time_s
        track.hits += 1
        track.misses = 0
        self._record(track, det, score)

    def _record(self, track: _Track, det: int, score: float) -> None:
        """Note the detection in the current frame: under the id, or pending until the track is confirmed."""
        if track.face_id is None:
            cfg = self.config
            track.pending = [*track.pending, (self.position, det, score)][-cfg.min_hits :]
            if len(track.pending) < cfg.min_hits or np.mean([p[2] for p in track.pending]) < cfg.confirm_score:
                return
            track.face_id = self.next_id
            self.next_id += 1
            first = self.frames[0][0]
            for pos, d, _ in track.pending:
                if pos >= first:
                    self.frames[pos - first][1][d] = track.face_id
            track.pending.clear()
        else:
            self.frames[-1][1][det] = track.face_id

    def finalize(self, flush: bool = False) -> list[tuple[int, dict[int, int]]]:
        """Frames whose ids are settled, oldest first: (frame position, {detection index: face_id})."""
        lag = 0 if flush else self.config.min_hits - 1
        out = []
        while self.frames and self.frames[0][0] <= self.position - lag:
            out.append(self.frames.popleft())
        return out
