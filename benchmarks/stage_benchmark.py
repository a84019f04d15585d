"""Before/after CPU cost of the detector's preprocessing and of the members' load-time rewrites.

    python benchmarks/stage_benchmark.py [--repeat 7] [--threads 1]

Each pair runs interleaved (before, after, before, after, ...) in this process, timed in process CPU
time so that other load on the machine disturbs it little; medians are printed with after/before.
Pairs: BlazeFace on a batch of 16 fixture frames with the letterbox in float (the old order), in uint8,
and in uint8 with a channels-last network (now); each shipped/paper-shape bundle's members on a batch of 16
crops plain float32, with BatchNorm folded, with channels-last, with both, and traced and fused for oneDNN
on top (what every CPU run uses, decided at load).
"""

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fer_annotate.faces.detect import DetectorConfig, FaceDetector, _letterbox  # noqa: E402
from fer_annotate.media.video import Video  # noqa: E402
from fer_annotate.models.bundle import load_bundle, load_members  # noqa: E402
from fer_annotate.models.fuse import fold_batchnorm, fuse_for_cpu  # noqa: E402

SHARED = ROOT.parent / "shared"
VIDEO = SHARED / "fixtures" / "videos" / "pyfeat_WolfgangLanger_Pexels.mp4"


def cpu_ms(fn: Callable[[], object]) -> float:
    tic = time.process_time()
    fn()
    return 1000 * (time.process_time() - tic)


def interleaved(cases: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median CPU milliseconds of each case, the cases run round-robin after one warm-up call each."""
    for fn in cases.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeat):
        for k, fn in cases.items():
            times[k].append(cpu_ms(fn))
    return {k: statistics.median(v) for k, v in times.items()}


def detector_cases() -> dict[str, Callable[[], object]]:
    detector = FaceDetector(DetectorConfig())
    size = detector.impl.size
    net = copy.deepcopy(detector.impl.net).to(memory_format=torch.contiguous_format)
    net_cl = detector.impl.net.to(memory_format=torch.channels_last)
    frames = torch.from_numpy(next(Video(VIDEO).batches(np.arange(16), 16)).frames).permute(0, 3, 1, 2)

    def float_first() -> object:  # the order before: the whole frame to float, then resample
        small, _ = _letterbox(frames.float(), size)
        return net.predict_on_batch(small.clamp(0, 255))

    def uint8_first() -> object:
        small, _ = _letterbox(frames, size)
        return net.predict_on_batch(small.float().contiguous())

    def channels_last() -> object:
        small, _ = _letterbox(frames, size)
        return net_cl.predict_on_batch(small.float().contiguous(memory_format=torch.channels_last))

    return {"BlazeFace, 16 frames: float then letterbox (before)": float_first,
            "BlazeFace, 16 frames: letterbox uint8 then float": uint8_first,
            "BlazeFace, 16 frames: and channels-last network (after)": channels_last}


def member_cases(bundle_path: Path, name: str) -> dict[str, Callable[[], object]]:
    bundle = load_bundle(bundle_path)
    plain = load_members(bundle)
    size, channels = bundle.input.size, bundle.network.in_channels
    x = torch.randn(16, channels, size, size)
    folded = [copy.deepcopy(m) for m in plain]
    for m in folded:
        fold_batchnorm(m)
    variants = {
        "plain float32 (before)": (plain, False),
        "BatchNorm folded": (folded, False),
        "channels-last": ([copy.deepcopy(m).to(memory_format=torch.channels_last) for m in plain], True),
        "folded + channels-last": ([copy.deepcopy(m).to(memory_format=torch.channels_last) for m in folded], True),
    }
    example = x.contiguous(memory_format=torch.channels_last)
    variants["and fused for oneDNN (after: every CPU run)"] = (
        [fuse_for_cpu(m, example) for m in variants["folded + channels-last"][0]], True)

    def run(nets: list, cl: bool) -> Callable[[], object]:
        inp = x.contiguous(memory_format=torch.channels_last) if cl else x

        def go() -> object:
            with torch.inference_mode():
                return [n.forward_hidden(inp) for n in nets]
        return go

    return {f"{name}, 16 crops: {label}": run(nets, cl) for label, (nets, cl) in variants.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("TORCH_HOME", str(SHARED / "torch-home"))
    torch.set_num_threads(args.threads)
    from bundle_factory import make_random_bundle

    paper = make_random_bundle(Path(tempfile.mkdtemp()) / "paper", backbone="caffe_resnet50", members=5,
                               input_size=112)
    print(f"{args.threads} torch thread(s), median CPU ms of {args.repeat} interleaved runs; load average "
          f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    groups = [detector_cases(), member_cases(ROOT / "weights" / "ferplus", "ferplus"),
              member_cases(paper, "5x Caffe ResNet-50 112 px")]
    for cases in groups:
        result = interleaved(cases, args.repeat)
        first = next(iter(result.values()))
        for label, ms in result.items():
            print(f"{label:<75} {ms:>9.1f} ms  {ms / first:>5.2f}x", flush=True)
    print(f"load average at end {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


if __name__ == "__main__":
    main()
