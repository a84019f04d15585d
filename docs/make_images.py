"""Make the README's pictures: one rendered overlay frame and one figure (small PNGs in docs/).

Annotates the first seconds of a fixture video with the default bundle, renders the overlay, keeps one
frame, and plots the table. Rerun after changing render.py or plot.py:

    python docs/make_images.py [--video V] [--end 8] [--frame-s 4]
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
SHARED = DOCS.parents[1] / "shared"
DEFAULT_VIDEO = SHARED / "fixtures" / "videos" / "pyfeat_WolfgangLanger_Pexels.mp4"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--weights", default=None, help="bundle (default: as the CLI)")
    parser.add_argument("--end", type=float, default=8.0, help="seconds annotated")
    parser.add_argument("--every", type=int, default=2)
    parser.add_argument("--frame-s", type=float, default=4.0, help="time of the overlay frame kept")
    args = parser.parse_args()
    if not args.video.is_file():
        sys.exit(f"{args.video}: no such file (pass --video)")
    os.environ.setdefault("TORCH_HOME", str(SHARED / "torch-home"))
    import av
    from PIL import Image

    from fer_annotate.api import annotate
    from fer_annotate.outputs.plot import PlotOptions, plot_table
    from fer_annotate.outputs.render import render_overlay

    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "table.csv"
        df = annotate(args.video, table, weights=args.weights, end=args.end, every=args.every, device="cpu")
        overlay = Path(tmp) / "overlay.mp4"
        render_overlay(args.video, table, overlay)
        with av.open(str(overlay)) as c:
            frame = next(f for f in c.decode(video=0) if f.time >= args.frame_s).to_image()
    out = DOCS / "render_frame.png"
    frame.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    print(f"{out}: {out.stat().st_size // 1024} KiB")
    fig = plot_table(df, None, PlotOptions(dpi=72))
    out = DOCS / "plot.png"
    fig.savefig(out, dpi=72)
    Image.open(out).convert("RGB").quantize(colors=128).save(out, optimize=True)
    print(f"{out}: {out.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
