"""Photos per second of `fer-annotate FOLDER -o faces.csv` (a photo set into one table) on 1,000 images.

The images are made from the fixture stills (../shared/fixtures/images): crops, mirror images and scales
(JPEG, 0.3-1.0 of the original size), into --folder unless it already holds them. Then the CLI runs once
and prints images, rows, seconds, photos/s; with --stop-after S it first starts a run, kills it after S
seconds, and shows that the second run resumes (images taken from the first run's parts).

    python benchmarks/photoset_benchmark.py [--folder /tmp/photos1000] [--count 1000] [--stop-after 20]
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

SHARED = Path(__file__).resolve().parents[2] / "shared"


def make_photos(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """`count` JPEGs derived from the fixture stills (crop, mirror, scale), in 10 subfolders."""
    rng = np.random.default_rng(seed)
    sources = sorted((SHARED / "fixtures" / "images").iterdir())
    images = [ImageOps.exif_transpose(Image.open(p)).convert("RGB") for p in sources]
    paths = []
    for i in range(count):
        k = i % len(images)
        image = images[k]
        w, h = image.size
        keep = rng.uniform(0.75, 1.0)
        cw, ch = max(16, int(w * keep)), max(16, int(h * keep))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        out = image.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            out = ImageOps.mirror(out)
        scale = rng.uniform(0.3, 1.0) if min(cw, ch) > 200 else 1.0
        out = out.resize((max(16, int(cw * scale)), max(16, int(ch * scale))), Image.BILINEAR)
        path = folder / f"set{i % 10}" / f"{sources[k].stem}_{i:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        out.save(path, quality=90)
        paths.append(path)
    return paths


def run_cli(args: list[str], stop_after: float | None = None) -> tuple[int, float, str]:
    """`fer-annotate ARGS` in a new process; killed (SIGKILL) after `stop_after` seconds when given."""
    code = "import sys; from fer_annotate.cli.main import main; sys.exit(main())"
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=stop_after)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
    return proc.returncode, time.perf_counter() - start, err


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "fer-photos-1000")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--stop-after", type=float, default=None, help="kill a first run after S seconds")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("extra", nargs="*", help="more fer-annotate options (after --)")
    args = parser.parse_args()
    if len(list(args.folder.rglob("*.jpg"))) != args.count:
        make_photos(args.folder, args.count)
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "faces.csv"
        cli = [str(args.folder), "-o", str(table), *(["--threads", str(args.threads)] if args.threads else []),
               *args.extra]
        done = 0
        if args.stop_after:
            rc, seconds, _ = run_cli(cli, args.stop_after)
            parts = Path(tmp) / f".{table.name}.parts"
            done = sum(len(json.loads(m.read_text())["images"]) for m in parts.glob("part-*.json"))
            print(f"first run killed after {seconds:.1f} s (exit {rc}): {done} images in finished parts, "
                  f"table written: {table.exists()}")
        rc, seconds, err = run_cli(cli)
        meta = json.loads((Path(tmp) / "faces.csv.json").read_text())
        print(err.strip().splitlines()[-1])
        annotated = meta["images"] - done
        print(f"images {meta['images']} ({annotated} annotated by this run), rows {meta['rows']}, failed "
              f"{len(meta['failed'])}, {seconds:.1f} s (process start and model load included), "
              f"{annotated / seconds:.1f} photos/s; exit {rc}")
        print(f"load average: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")


if __name__ == "__main__":
    main()
