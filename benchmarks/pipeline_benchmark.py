"""Throughput and memory of the annotation pipeline on one video, as a small table.

    python benchmarks/pipeline_benchmark.py [--video PATH] [--weights NAME|PATH | --random-bundle caffe_resnet50:5]
                                            [--device cpu|cuda] [--threads N] [--repeat 3] [--detect-every K]
    python benchmarks/pipeline_benchmark.py --readme --threads 1 --end 10 --repeat 5   # the README's table

Three passes over the same frames (each pipeline pass after one untimed warm-up batch): decode
only (decord), the face pipeline (decode, detect, track, and the output table), and, with --weights,
the full pipeline (align, the bundle's ensemble and the temporal filter as well). Per pass: frames/s,
the process's peak resident memory so far (ru_maxrss only grows, so a later pass shows max(earlier,
its own)) and, on CUDA, the pass's peak allocated GPU memory; then each pipeline stage's share of the
time the pipeline measured (decode is the time spent waiting for the decoding thread, so it is small
when decoding keeps up). Every pass runs --repeat times, interleaved with the others so that load
from other processes hits them alike; the median and the range are printed with the machine and its
load average. On CPU the members run traced and fused for oneDNN, as in every run (decided at load).
"""

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer_annotate.faces.detect import DetectorConfig  # noqa: E402
from fer_annotate.faces.sparse import DETECT_EVERY, SparseConfig  # noqa: E402
from fer_annotate.media.video import Sampling, Video  # noqa: E402
from fer_annotate.run.pipeline import AnnotateConfig, Annotator  # noqa: E402
from fer_annotate.run.threads import apply_torch_threads, available_cores, plan_threads  # noqa: E402

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


def decode_only(path: Path, sampling: Sampling, batch_size: int, threads: int) -> tuple[int, float]:
    """Frames decoded and seconds taken, batches as the pipeline asks for them."""
    tic = time.perf_counter()
    video = Video(path, threads=threads)
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


