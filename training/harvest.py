"""Unlabelled faces from videos, for distillation: detect faces in sampled frames, save each as a crop in a
bundle's crop geometry (exactly what the pipeline feeds the bundle), and label it with MediaPipe's face
landmarker run on the face's own region of the full frame.

The landmarker measures roll in the frame; the crop was turned upright by the alignment, so the roll the
crop shows is the frame's roll minus the alignment's rotation (the pipeline adds that rotation back).
"""

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fer_annotate.faces.align import face_transforms, warp_crops
from fer_annotate.faces.detect import DetectorConfig, FaceDetector
from fer_annotate.media.video import Sampling, Video
from fer_annotate.models.bundle import InputSpec
from fer_annotate.models.model import crop_template


@dataclass
class HarvestConfig:
    """Which frames and faces to take: frames per second, detector, and how much context the landmarker gets."""

    fps: float = 2.0
    detector: str = "blazeface"
    score_threshold: float = 0.7
    min_face: float = 40.0
    region_scale: float = 1.6  # the landmarker's region: this many times the detector box, square


def harvest_faces(videos: list[Path], out: Path, spec: InputSpec, config: HarvestConfig, landmarker,
            log=print) -> Path:
    """Write out/<video>/<frame>_<k>.png crops and out/labels.csv (path, video, bs_*, pose_*); returns the CSV.

    `landmarker` is a fer_annotate.faces.geometry.Landmarker. Faces it cannot measure keep empty label cells.
    """
    from fer_annotate.faces.geometry import BLENDSHAPE_COLUMNS, POSE_COLUMNS, face_regions

    detector = FaceDetector(DetectorConfig(name=config.detector, score_threshold=config.score_threshold,
                                           min_face=config.min_face))
    template = crop_template(spec)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[list] = []
    for path in videos:
        video = Video(path)
        folder = out / path.stem
        folder.mkdir(exist_ok=True)
        n_faces = 0
        for batch in video.batches(video.select(Sampling(fps=config.fps)), 16):
            frames = torch.from_numpy(batch.frames)
            found = detector(frames)
            counts = [len(d) for d in found]
            if not sum(counts):
                continue
            boxes = np.concatenate([d.boxes for d in found if len(d)])
            kps = [d.keypoints for d in found if len(d)]
            keypoints = None if any(k is None for k in kps) else np.concatenate(kps)
            transforms = face_transforms(boxes, keypoints, template)
            frame_idx = np.repeat(np.arange(len(found)), counts)
            crops = warp_crops(frames, frame_idx, transforms, template.size).permute(0, 2, 3, 1).numpy()
            regions = [face_regions(batch.frames[f], b[None], config.region_scale)[0][0]
                       for f, b in zip(frame_idx, boxes, strict=True)]
            geometry = landmarker(regions)
            rotation = np.degrees(np.arctan2(transforms[:, 1, 0], transforms[:, 0, 0]))
            pose = geometry.pose.copy()
            pose[:, 2] = (pose[:, 2] - rotation + 180.0) % 360.0 - 180.0
            for k, (f, crop) in enumerate(zip(frame_idx, crops, strict=True)):
                file = folder / f"{int(batch.indices[f]):06d}_{k}.png"
                Image.fromarray(crop).save(file)
                labels = np.concatenate([geometry.blendshapes[k], pose[k]])
                rows.append([str(file.resolve()), path.stem, *("" if np.isnan(v) else f"{v:.5g}" for v in labels)])
                n_faces += 1
        log(f"{path}: {n_faces} faces")
    labels_csv = out / "labels.csv"
    tmp = labels_csv.with_name(f".labels.{os.getpid()}.partial")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "video", *BLENDSHAPE_COLUMNS, *POSE_COLUMNS])
        writer.writerows(rows)
    os.replace(tmp, labels_csv)
    return labels_csv
