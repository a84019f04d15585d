"""What `--detect-every K` buys and costs: detector calls, CPU time, box IoU and id switches per K.

    python benchmarks/detect_every_benchmark.py [--every 1 2 3 4 6] [--videos PATH ...] [--threads 1]

Runs the faces-only pipeline (no model: its cost does not change with K) on the fixture videos with
the default detector and on the synthetic multi-face scenes of tests/synth.py with blazeface-back (as
tests/test_multiface.py does). Per video and K: frames detected (of all frames), CPU seconds of the pass (process
time, robust to other load on the machine), mean and 5th-percentile IoU of each row's box with the
K = 1 row of the same face in the same frame, face rows gained/lost against K = 1, and, for the synthetic
scenes with ground truth, recall of faces at least 90 % visible (IoU >= 0.4 with the true box), mean
IoU with the true box and id switches (a face's matched face_id changing while it stays visible).
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import synth  # noqa: E402  (OpenCV before torch: the other order breaks OpenCV's PNG reader here)

from fer_annotate.faces.detect import CONFIRM_SCORE, DetectorConfig  # noqa: E402
from fer_annotate.faces.sparse import SparseConfig  # noqa: E402
from fer_annotate.faces.track import TrackerConfig, iou_matrix  # noqa: E402
from fer_annotate.run.pipeline import AnnotateConfig, Annotator  # noqa: E402
from fer_annotate.run.threads import apply_torch_threads, plan_threads  # noqa: E402

SHARED = ROOT.parent / "shared"
FIXTURES = [SHARED / "fixtures" / "videos" / n for n in (
    "pyfeat_WolfgangLanger_Pexels.mp4", "pyfeat_single_face.mp4", "pyfeat_face_noface.mov")]


def annotate(path: Path, detector: str, every: int, out: Path) -> tuple[pd.DataFrame, int, float]:
    """Rows, frames detected and CPU seconds of one faces-only pass."""
    config = AnnotateConfig(detector=DetectorConfig(name=detector),
                            tracker=TrackerConfig(confirm_score=CONFIRM_SCORE[detector]),
                            sparse=SparseConfig(every=every))
    annotator = Annotator(config)
    tic = time.process_time()
    summary = annotator.run(path, out)
    cpu = time.process_time() - tic
    return pd.read_csv(out), summary.frames_detected, cpu


def versus_reference(rows: pd.DataFrame, ref: pd.DataFrame) -> tuple[float, float, int, int]:
    """Mean and 5th-percentile IoU of face rows with the reference's same face and frame; rows lost, gained."""
    rows, ref = rows[rows.status == "ok"], ref[ref.status == "ok"]
    key = ["frame", "face_id"]
    both = rows.merge(ref, on=key, suffixes=("", "_ref"))
    cols = ["x1", "y1", "x2", "y2"]
    ious = np.array([iou_matrix(a[None], b[None])[0, 0] for a, b in
                     zip(both[cols].to_numpy(), both[[c + "_ref" for c in cols]].to_numpy(), strict=True)])
    lost = len(ref) - len(both)
    gained = len(rows) - len(both)
    if not len(ious):
        return float("nan"), float("nan"), lost, gained
    return float(ious.mean()), float(np.percentile(ious, 5)), lost, gained


def versus_truth(rows: pd.DataFrame, video) -> tuple[float, float, int]:
    """Recall of >= 90 % visible faces, mean IoU with the true boxes, id switches while visible."""
    rows = rows[rows.status == "ok"]
    by_frame = {f: g for f, g in rows.groupby("frame")}
    found = required = switches = 0
    ious = []
    last_id: dict[int, int] = {}
    for i, faces in enumerate(video.frames):
        g = by_frame.get(i)
        for face in faces:
            truth = synth.clip_box(face.box, video.width, video.height)
            match = None
            if g is not None:
                scores = [synth.iou(truth, tuple(b)) for b in g[["x1", "y1", "x2", "y2"]].to_numpy()]
                k = int(np.argmax(scores))
                if scores[k] >= 0.4:
                    match = (int(g.face_id.iloc[k]), scores[k])
            if face.visible >= 0.9:
                required += 1
                found += match is not None
            if match is not None:
                ious.append(match[1])
                if face.visible >= 0.5 and last_id.get(face.gt_id, match[0]) != match[0]:
                    switches += 1
                last_id[face.gt_id] = match[0]
            elif face.visible < 0.5:
                last_id.pop(face.gt_id, None)
    return found / max(required, 1), float(np.mean(ious)) if ious else float("nan"), switches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--every", type=int, nargs="+", default=[1, 2, 3, 4, 6])
    parser.add_argument("--videos", type=Path, nargs="*", default=None, help="default: the fixtures")
    parser.add_argument("--no-fixtures", action="store_true", help="only the synthetic scenes")
    parser.add_argument("--no-synth", action="store_true", help="leave out the synthetic scenes")
    parser.add_argument("--threads", type=int, default=None, help="thread budget (default: as the CLI)")
    args = parser.parse_args()
    os.environ.setdefault("TORCH_HOME", str(SHARED / "torch-home"))
    apply_torch_threads(plan_threads(args.threads))
    every = sorted(set(args.every) | {1})
    tmp = Path(tempfile.mkdtemp(prefix="fer-detect-every-"))
    jobs = [(p, "blazeface", None) for p in (args.videos or FIXTURES) if p.is_file()]
    if args.no_fixtures:
        jobs = []
    if not args.no_synth:
        for name, make in synth.SCENES.items():
            jobs.append((None, "blazeface-back", (name, make)))
    print(f"load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])} at start")
    header = (f"{'video':<34} {'K':>2} {'detected':>9} {'CPU s':>6} {'x faster':>8} {'IoU vs K=1':>10} "
              f"{'p5 IoU':>7} {'lost':>5} {'gained':>6} {'recall':>6} {'IoU gt':>6} {'id sw':>5}")
    print(header)
    print("-" * len(header))
    for path, detector, scene in jobs:
        video = None
        if scene is not None:
            video = scene[1](SHARED / "fixtures" / "images", tmp / f"{scene[0]}.mp4")
            path = video.path
        ref, base_cpu = None, None
        for k in every:
            rows, detected, cpu = annotate(Path(path), detector, k, tmp / f"out_{k}.csv")
            if k == 1:
                ref, base_cpu = rows, cpu
            mean_iou, p5, lost, gained = versus_reference(rows, ref)
            truth = ("", "", "")
            if video is not None:
                recall, gt_iou, switches = versus_truth(rows, video)
                truth = (f"{recall:.3f}", f"{gt_iou:.3f}", str(switches))
            n = rows.frame.nunique()
            print(f"{Path(path).name[:34]:<34} {k:>2} {detected:>4}/{n:<4} {cpu:>6.2f} {base_cpu / cpu:>8.2f} "
                  f"{mean_iou:>10.3f} {p5:>7.3f} {lost:>5} {gained:>6} {truth[0]:>6} {truth[1]:>6} {truth[2]:>5}",
                  flush=True)
    print(f"load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])} at end")


if __name__ == "__main__":
    main()
