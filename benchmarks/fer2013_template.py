"""Measure the FER2013 crop geometry: where BlazeFace puts the eyes, nose and mouth in a FER2013 crop.

FER2013 faces are loose 48x48 grayscale crops. A bundle trained on them must see video faces cropped the
same way, so its InputSpec records a template (unit crop coordinates of right_eye (image left), left_eye,
nose_tip, mouth_centre) and box_scale (crop side / detector box side). This script measures both from the
data: each crop is upscaled and placed in the middle of a 128x128 canvas (padded with its edge pixels, so
the face is not cut by the frame border), BlazeFace (front model) detects it, and the medians of the
keypoints and of the box side, mapped back to unit crop coordinates, are the template.

    TORCH_HOME=../shared/torch-home python benchmarks/fer2013_template.py ../shared/data/fer2013/train
"""

import argparse
import json
import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def load_detector():
    """BlazeFace front model from $TORCH_HOME (no download when cached)."""
    from face_alignment.detection.blazeface.blazeface_detector import BlazeFaceDetector

    return BlazeFaceDetector("cpu", min_score_thresh=0.5)


def canvas(image: np.ndarray, side: int) -> np.ndarray:
    """Resize a square grayscale crop to side px and edge-pad it to the middle of a 128x128 RGB canvas."""
    face = np.asarray(Image.fromarray(image).resize((side, side), Image.BILINEAR))
    pad = (128 - side) // 2
    face = np.pad(face, ((pad, 128 - side - pad), (pad, 128 - side - pad)), mode="edge")
    return np.repeat(face[:, :, None], 3, axis=2)


def measure(paths: list[Path], side: int, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints [N,6,2] and box sides [N] in unit crop coordinates of the faces found (best one each)."""
    det = load_detector()
    pad = (128 - side) // 2
    keypoints, sides = [], []
    for start in range(0, len(paths), batch):
        images = [canvas(np.asarray(Image.open(p).convert("L")), side) for p in paths[start : start + batch]]
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
        for found in det.face_detector.predict_on_batch(x):
            if len(found) == 0:
                continue
            best = found[found[:, 16].argmax()].numpy()
            ymin, xmin, ymax, xmax = best[:4] * 128
            sides.append(max(ymax - ymin, xmax - xmin) / side)
            keypoints.append(((best[4:16].reshape(6, 2) * 128) - pad) / side)
    return np.array(keypoints), np.array(sides)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="FER2013 folder with one sub-folder per class")
    parser.add_argument("--n", type=int, default=700, help="images sampled (balanced over classes)")
    parser.add_argument("--side", type=int, default=80, help="px of the crop inside the 128 px canvas")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)

    rng = random.Random(args.seed)
    classes = sorted(d for d in args.root.iterdir() if d.is_dir())
    paths = []
    for folder in classes:
        files = sorted(folder.glob("*.jpg"))
        paths += rng.sample(files, min(len(files), args.n // len(classes)))

    keypoints, sides = measure(paths, args.side)
    names = ["right_eye", "left_eye", "nose_tip", "mouth_centre", "right_ear", "left_ear"]
    median = np.median(keypoints, axis=0)
    spread = np.median(np.abs(keypoints - median), axis=0)
    print(f"detected {len(keypoints)}/{len(paths)} faces (crop {args.side} px in a 128 px canvas)")
    for name, point, mad in zip(names, median, spread, strict=True):
        print(f"  {name:13s} x={point[0]:.4f} y={point[1]:.4f}  (MAD {mad[0]:.4f}, {mad[1]:.4f})")
    box = float(np.median(sides))
    print(f"  box side / crop side = {box:.4f} (MAD {np.median(np.abs(sides - box)):.4f})")
    result = {
        "template": [[round(float(v), 4) for v in p] for p in median[:4]],
        "box_scale": round(1.0 / box, 4),
        "detected": int(len(keypoints)),
        "sampled": len(paths),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
