"""Persons: tracks (face_ids) of the same person joined across shot cuts and long absences.

Each track gets an appearance embedding: dlib's face recognition ResNet (128-D, "dlib_face_recognition_
resnet_model_v1") on a 150 px chip aligned by dlib's 5-point shape predictor inside the detector's box.
The model files come from the `face-recognition-models` package (CC0 1.0, public domain, by Davis King),
run with `dlib` (`dlib-bin`); both are the optional extra `[persons]`. A track is embedded at its first
emitted detection and then at most every `embed_interval_s`, up to `embeddings_per_track` times; its
embedding is the mean.

Once the video is done, tracks are grouped by average-linkage clustering on the Euclidean distance of
their embeddings, merging while the closest pair of groups is nearer than `reid_threshold` (dlib's own
same-person threshold is 0.6; 0.5 is stricter) and never merging two groups with tracks seen at the
same time (one person is never two faces in one frame). `person_id` numbers the groups in the order of
their first appearance, from 0, per video. Without the model (the extra not installed, or
`reid="none"`), person_id equals face_id and the sidecar says so.
"""

import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer_annotate.files.fetch import sha256_file

REID_METHODS = ("dlib", "none")
MODEL_FILES = ("dlib_face_recognition_resnet_model_v1.dat", "shape_predictor_5_face_landmarks.dat")
CHIP_SIZE, CHIP_PADDING = 150, 0.25  # dlib's training alignment


@dataclass
class PersonConfig:
    """How tracks are joined into persons: method ("dlib" or "none"), distance threshold, sampling."""

    reid: str = "dlib"
    reid_threshold: float = 0.5
    embeddings_per_track: int = 3
    embed_interval_s: float = 1.0

    def __post_init__(self) -> None:
        if self.reid not in REID_METHODS:
            raise ValueError(f"reid {self.reid!r}: choose one of {', '.join(REID_METHODS)}")


class ReidUnavailable(Exception):
    """The embedding model cannot be loaded (package missing); person_id falls back to face_id."""


