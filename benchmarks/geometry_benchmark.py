"""Measure the geometry stage: faces found, speed per face (CPU) and agreement on mirrored faces.

Two sets of faces: FER2013 images (48 px grayscale, a random sample) and the face regions of a fixture
video (BlazeFace boxes, cut as the pipeline cuts them). For each: the share of faces the landmarker finds
as is (no upscaling, no padding) and as the stage prepares them (upscaled to 192 px, padded); the median
milliseconds per face over interleaved repeats; and, on faces found both in the image and its mirror
image, the agreement the sign conventions promise: yaw and roll change sign, pitch stays, and every
...Left blendshape of the image matches the ...Right one of its mirror; and which side ...Left names.

    TORCH_HOME=../shared/torch-home python benchmarks/geometry_benchmark.py \\
        --model ../shared/models/face_landmarker.task --fer ../shared/data/fer2013/val \\
        --video ../shared/fixtures/videos/pyfeat_single_face.mp4
"""

import argparse
import os
import random
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from fer_annotate.faces.geometry import BLENDSHAPES, GeometryConfig, GeometryStage, Landmarker


def fer_faces(folder: Path, n: int, seed: int) -> list[np.ndarray]:
    paths = sorted(folder.rglob("*.jpg")) + sorted(folder.rglob("*.png"))
    random.Random(seed).shuffle(paths)
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths[:n]]


def video_regions(video: Path, model: Path, n: int) -> list[np.ndarray]:
    """Face regions of the first n frames with a face, cut around BlazeFace boxes as the pipeline cuts them."""
    import torch

    from fer_annotate.faces.detect import DetectorConfig, FaceDetector
    from fer_annotate.media.video import Video

    v = Video(video)
    detector = FaceDetector(DetectorConfig(name="blazeface"))
    stage = GeometryStage(GeometryConfig(model=model))
    regions: list[np.ndarray] = []
    for batch in v.batches(np.arange(v.info.n_frames), 16):
        for frame, dets in zip(batch.frames, detector(torch.from_numpy(batch.frames)), strict=True):
            if len(dets):
                regions += stage.regions(frame, dets.boxes[:1])[0]
        if len(regions) >= n:
            break
    stage.landmarker.close()
    return regions[:n]


def mirror_swap() -> np.ndarray:
    """Index of each blendshape's mirror twin (...Left <-> ...Right; others map to themselves)."""
    index = {name: i for i, name in enumerate(BLENDSHAPES)}

    def twin(name: str) -> str:
        return name.replace("Left", "\0").replace("Right", "Left").replace("\0", "Right")

    return np.array([index[twin(n)] for n in BLENDSHAPES])


def measure(name: str, faces: list[np.ndarray], model: Path, repeats: int) -> None:
    as_is = Landmarker(model, min_side=0, pad=0.0)
    staged = Landmarker(model)
    found_as_is = as_is(faces).found
    times: dict[str, list[float]] = {"as_is": [], "staged": []}
    cpu: dict[str, list[float]] = {"as_is": [], "staged": []}
    for _ in range(repeats):  # interleaved, so a change in machine load hits both alike
        for key, lm in (("as_is", as_is), ("staged", staged)):
            tic, cpu_tic = time.perf_counter(), time.process_time()
            geo = lm(faces)
            times[key].append((time.perf_counter() - tic) * 1000 / len(faces))
            cpu[key].append((time.process_time() - cpu_tic) * 1000 / len(faces))
    mirrored = staged([f[:, ::-1].copy() for f in faces])
    both = geo.found & mirrored.found
    a, b = geo.pose[both], mirrored.pose[both]
    bs_err = np.abs(geo.blendshapes[both] - mirrored.blendshapes[both][:, mirror_swap()])
    print(f"{name}: {len(faces)} faces, {faces[0].shape[1]}x{faces[0].shape[0]} px (first)")
    print(f"  found: as is {found_as_is.sum()}/{len(faces)}, upscaled+padded {geo.found.sum()}/{len(faces)}")
    print(f"  ms per face (median of {repeats}): as is {statistics.median(times['as_is']):.1f}, "
          f"upscaled+padded {statistics.median(times['staged']):.1f} (wall); CPU time (all threads) "
          f"{statistics.median(cpu['as_is']):.1f} / {statistics.median(cpu['staged']):.1f}")
    print(f"  mirror agreement on {both.sum()} faces found in both: "
          f"|yaw+yaw'| median {np.median(np.abs(a[:, 0] + b[:, 0])):.2f} deg, "
          f"|pitch-pitch'| {np.median(np.abs(a[:, 1] - b[:, 1])):.2f}, "
          f"|roll+roll'| {np.median(np.abs(a[:, 2] + b[:, 2])):.2f}; "
          f"yaw spread (sd) {np.std(a[:, 0]):.1f} deg; blendshape vs mirror twin MAE {bs_err.mean():.4f}, "
          f"Pearson r of yaw vs -yaw' {np.corrcoef(a[:, 0], -b[:, 0])[0, 1]:.3f}")
    print(f"  sides: r(eyeBlinkLeft - eyeBlinkRight, opening of the image-left eye - image-right eye) = "
          f"{blink_side(geo):.2f} (> 0: ...Left is the person's left, the image's right)")
    as_is.close()
    staged.close()


def blink_side(geo) -> float:
    """Which eye eyeBlinkLeft describes, from the landmarks' eyelid openings (159/145 image left, 386/374 right)."""
    lm, bs = geo.landmarks[geo.found], geo.blendshapes[geo.found]

    def opening(upper: int, lower: int, corner_a: int, corner_b: int) -> np.ndarray:
        gap = np.linalg.norm(lm[:, upper, :2] - lm[:, lower, :2], axis=1)
        return gap / np.linalg.norm(lm[:, corner_a, :2] - lm[:, corner_b, :2], axis=1)

    blink = bs[:, BLENDSHAPES.index("eyeBlinkLeft")] - bs[:, BLENDSHAPES.index("eyeBlinkRight")]
    return float(np.corrcoef(blink, opening(159, 145, 33, 133) - opening(386, 374, 263, 362))[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--fer", type=Path, help="a FER2013 folder (images in class subfolders)")
    parser.add_argument("--video", type=Path, help="a video with one face")
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"load average before: {open('/proc/loadavg').read().split()[:3]}, cpus {os.cpu_count()}")
    if args.fer:
        measure(f"FER2013 {args.fer}", fer_faces(args.fer, args.n, args.seed), args.model, args.repeats)
    if args.video:
        measure(f"video regions {args.video.name}", video_regions(args.video, args.model, args.n), args.model,
                args.repeats)
    print(f"load average after: {open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
