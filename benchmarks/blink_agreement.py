"""Blinks from the default bundle's distilled blendshapes against blinks from MediaPipe's landmarker (the
teacher, `--geometry mediapipe`), found by the same rule: counts, and onsets matched within 2 frames.

Also prints what the blink rule's defaults rest on: each clip's eyeBlink baseline, the noise around it
(median absolute deviation from the running median) and the rise of each blink found.

    python benchmarks/blink_agreement.py [--model ../shared/models/face_landmarker.task] [--on 0.15 ...]

Annotates the fixture videos with faces (../shared/fixtures/videos) twice each into a temporary folder.
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np

from fer_annotate.api import annotate
from fer_annotate.outputs.events import (
    BlinkRule,
    EventRules,
    blink_columns,
    face_series,
    find_events,
    running_median,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
VIDEOS = ("pyfeat_WolfgangLanger_Pexels.mp4", "pyfeat_single_face.mp4", "pyfeat_face_noface.mov")


def match(a: list[int], b: list[int], tolerance: int) -> int:
    """Onset frames of `a` and `b` paired one to one when within `tolerance` frames (greedy, in order)."""
    used: set[int] = set()
    pairs = 0
    for x in a:
        near = [j for j, y in enumerate(b) if j not in used and abs(x - y) <= tolerance]
        if near:
            used.add(min(near, key=lambda j: abs(x - b[j])))
            pairs += 1
    return pairs


def signal_stats(df, rule: BlinkRule) -> tuple[float, float]:
    """The face's median eyeBlink signal (min of both eyes) and the noise: MAD from the running median."""
    cols = blink_columns(list(df.columns))
    face = face_series(df)[0]
    signal = np.minimum(face.rows[cols[0]].to_numpy(float), face.rows[cols[1]].to_numpy(float))
    rise = signal - running_median(signal, face.times, face.present, rule.baseline_s)
    return float(np.nanmedian(signal)), float(np.nanmedian(np.abs(rise)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=SHARED / "models" / "face_landmarker.task")
    parser.add_argument("--on", type=float, nargs="+", default=[BlinkRule().on])
    parser.add_argument("--tolerance", type=int, default=2, help="onset frames apart that still match")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tables = {}
        for name in VIDEOS:
            video = SHARED / "fixtures" / "videos" / name
            tables[name] = (annotate(video, Path(tmp) / f"{name}.distilled.csv", detector="blazeface"),
                            annotate(video, Path(tmp) / f"{name}.mediapipe.csv", detector="blazeface",
                                     geometry="mediapipe", geometry_model=args.model))
        print("clip                               source     columns read          median  noise(MAD)")
        for name, (distilled, teacher) in tables.items():
            for label, df in (("distilled", distilled), ("mediapipe", teacher)):
                median, noise = signal_stats(df, BlinkRule())
                cols = ",".join(c.removeprefix("bs_eyeBlink") for c in blink_columns(list(df.columns)))
                print(f"{name:34s} {label:10s} {cols:20s} {median:6.3f}  {noise:6.3f}")
        for on in args.on:
            rule = EventRules(blink=BlinkRule(on=on, off=min(BlinkRule().off, on)), kinds=("blink",))
            print(f"\nrule: {rule.blink}")
            print("clip                               distilled  mediapipe  matched  onset |diff| frames  "
                  "peak rise distilled / mediapipe")
            totals = np.zeros(3, int)
            for name, (distilled, teacher) in tables.items():
                ours, theirs = find_events(distilled, rule), find_events(teacher, rule)
                pairs = match(list(ours["start_frame"]), list(theirs["start_frame"]), args.tolerance)
                diffs = [min(abs(a - b) for b in theirs["start_frame"]) for a in ours["start_frame"]] \
                    if len(theirs) else []
                totals += [len(ours), len(theirs), pairs]
                rises = (f"{_rises(distilled, ours)} / {_rises(teacher, theirs)}")
                print(f"{name:34s} {len(ours):9d}  {len(theirs):9d}  {pairs:7d}  {str(diffs):20s}  {rises}")
            n_ours, n_theirs, n_pairs = totals
            print(f"{'all':34s} {n_ours:9d}  {n_theirs:9d}  {n_pairs:7d}  recall vs teacher "
                  f"{n_pairs / max(n_theirs, 1):.2f}, precision {n_pairs / max(n_ours, 1):.2f}")


def _rises(df, events) -> str:
    """Each blink's peak rise above the face's running baseline."""
    if events.empty:
        return "-"
    cols = blink_columns(list(df.columns))
    face = face_series(df)[0]
    signal = np.minimum(face.rows[cols[0]].to_numpy(float), face.rows[cols[1]].to_numpy(float))
    rise = signal - running_median(signal, face.times, face.present, BlinkRule().baseline_s)
    at = {int(f): k for k, f in enumerate(face.frames)}
    return ",".join(f"{np.nanmax(rise[at[a]:at[b] + 1]):.2f}" for a, b in zip(events["start_frame"],
                                                                               events["end_frame"], strict=True))


if __name__ == "__main__":
    main()
