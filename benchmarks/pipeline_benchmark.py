"""Throughput and memory of the annotation pipeline on one video, as a small table.

    python benchmarks/pipeline_benchmark.py [--video PATH] [--weights NAME|PATH | --random-bundle caffe_resnet50:5]
                                            [--device cpu|cuda]

Three passes over the same frames (each pipeline pass after one untimed warm-up batch): decode
only (decord), the face pipeline (decode, detect, track, and the output table), and, with --weights,
the full pipeline (align, the bundle's ensemble and the temporal filter as well). Per pass: frames/s,
the process's peak resident memory so far (ru_maxrss only grows, so a later pass shows max(earlier,
its own)) and, on CUDA, the pass's peak allocated GPU memory; then each pipeline stage's share of the
time the pipeline measured (decode is the time spent waiting for the decoding thread, so it is small
when decoding keeps up).
"""

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer_annotate.detect import DetectorConfig  # noqa: E402
from fer_annotate.pipeline import AnnotateConfig, Annotator  # noqa: E402
from fer_annotate.video import Sampling, Video  # noqa: E402

DEFAULT_VIDEO = ROOT.parent / "shared" / "fixtures" / "videos" / "pyfeat_WolfgangLanger_Pexels.mp4"


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_cuda(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_cuda_mib(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**20


def decode_only(path: Path, sampling: Sampling, batch_size: int) -> tuple[int, float]:
    """Frames decoded and seconds taken, batches as the pipeline asks for them."""
    tic = time.perf_counter()
    video = Video(path)
    n = 0
    for batch in video.batches(video.select(sampling), batch_size):
        n += len(batch.indices)
    return n, time.perf_counter() - tic


def warm_up(annotator: Annotator, path: Path, batch_size: int, device: str) -> None:
    """One untimed batch through the detector (and the model), so one-off start-up costs stay out."""
    video = Video(path)
    batch = next(video.batches(video.select(Sampling())[:batch_size], batch_size))
    annotator.detector(batch.frames)
    if annotator.model is not None:
        size = annotator.template.size
        annotator.model.predict(torch.zeros((batch_size, 3, size, size), dtype=torch.uint8, device=device))


def pipeline_pass(annotator: Annotator, path: Path, folder: Path, name: str) -> tuple[int, float, dict[str, float]]:
    """Annotate the video once; frames, seconds and seconds per stage."""
    tic = time.perf_counter()
    summary = annotator.run(path, folder / f"{name}.csv")
    return summary.frames_sampled, time.perf_counter() - tic, summary.stage_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--weights", default=None, metavar="NAME|PATH",
                        help="bundle for the full-pipeline pass (registry name or folder); omitted: no such pass")
    parser.add_argument("--random-bundle", default=None, metavar="BACKBONE:MEMBERS[:SIZE]",
                        help="instead of --weights: a random-weight bundle, e.g. caffe_resnet50:5:112 "
                             "(the paper's ensemble shape, for speed figures without the weights)")
    parser.add_argument("--detector", default="blazeface")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--end", type=float, default=None, help="only the first END seconds of the video")
    parser.add_argument("--smooth", default="gauss")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()

    if not args.video.is_file():
        sys.exit(f"{args.video}: no such video (pass --video)")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    os.environ.setdefault("TORCH_HOME", str(ROOT.parent / "shared" / "torch-home"))
    sampling = Sampling(end_s=args.end)
    config = AnnotateConfig(detector=DetectorConfig(name=args.detector, device=device), sampling=sampling,
                            batch_size=args.batch_size, device=device)

    rows: list[dict] = []
    stages: dict[str, dict[str, float]] = {}

    def record(name: str, frames: int, seconds: float) -> None:
        rows.append({"pass": name, "frames": frames, "seconds": round(seconds, 3),
                     "frames_per_s": round(frames / max(seconds, 1e-9), 1),
                     "peak_rss_mib": round(peak_rss_mib(), 1), "peak_cuda_mib": peak_cuda_mib(device)})

    frames, seconds = decode_only(args.video, sampling, args.batch_size)
    record("decode only", frames, seconds)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.random_bundle:
            sys.path.insert(0, str(ROOT / "tests"))
            from bundle_factory import make_random_bundle

            backbone, members, *size = args.random_bundle.split(":")
            args.weights = str(make_random_bundle(folder / "bundle", backbone=backbone, members=int(members),
                                                  input_size=int(size[0]) if size else 112))
        annotator = Annotator(config)
        warm_up(annotator, args.video, args.batch_size, device)
        reset_cuda(device)
        frames, seconds, stages["faces"] = pipeline_pass(annotator, args.video, folder, "faces")
        record(f"faces ({args.detector})", frames, seconds)
        if args.weights is not None:
            from fer_annotate.model import ModelStage
            from fer_annotate.weights import resolve_bundle

            stage = ModelStage(resolve_bundle(args.weights), device, args.smooth)
            annotator = Annotator(config, stage)
            warm_up(annotator, args.video, args.batch_size, device)
            reset_cuda(device)
            frames, seconds, stages["full"] = pipeline_pass(annotator, args.video, folder, "full")
            record(f"full ({stage.bundle.name})", frames, seconds)

    print(f"video {args.video.name}, device {device}, torch threads {torch.get_num_threads()}, "
          f"batch {args.batch_size}")
    header = f"{'pass':<36} {'frames':>7} {'seconds':>8} {'frames/s':>9} {'peak RSS MiB':>13} {'peak CUDA MiB':>14}"
    print(header)
    print("-" * len(header))
    for r in rows:
        cuda = "-" if r["peak_cuda_mib"] is None else f"{r['peak_cuda_mib']:.0f}"
        print(f"{r['pass']:<36} {r['frames']:>7} {r['seconds']:>8.2f} {r['frames_per_s']:>9.1f} "
              f"{r['peak_rss_mib']:>13.0f} {cuda:>14}")
    for name, seconds_by_stage in stages.items():
        total = sum(seconds_by_stage.values()) or 1.0
        shares = ", ".join(f"{k} {100 * v / total:.0f} %" for k, v in seconds_by_stage.items() if v > 0)
        print(f"stage share, {name}: {shares}")
    if args.json is not None:
        args.json.write_text(json.dumps({"video": str(args.video), "device": device, "passes": rows,
                                         "stage_seconds": stages}, indent=2) + "\n")


if __name__ == "__main__":
    main()
