"""Predictions of one network or an ensemble on a dataset, and their ABAW metrics per task."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fer_annotate.models.ensemble import EnsembleOutput, combine
from training.augment import Normalise, prepare
from training.data import Dataset, LabelTable
from training.metrics import au_metrics, expr_metrics, regression_metrics, selection_score, va_metrics

POSE_NAMES = ["yaw", "pitch", "roll"]


@dataclass
class Predictions:
    """Per-image outputs: the ensemble mean and each member's (same fields, EnsembleOutput)."""

    ensemble: EnsembleOutput
    members: list[EnsembleOutput]


@torch.inference_mode()
def predict(
    nets: list[nn.Module],
    dataset: Dataset,
    norm: Normalise,
    device: torch.device,
    batch: int = 256,
    amp: bool = False,
) -> Predictions:
    """Run every network (eval mode) over the dataset's images (no augmentation)."""
    modes = [net.training for net in nets]
    for net in nets:
        net.eval()
    channels_last = device.type == "cpu" or amp
    ens, members = [], [[] for _ in nets]
    for start in range(0, len(dataset), batch):
        images = torch.from_numpy(np.array(dataset.images[start : start + batch])).to(device)
        x, _ = prepare(images, norm, channels_last=channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            logits = [net(x) for net in nets]
        ens.append(combine(logits))
        for k, out in enumerate(logits):
            members[k].append(combine([out]))
    for net, mode in zip(nets, modes, strict=True):
        net.train(mode)
    return Predictions(EnsembleOutput.concat(ens), [EnsembleOutput.concat(m) for m in members])


def score(out: EnsembleOutput, labels: LabelTable, thresholds=0.5, edition: str = "2020") -> dict:
    """ABAW metrics per task (tasks that are both predicted and labelled) and their selection sum."""
    metrics = {}
    if out.expr_prob is not None and labels.has("EXPR").any():
        m = labels.has("EXPR")
        metrics["EXPR"] = expr_metrics(out.expr_prob[m], labels.expr[m], edition)
    if out.au_prob is not None and labels.has("AU").any():
        m = labels.has("AU")
        metrics["AU"] = au_metrics(out.au_prob[m], labels.au[m], thresholds, edition)
    if out.valence is not None and labels.has("VA").any():
        m = labels.has("VA")
        va = np.stack([out.valence[m], out.arousal[m]], 1)
        metrics["VA"] = va_metrics(va, labels.va[m])
    if out.bs_prob is not None and labels.has("BS").any():
        m = labels.has("BS")
        metrics["BS"] = regression_metrics(out.bs_prob[m], labels.bs[m], labels.bs_names)
    if out.pose is not None and labels.has("POSE").any():
        m = labels.has("POSE")
        metrics["POSE"] = regression_metrics(out.pose[m], labels.pose[m], POSE_NAMES)
    return {"tasks": metrics, "score": selection_score(metrics)}


def summary_line(metrics: dict) -> str:
    """One-line rendering of score()'s result, e.g. 'EXPR 0.612 (F1 0.55 acc 0.71)  VA 0.80 ...'."""
    parts = []
    for task, m in metrics["tasks"].items():
        if task == "VA":
            parts.append(f"VA ccc_v {m['ccc_v']:.3f} ccc_a {m['ccc_a']:.3f}")
        elif task == "BS":
            parts.append(f"BS ccc {m['score']:.3f} (top {len(m['active'])}, mae {m['mae']:.3f})")
        elif task == "POSE":
            parts.append(f"POSE ccc {m['score']:.3f} (mae {m['mae']:.1f} deg)")
        else:
            parts.append(f"{task} {m['score']:.3f} (F1 {m['f1']:.3f} acc {m['acc']:.3f})")
    return "  ".join(parts) + f"  | sum {metrics['score']:.3f}"


AVERAGES = ("probs", "logits")
TTAS = ("none", "flip")


def average_logits(logits: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The mean of several outputs' logits per task (ensembling before the softmax / sigmoid)."""
    return {t: torch.stack([m[t].float() for m in logits]).mean(0) for t in logits[0]}


def evaluate_bundle(
    bundle_path: str | list[str], table: LabelTable, device: str = "cpu", edition: str = "2020", threads: int = 2,
    cache: str | None = None, batch: int = 64, tta: str | None = None, average: str = "probs",
) -> dict:
    """ABAW metrics of a bundle's ensemble (at its AU thresholds) and of each member (at 0.5) on
    labelled images, run through fer_annotate's own Ensemble (the inference path of fer-annotate). Each
    member runs once per batch; small batches (64) keep the activations in cache on a CPU.

    Several bundles (same input and tasks) are scored as one ensemble of all their members, e.g. a teacher
    with students. tta "flip" also runs every member on the mirrored crops (twice the model time) and
    averages both, as fer-annotate does for a bundle whose manifest asks for it (None: the first bundle's
    own tta); average "logits" averages logits before the softmax instead of probabilities after."""
    from fer_annotate.models.bundle import load_bundle
    from fer_annotate.models.ensemble import Ensemble
    from fer_annotate.models.tta import flipped_logits, mirror_permutation
    from training.data import align_au, load_images

    paths = [bundle_path] if isinstance(bundle_path, str | Path) else list(bundle_path)
    bundles = [load_bundle(p) for p in paths]
    bundle = bundles[0]
    tta = bundle.tta if tta is None else tta
    if tta not in TTAS or average not in AVERAGES:
        raise ValueError(f"tta must be one of {TTAS} and average one of {AVERAGES}")
    for other in bundles[1:]:
        if (other.input, other.tasks, other.va_bins) != (bundle.input, bundle.tasks, bundle.va_bins):
            raise ValueError(f"bundle {other.name} differs from {bundle.name} in input, tasks or VA bins: "
                             "only bundles that see the same crops can be scored together")
    table = align_au(table, bundle.au_names)
    if "EXPR" in bundle.tasks and list(table.expr_names[: len(bundle.expr_names)]) != bundle.expr_names:
        raise ValueError(f"bundle expression classes {bundle.expr_names} differ from the data's {table.expr_names}")
    images = load_images(table.paths, bundle.input.size, "rgb", cache, threads)
    ensembles = [Ensemble(b, device) for b in bundles]
    nets = [net for ens in ensembles for net in ens.cnns]
    mirror = mirror_permutation(bundle.bs_names)
    outs, members = [], [[] for _ in nets]
    with torch.inference_mode():
        for start in range(0, len(table), batch):
            crops = torch.from_numpy(np.array(images[start : start + batch])).permute(0, 3, 1, 2).contiguous()
            x = ensembles[0].preprocess(crops)
            views = [[net.forward_hidden(x)[0]] + ([flipped_logits(net, x, mirror)] if tta == "flip" else [])
                     for net in nets]
            if average == "logits":
                views = [[average_logits(v)] for v in views]
                outs.append(combine([average_logits([v[0] for v in views])], bundle.va_bins))
            else:
                outs.append(combine([o for v in views for o in v], bundle.va_bins))
            for k, member in enumerate(views):
                members[k].append(combine(member, bundle.va_bins))
    name = " + ".join(b.name for b in bundles) + ("" if tta == "none" else f", tta {tta}")
    result = {
        "bundle": name + ("" if average == "probs" else ", logit average"),
        "images": len(table),
        "counts": table.counts(),
        "ensemble": score(EnsembleOutput.concat(outs), table, bundle.au_thresholds or 0.5, edition),
        "members": [score(EnsembleOutput.concat(m), table, 0.5, edition) for m in members],
    }
    return result
