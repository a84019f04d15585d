"""Speed of a bundle's distilled geometry students against MediaPipe's face landmarker on the same face crops.

Both run on the crops of a harvested manifest (`fer-train harvest`): the bundle's ensemble on the crops as
the pipeline feeds them, the landmarker on the same crops (it upscales and pads small ones itself).
Prints CPU time per crop (process time, so that a busy machine disturbs it less than wall time) and
wall-clock crops per second, medians of --repeat rounds.

    python benchmarks/geometry_student_benchmark.py weights/ferplus FACES/labels.csv \
        --model ../shared/models/face_landmarker.task
"""

import argparse
import csv
import statistics
import time

import numpy as np
import torch
from PIL import Image

from fer_annotate.faces.geometry import Landmarker
from fer_annotate.models.bundle import load_bundle
from fer_annotate.models.ensemble import Ensemble


def _timed(fn, repeat: int) -> tuple[float, float]:
    cpu, wall = [], []
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), statistics.median(wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("labels", help="labels.csv of fer-train harvest (paths of the crops)")
    parser.add_argument("--model", default=None, help="face_landmarker.task (default: the cache)")
    parser.add_argument("--limit", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    paths = [row["path"] for row in csv.DictReader(open(args.labels))][: args.limit]
    crops = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
    ensemble = Ensemble(load_bundle(args.bundle), "cpu")
    batch = torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous()
    ensemble(batch[:16])  # warm-up

    def students() -> None:
        for i in range(0, len(batch), 16):  # the pipeline's batch of a few frames' faces
            ensemble(batch[i : i + 16])

    landmarker = Landmarker(args.model)
    landmarker(list(crops[:4]))
    n = len(crops)
    s_cpu, s_wall = _timed(students, args.repeat)
    m_cpu, m_wall = _timed(lambda: landmarker(list(crops)), args.repeat)
    load = open("/proc/loadavg").read().split()[0]
    print(f"{n} crops of {crops.shape[1]} px, {args.threads} torch thread(s), load average {load}")
    print(f"students ({len(ensemble.cnns)} members): {1000 * s_cpu / n:.2f} ms CPU per crop, {n / s_wall:.0f} crops/s")
    print(f"MediaPipe landmarker:        {1000 * m_cpu / n:.2f} ms CPU per crop, {n / m_wall:.0f} crops/s")


if __name__ == "__main__":
    main()
