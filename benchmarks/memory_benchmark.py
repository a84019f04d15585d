"""Peak memory of a whole `fer-annotate` process on a short clip, the same clip looped 10x, and a 4K clip.

Builds the clips with PyAV in a temporary folder from the 640x360 WolfgangLanger fixture (the 10x clip
by remuxing the packets with shifted timestamps, the 3840x2160 one by upscaling and re-encoding its first
frames), then runs `/usr/bin/time -f %M fer-annotate CLIP -o OUT.csv` on each (default bundle and
detector unless given) and prints the peak RSS (median of --repeat runs, interleaved).

    python benchmarks/memory_benchmark.py [--video PATH] [--repeat 3] [--4k-frames 96] [-- EXTRA ARGS]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import av

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "videos" / "pyfeat_WolfgangLanger_Pexels.mp4"


CLI = "import sys; from fer_annotate.cli.main import main; sys.exit(main())"


def loop_clip(src: Path, dst: Path, times: int) -> int:
    """`src` repeated `times` times without re-encoding (packets remuxed with shifted timestamps)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = inp.streams.video[0]
        ostream = out.add_stream_from_template(stream)
        packets = [p for p in inp.demux(stream) if p.dts is not None]
        span = max(p.pts + (p.duration or 0) for p in packets) - min(p.pts for p in packets)
        for k in range(times):
            for p in packets:
                p.pts += span if k else 0
                p.dts += span if k else 0
                p.stream = ostream
                out.mux(p)
    return len(packets) * times


def upscale_clip(src: Path, dst: Path, width: int, height: int, frames: int) -> int:
    """The first `frames` frames of `src` upscaled to width x height, H.264."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        rate = inp.streams.video[0].average_rate or Fraction(25)
        ostream = out.add_stream("libx264", rate=rate, options={"preset": "ultrafast", "crf": "23"})
        ostream.width, ostream.height, ostream.pix_fmt = width, height, "yuv420p"
        n = 0
        for frame in inp.decode(video=0):
            big = frame.reformat(width=width, height=height, format="yuv420p")
            for p in ostream.encode(av.VideoFrame.from_ndarray(big.to_ndarray(), format="yuv420p")):
                out.mux(p)
            n += 1
            if n == frames:
                break
        for p in ostream.encode():
            out.mux(p)
    return n


def peak_rss_mib(video: Path, out: Path, extra: list[str]) -> float:
    """Peak RSS of one whole `fer-annotate` process, in MiB."""
    report = out.with_suffix(".time")
    cmd = ["/usr/bin/time", "-f", "%M", "-o", str(report), sys.executable, "-c", CLI,
           str(video), "-o", str(out), "--overwrite", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{video.name}: fer-annotate failed:\n{proc.stderr[-2000:]}")
    return int(report.read_text().split()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=FIXTURE)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--4k-frames", dest="frames_4k", type=int, default=96)
    ap.add_argument("extra", nargs="*", help="more fer-annotate options (after --)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        looped = tmp / "looped10x.mp4"
        big = tmp / "uhd.mp4"
        n10 = loop_clip(args.video, looped, 10)
        n4k = upscale_clip(args.video, big, 3840, 2160, args.frames_4k)
        clips = {"640x360, 1x": args.video, f"640x360, 10x ({n10} frames)": looped,
                 f"3840x2160 ({n4k} frames)": big}
        peaks: dict[str, list[float]] = {name: [] for name in clips}
        for _ in range(args.repeat):
            for name, clip in clips.items():
                peaks[name].append(peak_rss_mib(clip, tmp / f"{clip.stem}.csv", args.extra))
    print(f"load average at the end: {os.getloadavg()}")
    print(f"{'clip':32} {'median peak RSS':>16}  runs (MiB)")
    for name, values in peaks.items():
        runs = ", ".join(f"{v:.0f}" for v in values)
        print(f"{name:32} {statistics.median(values) / 1024:13.2f} GiB  {runs}")


if __name__ == "__main__":
    main()

