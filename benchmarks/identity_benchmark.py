"""Identities over shot cuts, re-entries, crossings and occlusions: face_id and person_id scored with
motmetrics (IDF1, identity switches, fragmentations) on videos with known truth.

Scenes: benchmarks/identity_scenes.py (synthetic, from the fixture stills, exact boxes; and real
fixture recordings cut together, identity-only truth). Each scene is annotated faces-only through the
Python API (CLI defaults otherwise: --detect-every 2, cuts on, reid dlib) with each detector given.

Synthetic truth: a face counts while at least half of its box is visible; boxes on faces less visible
are ignored. A prediction matches a face at IoU >= 0.4. Real clips: every predicted box is its own
truth box, labelled with the person of its segment, so only the identities are scored (IDF1,
switches), not the detector. `spans cut` counts face_ids with rows on both sides of a known cut: the
target is 0 (person_id is meant to span cuts).

    nice -n 10 python benchmarks/identity_benchmark.py [--detectors auto blazeface-back] [--shared ../shared]
Needs `pip install motmetrics` (extra [bench]) and, for person_id, the extra [persons].
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import identity_scenes  # noqa: E402
import synth  # noqa: E402  (put on the path by identity_scenes)

PRESENT = 0.5
MAX_DISTANCE = 0.6  # 1 - IoU
METRICS = ["idf1", "num_switches", "num_fragmentations", "mota", "recall", "precision"]


def distances(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """1 - IoU of (x1, y1, x2, y2) boxes, NaN (no match) above MAX_DISTANCE (motmetrics' convention; its own
    iou_matrix uses np.asfarray, gone in NumPy 2)."""
    from fer_annotate.faces.track import iou_matrix

    d = 1 - iou_matrix(np.asarray(truth, np.float64).reshape(-1, 4), np.asarray(predicted, np.float64).reshape(-1, 4))
    return np.where(d > MAX_DISTANCE, np.nan, d)


def accumulate_synthetic(scene: identity_scenes.Scene, table, column: str, size: tuple[int, int]):
    """A motmetrics accumulator of one id column against the synthetic truth."""
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=True)
    ok = table[table["status"] == "ok"]
    by_frame = {int(f): rows for f, rows in ok.groupby("frame")}
    for i, faces in enumerate(scene.frames):
        present = [f for f in faces if f.visible >= PRESENT]
        faint = [f for f in faces if f.visible < PRESENT]
        rows = by_frame.get(i)
        hyp_boxes = np.zeros((0, 4)) if rows is None else rows[["x1", "y1", "x2", "y2"]].to_numpy(np.float64)
        hyp_ids = [] if rows is None else rows[column].astype(int).tolist()
        if faint and len(hyp_boxes):  # boxes on barely visible faces are neither hits nor false positives
            keep = [k for k, b in enumerate(hyp_boxes)
                    if max(synth.iou(tuple(b), synth.clip_box(f.box, *size)) for f in faint) < 1 - MAX_DISTANCE]
            hyp_boxes, hyp_ids = hyp_boxes[keep], [hyp_ids[k] for k in keep]
        gt_boxes = np.array([synth.clip_box(f.box, *size) for f in present]).reshape(-1, 4)
        dist = distances(gt_boxes, hyp_boxes)
        acc.update([f.gt_id for f in present], hyp_ids, dist)
    return acc


def accumulate_real(scene: identity_scenes.Scene, table, column: str):
    """Identity-only accumulator: each predicted box is a truth box of its segment's person."""
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=True)
    ok = table[table["status"] == "ok"]
    by_frame = {int(f): rows for f, rows in ok.groupby("frame")}
    for start, end, person in scene.segments:
        for i in range(start, end):
            rows = by_frame.get(i)
            if rows is None:
                acc.update([], [], np.zeros((0, 0)))
                continue
            boxes = rows[["x1", "y1", "x2", "y2"]].to_numpy(np.float64)
            dist = distances(boxes, boxes)
            # one person per segment: extra boxes (false positives) get their own truth ids
            truth = [person] + [1000 + i * 10 + k for k in range(1, len(rows))]
            acc.update(truth, rows[column].astype(int).tolist(), dist)
    return acc


def spans_cut(table, cuts: list[int]) -> int:
    """face_ids with rows both before and after some cut."""
    ok = table[table["status"] == "ok"]
    spans = ok.groupby("face_id")["frame"].agg(["min", "max"])
    return int(sum(any(lo < c <= hi for c in cuts) for lo, hi in spans.itertuples(index=False)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--detectors", nargs="+", default=["auto", "blazeface-back"])
    parser.add_argument("--detect-every", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("TORCH_HOME", str(args.shared / "torch-home"))
    import motmetrics as mm

    from fer_annotate.api import Annotator

    images, videos = args.shared / "fixtures" / "images", args.shared / "fixtures" / "videos"
    folder = Path(tempfile.mkdtemp(prefix="identity-bench-"))
    scenes = [make(images, folder / f"{name}.mp4") for name, make in identity_scenes.SYNTHETIC.items()]
    scenes.append(identity_scenes.real_cuts(videos, folder / "real_cuts.mp4"))
    host = mm.metrics.create()
    print(f"{'scene':10s} {'detector':15s} {'ids':9s} {'IDF1':>6s} {'IDsw':>5s} {'frag':>5s} {'MOTA':>6s} "
          f"{'recall':>6s} {'prec':>6s} {'tracks':>6s} {'persons':>7s} {'truth':>5s} {'spans cut':>9s} {'s':>5s}")
    totals: dict[tuple[str, str], list] = {}
    for detector in args.detectors:
        annotator = Annotator("none", threads=1, detector=detector, detect_every=args.detect_every)
        for scene in scenes:
            tic = time.perf_counter()
            table = annotator.annotate(scene.path, folder / f"{scene.name}-{detector}.csv")
            seconds = time.perf_counter() - tic
            ok = table[table["status"] == "ok"]
            truth = len({p for *_, p in scene.segments}) if scene.segments else len(
                {f.gt_id for faces in scene.frames for f in faces})
            for column in ("face_id", "person_id"):
                if scene.segments:
                    acc = accumulate_real(scene, table, column)
                else:
                    acc = accumulate_synthetic(scene, table, column, identity_scenes.SIZE)
                m = host.compute(acc, metrics=METRICS, name=scene.name).iloc[0]
                totals.setdefault((detector, column), []).append((acc, scene.name, bool(scene.segments)))
                cut = spans_cut(table, scene.cuts) if column == "face_id" else ""
                print(f"{scene.name:10s} {detector:15s} {column:9s} {m.idf1:6.3f} {int(m.num_switches):5d} "
                      f"{int(m.num_fragmentations):5d} {m.mota:6.3f} {m.recall:6.3f} {m.precision:6.3f} "
                      f"{ok['face_id'].nunique():6d} {ok['person_id'].nunique():7d} {truth:5d} {str(cut):>9s} "
                      f"{seconds:5.1f}")
    print("\nsynthetic scenes together:")
    for (detector, column), accs in totals.items():
        synthetic = [(a, n) for a, n, real in accs if not real]
        m = host.compute_many([a for a, _ in synthetic], metrics=METRICS, names=[n for _, n in synthetic],
                              generate_overall=True).loc["OVERALL"]
        print(f"  {detector:15s} {column:9s} IDF1 {m.idf1:.3f}  ID switches {int(m.num_switches)}  "
              f"fragmentations {int(m.num_fragmentations)}  MOTA {m.mota:.3f}")


if __name__ == "__main__":
    main()
