"""Reduced precision for the ensemble on CPU: speed and max |delta| of probabilities against float32.

    python benchmarks/precision_benchmark.py [--bundle PATH ...] [--random-bundle caffe_resnet50:5:112]
                                             [--threads 1] [--repeat 5]

Face crops come from the fixture videos (BlazeFace + alignment, as the pipeline makes them). Per bundle
and variant: median milliseconds per crop over --repeat runs of the whole crop set (process CPU time,
robust to other load), and the largest absolute difference of any probability (expression softmax, AU
sigmoid) and of valence/arousal from the float32 ensemble as the package runs it (BatchNorm folded,
channels-last). Variants: bfloat16 autocast (fast only where the CPU has avx512_bf16 or AMX), int8
dynamic quantisation of the Linear layers, int8 static quantisation (FX graph mode, x86 backend,
calibrated on the same crops) where torch still provides it.
"""

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fer_annotate.faces.align import face_transforms, warp_crops  # noqa: E402
from fer_annotate.faces.detect import DetectorConfig, FaceDetector  # noqa: E402
from fer_annotate.media.video import Video  # noqa: E402
from fer_annotate.models.bundle import load_bundle  # noqa: E402
from fer_annotate.models.ensemble import Ensemble  # noqa: E402
from fer_annotate.models.model import crop_template  # noqa: E402

SHARED = ROOT.parent / "shared"
VIDEOS = ["pyfeat_WolfgangLanger_Pexels.mp4", "pyfeat_single_face.mp4", "pyfeat_face_noface.mov"]


def fixture_crops(bundle, per_video: int = 32) -> torch.Tensor:
    """Aligned uint8 crops [N, 3, S, S] of the faces in the first frames of the fixture videos."""
    detector = FaceDetector(DetectorConfig())
    template = crop_template(bundle.input)
    crops = []
    for name in VIDEOS:
        video = Video(SHARED / "fixtures" / "videos" / name)
        step = max(1, video.info.n_frames // per_video)
        batch = next(video.batches(np.arange(0, video.info.n_frames, step)[:per_video], per_video))
        frames = torch.from_numpy(batch.frames)
        found = detector(frames)
        counts = [len(d) for d in found]
        if not sum(counts):
            continue
        boxes = np.concatenate([d.boxes for d in found])
        keypoints = np.concatenate([d.keypoints for d in found if len(d)])
        transforms = face_transforms(boxes, keypoints, template)
        crops.append(warp_crops(frames, np.repeat(np.arange(len(found)), counts), transforms, template.size))
    return torch.cat(crops)


def outputs(ensemble: Ensemble, crops: torch.Tensor) -> np.ndarray:
    """All probabilities and VA values of the ensemble, flattened per crop."""
    out = ensemble(crops)
    parts = [getattr(out, n) for n in ("expr_prob", "au_prob", "valence", "arousal") if getattr(out, n) is not None]
    return np.concatenate([p.reshape(len(crops), -1) for p in parts], axis=1)


def timed(ensemble: Ensemble, crops: torch.Tensor, repeat: int) -> tuple[float, np.ndarray]:
    """Median CPU milliseconds per crop, and the outputs."""
    out = outputs(ensemble, crops)  # warm-up
    times = []
    for _ in range(repeat):
        tic = time.process_time()
        outputs(ensemble, crops)
        times.append(time.process_time() - tic)
    return 1000 * statistics.median(times) / len(crops), out


def bf16(ensemble: Ensemble) -> Ensemble:
    """The same members, run under CPU bfloat16 autocast."""
    wrapped = copy.copy(ensemble)

    class Autocast(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward_hidden(self, x):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits, hidden = self.net.forward_hidden(x)
            return {k: v.float() for k, v in logits.items()}, {k: v.float() for k, v in hidden.items()}

    wrapped.cnns = [Autocast(n) for n in ensemble.cnns]
    return wrapped


def int8_dynamic(ensemble: Ensemble) -> Ensemble:
    """Linear layers quantised to int8 with dynamic activation scales."""
    from torch.ao.quantization import quantize_dynamic

    wrapped = copy.copy(ensemble)
    wrapped.cnns = [quantize_dynamic(copy.deepcopy(n), {torch.nn.Linear}, dtype=torch.qint8) for n in ensemble.cnns]
    return wrapped


def int8_static(ensemble: Ensemble, crops: torch.Tensor) -> Ensemble:
    """Backbones quantised to int8 (FX graph mode, x86), calibrated on the crops; heads stay float."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    x = ensemble.preprocess(crops)
    wrapped = copy.copy(ensemble)
    wrapped.cnns = []
    for net in ensemble.cnns:
        net = copy.deepcopy(net)
        qconfig = get_default_qconfig_mapping("x86")
        prepared = prepare_fx(net.backbone.model, qconfig, example_inputs=(x[:2],))
        with torch.inference_mode():
            prepared(x)
        net.backbone.model = convert_fx(prepared)
        wrapped.cnns.append(net)
    return wrapped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, nargs="*", default=[ROOT / "weights" / "ferplus"])
    parser.add_argument("--random-bundle", default="caffe_resnet50:5:112", metavar="BACKBONE:MEMBERS:SIZE",
                        help="also a random-weight bundle of this shape ('' for none)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("TORCH_HOME", str(SHARED / "torch-home"))
    torch.set_num_threads(args.threads)
    bundles = [load_bundle(p) for p in args.bundle]
    if args.random_bundle:
        from bundle_factory import make_random_bundle

        backbone, members, size = args.random_bundle.split(":")
        path = make_random_bundle(Path(tempfile.mkdtemp()) / "random", backbone=backbone, members=int(members),
                                  input_size=int(size))
        bundles.append(load_bundle(path))
    cpuinfo = Path("/proc/cpuinfo").read_text()
    flags = " ".join(f for f in ("avx512_bf16", "amx_bf16", "avx512_vnni") if f in cpuinfo)
    print(f"torch {torch.__version__}, {args.threads} thread(s), load average "
          f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}; CPU flags: {flags or 'none of interest'}")
    header = f"{'bundle':<34} {'variant':<16} {'ms/crop':>8} {'x fp32':>7} {'max |delta|':>12}"
    print(header)
    print("-" * len(header))
    for bundle in bundles:
        crops = fixture_crops(bundle)
        fp32 = Ensemble(bundle, "cpu")
        base_ms, base = timed(fp32, crops, args.repeat)
        label = f"{bundle.name} ({len(crops)} crops)"
        print(f"{label:<34} {'float32':<16} {base_ms:>8.2f} {1.0:>7.2f} {0.0:>12.5f}", flush=True)
        variants = [("bf16 autocast", lambda e: bf16(e)), ("int8 dynamic", int8_dynamic),
                    ("int8 static", lambda e, c=crops: int8_static(e, c))]
        for name, make in variants:
            try:
                ms, out = timed(make(fp32), crops, args.repeat)
            except Exception as exc:  # a variant this torch or this network cannot do
                print(f"{label:<34} {name:<16} unavailable: {type(exc).__name__}: {str(exc)[:80]}")
                continue
            print(f"{label:<34} {name:<16} {ms:>8.2f} {base_ms / ms:>7.2f} {np.abs(out - base).max():>12.5f}",
                  flush=True)


if __name__ == "__main__":
    main()
