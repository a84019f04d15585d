"""Shot-cut detection: our thumbnail detector (fer_annotate.faces.cuts) against PySceneDetect.

Clips with known boundaries come from benchmarks/cut_clips.py (fixture videos and stills, hard cuts,
fades through black; whip pans, crash zooms and flashes that are not cuts). Every detector sees the
same decoded 640x360 frames; the time is the detector's alone (decoding excluded), one core.
PySceneDetect needs `pip install scenedetect` (a benchmark-only dependency).

    nice -n 10 python benchmarks/cut_benchmark.py [--shared ../shared]
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cut_clips  # noqa: E402

from fer_annotate.faces.cuts import CutDetector  # noqa: E402

TOLERANCE = 1  # frames either side of a boundary range


def ours(frames: np.ndarray) -> list[int]:
    detector = CutDetector()
    flags = [detector(torch.from_numpy(frames[s : s + 16])) for s in range(0, len(frames), 16)]
    return np.flatnonzero(np.concatenate(flags)).tolist()


def scenedetect_run(kind: str):
    def run(frames: np.ndarray) -> list[int]:
        from scenedetect import AdaptiveDetector, ContentDetector, FrameTimecode, HistogramDetector

        detector = {"content": ContentDetector, "adaptive": AdaptiveDetector, "histogram": HistogramDetector}[kind]()
        cuts = []
        bgr = np.ascontiguousarray(frames[..., ::-1])
        for i, frame in enumerate(bgr):
            cuts += detector.process_frame(FrameTimecode(i, fps=25.0), frame)
        cuts += detector.post_process(FrameTimecode(len(frames), fps=25.0))
        return [c.frame_num for c in cuts]

    return run


def score(found: list[int], boundaries: list[tuple[int, int]]) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of detected cut frames against boundary ranges."""
    hit, fp = set(), 0
    for f in found:
        inside = [k for k, (a, b) in enumerate(boundaries) if a - TOLERANCE <= f <= b + TOLERANCE]
        hit.update(inside[:1])
        fp += not inside  # a second detection inside one boundary (a fade) is harmless
    return len(hit), fp, len(boundaries) - len(hit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    args = parser.parse_args()
    torch.set_num_threads(1)
    clips = cut_clips.clips(args.shared)
    detectors = {"ours": ours, "pyscenedetect content": scenedetect_run("content"),
                 "pyscenedetect adaptive": scenedetect_run("adaptive"),
                 "pyscenedetect histogram": scenedetect_run("histogram")}
    total_frames = sum(len(c.frames) for c in clips)
    print(f"{len(clips)} clips, {total_frames} frames 640x360, "
          f"{sum(len(c.boundaries) for c in clips)} boundaries")
    print(f"{'detector':26s} {'precision':>9s} {'recall':>7s} {'frames/s':>9s}  misses / false cuts")
    for name, run in detectors.items():
        tp = fp = fn = 0
        seconds, notes = 0.0, []
        for clip in clips:
            tic = time.perf_counter()
            found = run(clip.frames)
            seconds += time.perf_counter() - tic
            a, b, c = score(found, clip.boundaries)
            tp, fp, fn = tp + a, fp + b, fn + c
            if b or c:
                notes.append(f"{clip.name}: {c}/{b}")
        precision = tp / max(tp + fp, 1)
        recall = tp / max(tp + fn, 1)
        print(f"{name:26s} {precision:9.3f} {recall:7.3f} {total_frames / seconds:9.0f}  {', '.join(notes)}")


if __name__ == "__main__":
    main()
