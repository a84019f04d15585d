"""Recall of the offline face detectors on the crowd and group stills, as stills and at video scales.

Known face counts (../shared/README.md): t1.jpg 6, pyfeat_multi_face.jpg 5, fa_aflw-test-grid3x3.jpg 9,
blazeface_3faces.png 3, blazeface_4faces.png 4. Each still is run as itself ("still") and letterboxed
into 640x360, 1280x720 and 1920x1080 frames as a video frame would hold it, through FaceDetector with
the CLI defaults (score 0.5, minimum face 20 px or a tenth of the shorter side). Recall is counted:
min(found, known) / known, and `extra` is found beyond the known count (false positives, at least);
for pyfeat_multi_face.jpg, whose boxes are known (tests/synth.py), matches are by IoU >= 0.4 instead.

A second table is the other side of a default for mixed footage: the close-up fixture videos (one face in
every frame of the first two, 72 of 169 in the third, none in the fourth), frames with a face found and
frames with more than one box, every frame detected.

    nice -n 10 python benchmarks/crowd_recall_benchmark.py [--shared ../shared]
"""

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import synth  # noqa: E402

STILLS = {"t1.jpg": 6, "pyfeat_multi_face.jpg": 5, "fa_aflw-test-grid3x3.jpg": 9, "blazeface_3faces.png": 3,
          "blazeface_4faces.png": 4}
SCALES = {"still": None, "640x360": (640, 360), "1280x720": (1280, 720), "1920x1080": (1920, 1080)}
DETECTORS = ["blazeface", "blazeface-back", "dlib"]


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float, int, int]:
    """The image scaled to fit a black frame of `size`, centred; with the scale and offsets."""
    w, h = size
    s = min(w / image.shape[1], h / image.shape[0])
    small = cv2.resize(image, (round(image.shape[1] * s), round(image.shape[0] * s)), interpolation=cv2.INTER_AREA)
    frame = np.zeros((h, w, 3), np.uint8)
    y0, x0 = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
    frame[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    return frame, s, x0, y0


def count_found(name: str, boxes: np.ndarray, scale: float, x0: int, y0: int) -> tuple[int, int]:
    """(faces found, extra boxes)."""
    known = STILLS[name]
    if name not in synth.FACE_BOXES:
        return min(len(boxes), known), max(0, len(boxes) - known)
    truth = [tuple(v * scale + o for v, o in zip(b, (x0, y0, x0, y0), strict=True)) for b in synth.FACE_BOXES[name]]
    used, hits = set(), 0
    for t in truth:
        best = max(((synth.iou(t, tuple(b)), k) for k, b in enumerate(boxes) if k not in used), default=(0, -1))
        if best[0] >= 0.4:
            used.add(best[1])
            hits += 1
    return hits, len(boxes) - len(used)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    args = parser.parse_args()
    os.environ.setdefault("TORCH_HOME", str(args.shared / "torch-home"))
    import torch

    from fer_annotate.faces.detect import DetectorConfig, DetectorError, FaceDetector

    torch.set_num_threads(1)
    images = {n: cv2.cvtColor(cv2.imread(str(args.shared / "fixtures" / "images" / n)), cv2.COLOR_BGR2RGB)
              for n in STILLS}
    total = sum(STILLS.values())
    print(f"{'detector':15s} {'scale':10s} " + " ".join(f"{n.split('.')[0][:14]:>14s}" for n in STILLS)
          + f" {'recall':>7s} {'extra':>5s} {'ms/frame':>8s}")
    for name in DETECTORS:
        try:
            detector = FaceDetector(DetectorConfig(name=name))
        except DetectorError as exc:
            print(f"{name:15s} unavailable: {exc}")
            continue
        for scale, size in SCALES.items():
            cells, found, extra, seconds = [], 0, 0, 0.0
            for still, known in STILLS.items():
                frame, s, x0, y0 = (images[still], 1.0, 0, 0) if size is None else letterbox(images[still], size)
                tic = time.perf_counter()
                dets = detector(frame[None])[0]
                seconds += time.perf_counter() - tic
                hit, more = count_found(still, dets.boxes, s, x0, y0)
                found, extra = found + hit, extra + more
                cells.append(f"{hit}/{known}" + (f"+{more}" if more else ""))
            print(f"{name:15s} {scale:10s} " + " ".join(f"{c:>14s}" for c in cells)
                  + f" {found / total:7.2f} {extra:5d} {1000 * seconds / len(STILLS):8.1f}")

    print()
    close_ups(args.shared / "fixtures" / "videos")


VIDEOS = {"pyfeat_WolfgangLanger_Pexels.mp4": 472, "pyfeat_single_face.mp4": 72, "pyfeat_face_noface.mov": 72,
          "pyfeat_no_face.mp4": 0}


def close_ups(folder: Path) -> None:
    """Frames with a face (and with extra boxes) on the close-up fixture videos, per detector."""
    import decord

    from fer_annotate.faces.detect import DetectorConfig, DetectorError, FaceDetector

    print(f"{'detector':15s} " + " ".join(f"{n.split('.')[0][7:21]:>14s}" for n in VIDEOS)
          + "   (frames found / frames with a face, +frames with extra boxes)")
    frames = {}
    for n in VIDEOS:
        reader = decord.VideoReader(str(folder / n))
        frames[n] = reader.get_batch(list(range(len(reader)))).asnumpy()
    for name in DETECTORS:
        try:
            detector = FaceDetector(DetectorConfig(name=name))
        except DetectorError:
            continue
        cells = []
        for video, with_face in VIDEOS.items():
            found = [len(d) for s in range(0, len(frames[video]), 16) for d in detector(frames[video][s : s + 16])]
            hit = sum(1 for n in found if n >= 1)
            more = sum(1 for n in found if n > 1) if with_face else hit
            cells.append(f"{min(hit, with_face)}/{with_face}" + (f"+{more}" if more else ""))
        print(f"{name:15s} " + " ".join(f"{c:>14s}" for c in cells))


if __name__ == "__main__":
    main()
