"""Wall time of a folder of videos on 1 vs N workers, local processes vs Ray actors, and Ray's per-video
scheduling overhead.

The folder holds 8 videos (links to the fixture videos, each twice, cut to the same window with --end).
Every pass includes starting its workers and loading their models, as a user's run does; a Ray pass
uses an instance started once beforehand (a running cluster), its actors are started per pass. Passes
are interleaved and repeated; the median is reported.

The scheduling overhead is the round trip of `run` calls on one Ray actor whose models are loaded, for
videos whose complete output exists (so the call does no annotation): what Ray adds to each video.

    python benchmarks/scale_benchmark.py                      # 8 videos, first 2 s each, 1 vs 2 workers
    python benchmarks/scale_benchmark.py --end 4 --repeats 3 --workers 2
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from fer_annotate.media.video import Sampling
from fer_annotate.models.weights import resolve_bundle
from fer_annotate.run.jobs import plan_jobs
from fer_annotate.run.pipeline import AnnotateConfig
from fer_annotate.run.workers import AnnotatorWorker, WorkerSpec, build_annotator, run_local, run_ray, run_serial

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "videos"


def make_folder(root: Path, count: int) -> Path:
    """`count` links to the fixture videos (round robin), each under its own name."""
    videos = sorted(FIXTURES.iterdir())
    folder = root / "videos"
    folder.mkdir()
    for i in range(count):
        source = videos[i % len(videos)]
        (folder / f"v{i:02d}_{source.name}").symlink_to(source)
    return folder


def one_pass(kind: str, workers: int, spec: WorkerSpec, folder: Path, out: Path) -> tuple[float, int]:
    """Wall seconds to annotate the folder (workers started and models loaded inside the timing), frames."""
    jobs = plan_jobs([folder], out, "csv")
    cores = len(os.sched_getaffinity(0))
    tic = time.perf_counter()
    if kind == "local" and workers == 1:
        torch.set_num_threads(cores)
        report = run_serial(build_annotator(spec, "cpu"), jobs, overwrite=True)
    elif kind == "local":
        report = run_local(replace(spec, threads=max(1, cores // workers)), jobs, workers,
                           overwrite=True)
    else:
        report = run_ray(replace(spec, threads=max(1, cores // workers)), jobs, "auto", workers, overwrite=True)
    seconds = time.perf_counter() - tic
    if report.failed or len(report.done) != len(jobs):
        sys.exit(f"{kind} x{workers}: {len(report.done)} of {len(jobs)} done; failed: {report.failed}")
    return seconds, sum(s.frames_sampled for s in report.done)


def ray_overhead(ray, spec: WorkerSpec, folder: Path, out: Path, calls: int) -> float:
    """Median seconds per `run` round trip on a loaded actor, for videos already complete (no annotation)."""
    jobs = plan_jobs([folder], out, "csv")
    actor = ray.remote(AnnotatorWorker).options(num_cpus=1).remote(spec, "cpu")
    ray.get(actor.ready.remote())
    times = []
    for i in range(calls):
        job = jobs[i % len(jobs)]
        tic = time.perf_counter()
        outcome = ray.get(actor.run.remote(job, False, None))
        times.append(time.perf_counter() - tic)
        assert outcome.status == "skipped", outcome
    ray.kill(actor)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--end", type=float, default=2.0, help="annotate the first END seconds of each video")
    parser.add_argument("--workers", type=int, default=2, help="compared with 1 worker")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repeats; the median is reported")
    parser.add_argument("--calls", type=int, default=50, help="round trips for the Ray overhead")
    parser.add_argument("--no-ray", action="store_true", help="local processes only")
    args = parser.parse_args()
    os.environ.setdefault("TORCH_HOME", str(FIXTURES.parents[1] / "torch-home"))
    config = AnnotateConfig(sampling=Sampling(end_s=args.end), device="cpu")
    spec = WorkerSpec(config, resolve_bundle(None), None, "gauss", "")
    kinds = ["local"] if args.no_ray else ["local", "ray"]
    ray = None
    if not args.no_ray:
        import ray

        ray.init(num_cpus=len(os.sched_getaffinity(0)), log_to_driver=False, include_dashboard=False)
    print(f"load average before: {open('/proc/loadavg').read().split()[:3]}; cores {len(os.sched_getaffinity(0))}; "
          f"bundle {spec.bundle.name}; {args.videos} videos, first {args.end} s each")
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_folder(Path(tmp), args.videos)
        times: dict[tuple[str, int], list[float]] = {}
        for r in range(args.repeats):
            for kind in kinds:
                for n in (1, args.workers):
                    seconds, frames = one_pass(kind, n, spec, folder, Path(tmp) / f"{kind}{n}")
                    times.setdefault((kind, n), []).append(seconds)
                    print(f"  repeat {r + 1}: {kind} x{n}: {seconds:.1f} s", flush=True)
        print(f"load average after: {open('/proc/loadavg').read().split()[:3]}")
        print(f"\n| backend | workers | wall s (median of {args.repeats}) | vs 1 worker |")
        print("|---|---|---|---|")
        for kind in kinds:
            base = statistics.median(times[(kind, 1)])
            for n in (1, args.workers):
                wall = statistics.median(times[(kind, n)])
                print(f"| {kind} | {n} | {wall:.1f} | {wall / base:.2f} |")
        one = statistics.median(times[("local", 1)])
        print(f"\nsingle local worker, whole run: {frames / one:.1f} frames/s ({frames} frames in {one:.1f} s)")
        if ray is not None:
            per_call = ray_overhead(ray, spec, folder, Path(tmp) / "local1", args.calls)
            extra = (statistics.median(times[("ray", args.workers)])
                     - statistics.median(times[("local", args.workers)])) / args.videos
            print(f"Ray scheduling overhead per video: {per_call * 1000:.1f} ms (median round trip of {args.calls} "
                  f"calls on a loaded actor); whole-run difference Ray - local at {args.workers} workers: "
                  f"{extra:+.2f} s per video (actor start and model load included)")
            ray.shutdown()


if __name__ == "__main__":
    main()
