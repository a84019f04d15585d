"""Label face images with a teacher, for distillation: MediaPipe's face landmarker or a weights bundle.

The result is a CSV manifest (absolute image paths + the teacher's soft labels) that `fer-train` reads
like any other: MediaPipe gives blendshape scores `bs_<name>` and head pose `pose_yaw, pose_pitch,
pose_roll` (degrees); a bundle gives its expression probabilities as vote columns (soft labels) and, when
it has them, its own blendshape and pose outputs. Images the landmarker finds no face in get empty
cells (missing labels), never zeros. The input's own expression labels (votes or classes) are carried
along, so one manifest holds everything a run needs.
"""

import csv
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from training.data import EXPR_NAMES, DataError

Progress = Callable[[int, int], None]


@dataclass
class TeacherLabels:
    """Soft labels for N images: column names and a float32 [N, C] array, NaN where missing."""

    columns: list[str]
    values: np.ndarray

    @property
    def found(self) -> np.ndarray:
        """Rows with every label present."""
        return ~np.isnan(self.values).any(axis=1)


def _read_rgb(path: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read image ({e})") from None


def label_mediapipe(paths: list[str], model: str | None = None, progress: Progress | None = None) -> TeacherLabels:
    """Blendshapes and head pose of every image from MediaPipe's face landmarker (one face per image)."""
    from fer_annotate.faces.geometry import BLENDSHAPE_COLUMNS, POSE_COLUMNS, Landmarker

    values = np.full((len(paths), len(BLENDSHAPE_COLUMNS) + 3), np.nan, np.float32)
    with Landmarker(model) as landmarker:
        for start in range(0, len(paths), 64):
            chunk = paths[start : start + 64]
            geometry = landmarker([_read_rgb(p) for p in chunk])
            values[start : start + len(chunk)] = np.concatenate([geometry.blendshapes, geometry.pose], axis=1)
            if progress is not None:
                progress(start + len(chunk), len(paths))
    return TeacherLabels([*BLENDSHAPE_COLUMNS, *POSE_COLUMNS], values)


def label_bundle(paths: list[str], bundle_path: str, device: str = "cpu", progress: Progress | None = None,
                 batch: int = 256) -> TeacherLabels:
    """A bundle's ensemble outputs for every image: expression probabilities (as vote columns),
    blendshape scores and pose where the bundle has those heads. Images are resized to its input size."""
    import torch

    from fer_annotate.models.bundle import load_bundle
    from fer_annotate.models.ensemble import Ensemble

    bundle = load_bundle(bundle_path)
    ensemble = Ensemble(bundle, device)
    size = bundle.input.size
    columns: list[str] = []
    if "EXPR" in bundle.tasks:
        columns += list(bundle.expr_names)
    if "BS" in bundle.tasks:
        columns += [f"bs_{n}" for n in bundle.bs_names]
    if "POSE" in bundle.tasks:
        columns += ["pose_yaw", "pose_pitch", "pose_roll"]
    if not columns:
        raise DataError(f"{bundle_path}: the bundle has no expression, blendshape or pose head to label with")
    values = np.zeros((len(paths), len(columns)), np.float32)
    for start in range(0, len(paths), batch):
        chunk = paths[start : start + batch]
        crops = np.stack([np.asarray(Image.fromarray(_read_rgb(p)).resize((size, size), Image.BILINEAR))
                          for p in chunk])
        out = ensemble(torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous())
        parts = [a for a in (out.expr_prob, out.bs_prob, out.pose) if a is not None]
        values[start : start + len(chunk)] = np.concatenate(parts, axis=1)
        if progress is not None:
            progress(start + len(chunk), len(paths))
    return TeacherLabels(columns, values)


def write_labels(out: str | Path, paths: list[str], labels: TeacherLabels, extra: dict[str, list] | None = None) -> int:
    """Write the manifest atomically: `path` (absolute), any extra columns, the teacher's labels
    (empty where missing). Returns the number of rows with labels."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    extra = extra or {}
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", *extra, *labels.columns])
        for i, path in enumerate(paths):
            cells = ["" if np.isnan(v) else f"{v:.5g}" for v in labels.values[i]]
            writer.writerow([str(Path(path).resolve()), *(col[i] for col in extra.values()), *cells])
    os.replace(tmp, out)
    return int(labels.found.sum())


def expression_columns(table) -> dict[str, list]:
    """The expression labels of a label table as columns to carry into a labelled manifest: the vote
    distribution where there is one, else the class name (empty where unlabelled)."""
    if table.expr_soft is not None:
        soft = table.expr_targets(votes=True)
        return {name: ["" if np.isnan(v) else f"{v:.4g}" for v in soft[:, k]] for k, name in enumerate(EXPR_NAMES)}
    return {"expression": [EXPR_NAMES[k] if k >= 0 else "" for k in table.expr]}
