"""Rendering speed against annotation speed on one video (default: the 640x360 WolfgangLanger fixture).

Annotates the video once per round with the given weights (frames/s from the run's own timing), then
renders the overlay (frames/s of the whole render: decode, draw, encode, audio copy), in interleaved
rounds; prints each round, the medians and the load average (other processes disturb the figures).

    python benchmarks/render_benchmark.py [--video V] [--weights NAME|PATH] [--every N] [--end S] [--rounds 3]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DEFAULT_VIDEO = SHARED / "fixtures" / "videos" / "pyfeat_WolfgangLanger_Pexels.mp4"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--weights", default=None, help="bundle (default: as the CLI)")
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--end", type=float, default=None, help="annotate only the first seconds (render: all)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads for the annotation")
    args = parser.parse_args()
    if not args.video.is_file():
        sys.exit(f"{args.video}: no such file (pass --video)")
    os.environ.setdefault("TORCH_HOME", str(SHARED / "torch-home"))
    import torch

    from fer_annotate.api import Annotator
    from fer_annotate.outputs.render import render_overlay

    if args.threads:
        torch.set_num_threads(args.threads)
    annotator = Annotator(weights=args.weights, every=args.every, end=args.end, device="cpu")
    print(f"video {args.video.name}, model {annotator.describe()}, every {args.every}, "
          f"torch threads {torch.get_num_threads()}")
    annotate_fps, render_fps = [], []
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "t.csv"
        for r in range(args.rounds):
            df = annotator.annotate(args.video, table)
            annotate_fps.append(df.attrs["timing"]["frames_per_second"] * 1.0)
            tic = time.perf_counter()
            done = render_overlay(args.video, table, Path(tmp) / "overlay.mp4")
            render_fps.append(done.frames / (time.perf_counter() - tic))
            print(f"round {r + 1}: annotate {annotate_fps[-1]:.1f} sampled frames/s, "
                  f"render {render_fps[-1]:.1f} frames/s ({done.frames} frames, "
                  f"{(Path(tmp) / 'overlay.mp4').stat().st_size / 1e6:.1f} MB)")
    print(f"median: annotate {statistics.median(annotate_fps):.1f} frames/s, "
          f"render {statistics.median(render_fps):.1f} frames/s; load average {open('/proc/loadavg').read().strip()}")


if __name__ == "__main__":
    main()