def model_folder() -> Path:
    """The folder of face-recognition-models' files (found without importing the package, whose
    __init__ needs setuptools' pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ReidUnavailable("the face-recognition-models package is not installed "
                              "(pip install 'fer-annotate[persons]')")
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    missing = [name for name in MODEL_FILES if not (folder / name).is_file()]
    if missing:
        raise ReidUnavailable(f"face-recognition-models lacks {', '.join(missing)} in {folder}")
    return folder


class FaceEmbedder:
    """dlib's face recognition network on chips aligned by its 5-point landmarks."""

    def __init__(self) -> None:
        folder = model_folder()
        try:
            import dlib
        except ImportError:
            raise ReidUnavailable("the dlib package is not installed (pip install 'fer-annotate[persons]')") from None
        self.files = [folder / name for name in MODEL_FILES]
        self.net = dlib.face_recognition_model_v1(str(self.files[0]))
        self.landmarks = dlib.shape_predictor(str(self.files[1]))
        self.dlib = dlib
        self._hashes: dict[str, str] = {}

    def __call__(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """The 128-D embedding of the face in `box` (x1, y1, x2, y2) of an RGB image [H, W, 3] uint8."""
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        shape = self.landmarks(image, self.dlib.rectangle(x1, y1, x2, y2))
        chip = self.dlib.get_face_chip(image, shape, CHIP_SIZE, CHIP_PADDING)
        return np.asarray(self.net.compute_face_descriptor(chip), dtype=np.float64)

    def describe(self) -> dict:
        """The model files and their SHA-256 (recorded in the sidecar)."""
        if not self._hashes:
            self._hashes = {p.name: sha256_file(p) for p in self.files}
        return {"package": "face-recognition-models", "licence": "CC0-1.0 (public domain), Davis King",
                "files": self._hashes}


def load_embedder(config: PersonConfig) -> tuple[FaceEmbedder | None, str]:
    """The embedding model, or None and the reason why person_id will equal face_id."""
    if config.reid == "none":
        return None, "re-identification turned off (reid none)"
    try:
        return FaceEmbedder(), ""
    except ReidUnavailable as exc:
        return None, str(exc)


@dataclass
class _Track:
    first: int  # first and last video frame with a detection
    last: int
    last_embedded: float = -np.inf
    embeddings: list[np.ndarray] = field(default_factory=list)


class PersonLinker:
    """Collects what each track looks like while rows are emitted; `persons` groups the tracks."""

    def __init__(self, config: PersonConfig, embedder: FaceEmbedder | None, reason: str = ""):
        self.config = config
        self.embedder = embedder
        self.reason = reason
        self.tracks: dict[int, _Track] = {}
        self.seconds = 0.0

    def observe(self, face_id: int, frame: int, time_s: float, image: np.ndarray | None, box: np.ndarray) -> None:
        """One detection of a track (in frame order); embedded when the sampling rule asks for it."""
        track = self.tracks.get(face_id)
        if track is None:
            track = self.tracks[face_id] = _Track(frame, frame)
        track.last = frame
        cfg = self.config
        if (self.embedder is None or image is None or len(track.embeddings) >= cfg.embeddings_per_track
                or time_s - track.last_embedded < cfg.embed_interval_s):
            return
        tic = time.perf_counter()
        track.embeddings.append(self.embedder(image, box))
        track.last_embedded = time_s
        self.seconds += time.perf_counter() - tic

    def persons(self) -> dict[int, int]:
        """face_id -> person_id, numbered in order of first appearance."""
        ids = sorted(self.tracks)
        groups = self._groups(ids) if self.embedder is not None else [[i] for i in ids]
        groups.sort(key=lambda g: min((self.tracks[i].first, i) for i in g))
        return {face_id: person for person, group in enumerate(groups) for face_id in group}

    def _groups(self, ids: list[int]) -> list[list[int]]:
        """Average-linkage clusters of the embedded tracks under the threshold, with the cannot-link rule;
        tracks without an embedding stay alone."""
        embedded = [i for i in ids if self.tracks[i].embeddings]
        groups = [[i] for i in ids if not self.tracks[i].embeddings]
        if not embedded:
            return groups
        means = np.stack([np.mean(self.tracks[i].embeddings, axis=0) for i in embedded])
        dist = np.sqrt(((means[:, None] - means[None]) ** 2).sum(-1))
        spans = np.array([(self.tracks[i].first, self.tracks[i].last) for i in embedded])
        apart = (spans[:, None, 0] > spans[None, :, 1]) | (spans[None, :, 0] > spans[:, None, 1])
        members = [[i] for i in embedded]
        sizes = np.ones(len(embedded))
        alive = np.ones(len(embedded), dtype=bool)
        while True:
            allowed = apart & alive[:, None] & alive[None, :]
            np.fill_diagonal(allowed, False)
            d = np.where(allowed, dist, np.inf)
            a, b = np.unravel_index(np.argmin(d), d.shape)
            if not d[a, b] < self.config.reid_threshold:
                break
            dist[a] = dist[:, a] = (sizes[a] * dist[a] + sizes[b] * dist[b]) / (sizes[a] + sizes[b])
            apart[a] = apart[:, a] = apart[a] & apart[b]
            sizes[a] += sizes[b]
            members[a] += members[b]
            alive[b] = False
        return groups + [members[k] for k in np.flatnonzero(alive)]

    def describe(self, persons: dict[int, int]) -> dict:
        """How persons were formed (for the sidecar)."""
        if self.embedder is None:
            return {"method": "none", "person_id": "equals face_id", "reason": self.reason}
        cfg = self.config
        return {
            "method": "dlib face recognition embeddings; average-linkage clustering of tracks, never joining "
                      "tracks seen at the same time; person_id in order of first appearance",
            "model": self.embedder.describe(),
            "threshold": cfg.reid_threshold,
            "embeddings_per_track": cfg.embeddings_per_track,
            "embed_interval_s": cfg.embed_interval_s,
            "tracks": len(self.tracks),
            "tracks_embedded": sum(1 for t in self.tracks.values() if t.embeddings),
            "persons": len(set(persons.values())),
        }