def machine() -> str:
    """CPU model, cores this process may use, and the load average now."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown CPU")
    return f"{model}, {available_cores()} cores, load average {loadavg()}"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@dataclass
class Pass:
    """One configuration to time: its label, detector, bundle (None: faces only) and detect-every."""

    label: str
    detector: str = "blazeface"
    weights: str | None = None
    every: int = 1
    seconds: list[float] = field(default_factory=list)
    frames: int = 0
    rss: float = 0.0
    cuda: float | None = None
    stages: dict[str, float] = field(default_factory=dict)


def readme_passes(folder: Path) -> list[Pass]:
    """The README's speed table: faces only with both BlazeFace models, the shipped bundle, the paper's shape."""
    sys.path.insert(0, str(ROOT / "tests"))
    from bundle_factory import make_random_bundle

    paper = str(make_random_bundle(folder / "paper-shape", backbone="caffe_resnet50", members=5, input_size=112))
    shipped = str(ROOT / "weights" / "ferplus")
    every = DETECT_EVERY
    return [
        Pass("faces: decode + detect + track + table, `blazeface`, every frame detected"),
        Pass(f"faces, `blazeface`, `--detect-every {every}` (default)", every=every),
        Pass("faces, `blazeface-back`, every frame detected", detector="blazeface-back"),
        Pass("full: shipped `ferplus` (teacher + 4 students, 48 px grey), the default run",
             weights=shipped, every=every),
        Pass("full: 5-member Caffe ResNet-50 (random weights, the paper's shape), 112 px",
             weights=paper, every=every),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--weights", default=None, metavar="NAME|PATH",
                        help="bundle for the full-pipeline pass (registry name or folder); omitted: no such pass")
    parser.add_argument("--random-bundle", default=None, metavar="BACKBONE:MEMBERS[:SIZE]",
                        help="instead of --weights: a random-weight bundle, e.g. caffe_resnet50:5:112 "
                             "(the paper's ensemble shape, for speed figures without the weights)")
    parser.add_argument("--readme", action="store_true",
                        help="time the README's table (both BlazeFace models, the shipped bundle, the paper's "
                             "shape) and print it as markdown")
    parser.add_argument("--detector", default="blazeface")
    parser.add_argument("--detect-every", type=int, default=1)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--end", type=float, default=None, help="only the first END seconds of the video")
    parser.add_argument("--smooth", default="gauss")
    parser.add_argument("--threads", type=int, default=None,
                        help="thread budget as fer-annotate --threads (default: as fer-annotate)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per pass, interleaved (median reported)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()

    if not args.video.is_file():
        sys.exit(f"{args.video}: no such video (pass --video)")
    plan = plan_threads(args.threads)
    apply_torch_threads(plan)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    os.environ.setdefault("TORCH_HOME", str(ROOT.parent / "shared" / "torch-home"))
    sampling = Sampling(end_s=args.end)
    load_start = loadavg()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.readme:
            passes = readme_passes(folder)
        else:
            passes = [Pass(f"faces ({args.detector})", detector=args.detector, every=args.detect_every)]
            if args.random_bundle:
                sys.path.insert(0, str(ROOT / "tests"))
                from bundle_factory import make_random_bundle

                backbone, members, *size = args.random_bundle.split(":")
                args.weights = str(make_random_bundle(folder / "bundle", backbone=backbone, members=int(members),
                                                      input_size=int(size[0]) if size else 112))
            if args.weights is not None:
                passes.append(Pass("full", detector=args.detector, weights=args.weights, every=args.detect_every))
        decode = Pass("decode only (decord)")
        annotators = {}
        for p in passes:
            config = AnnotateConfig(detector=DetectorConfig(name=p.detector, device=device), sampling=sampling,
                                    batch_size=args.batch_size, device=device, decode_threads=plan.decode,
                                    parallel_stages=plan.cores > 1, sparse=SparseConfig(every=p.every))
            stage = None
            if p.weights is not None:
                from fer_annotate.models.model import ModelStage
                from fer_annotate.models.weights import resolve_bundle

                stage = ModelStage(resolve_bundle(p.weights), device, args.smooth, threads=plan.cores)
                if p.label == "full":
                    p.label = f"full ({stage.bundle.name})"
            annotators[p.label] = Annotator(config, stage)
            warm_up(annotators[p.label], args.video, args.batch_size, device)
        for _ in range(args.repeat):
            decode.frames, seconds = decode_only(args.video, sampling, args.batch_size, plan.decode)
            decode.seconds.append(seconds)
            decode.rss = peak_rss_mib()
            for p in passes:
                reset_cuda(device)
                p.frames, seconds, p.stages = pipeline_pass(annotators[p.label], args.video, folder, "out")
                p.seconds.append(seconds)
                p.rss, p.cuda = peak_rss_mib(), peak_cuda_mib(device)
    passes = [decode, *passes]

    print(f"video {args.video.name}{'' if args.end is None else f' (first {args.end:g} s)'}, device {device}, "
          f"torch threads {torch.get_num_threads()} + {plan.decode} decoder thread, batch {args.batch_size}, "
          f"median of {args.repeat} interleaved runs (min-max)")
    print(f"machine: {machine()}; load average at start {load_start}")
    if args.readme:
        print("\n| pass | frames/s | peak RSS |\n|---|---|---|")
        for p in passes:
            fps = [p.frames / s for s in p.seconds]
            print(f"| {p.label} | {statistics.median(fps):,.0f} ({min(fps):,.0f}-{max(fps):,.0f}) | "
                  f"{p.rss / 1024:.1f} GiB |")
    else:
        header = (f"{'pass':<36} {'frames':>7} {'seconds':>8} {'frames/s':>20} {'peak RSS MiB':>13} "
                  f"{'peak CUDA MiB':>14}")
        print(header)
        print("-" * len(header))
        for p in passes:
            fps = [p.frames / s for s in p.seconds]
            cuda = "-" if p.cuda is None else f"{p.cuda:.0f}"
            print(f"{p.label:<36} {p.frames:>7} {statistics.median(p.seconds):>8.2f} "
                  f"{statistics.median(fps):>8.1f} ({min(fps):.0f}-{max(fps):.0f}) {p.rss:>13.0f} {cuda:>14}")
    for p in passes[1:]:
        total = sum(p.stages.values()) or 1.0
        shares = ", ".join(f"{k} {100 * v / total:.0f} %" for k, v in p.stages.items() if v > 0)
        print(f"stage share, {p.label}: {shares}")
    if args.json is not None:
        args.json.write_text(json.dumps({"video": str(args.video), "device": device, "machine": machine(),
                                         "passes": [asdict(p) for p in passes]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
