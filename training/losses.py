"""Losses of the paper: per-task ground truth (teacher) and distillation + ground truth (student).

Ground truth: AU = BCE with logits (missing AUs masked); EXPR = cross-entropy against a class
distribution (one-hot labels, or the raters' votes: Barsoum et al.'s probabilistic labels); VA per
dimension = cross-entropy over 20 bins + (1 - CCC) of the softmax expectation. Distillation: AU = BCE
against the teacher's probabilities; EXPR and the V, A bins = KL(teacher || student) of softmax(logits / T).
Task weights (paper): AU 8, EXPR 1, V 1, A 1.

The geometry heads learn a geometry teacher's regression targets (MediaPipe's blendshape scores and head
pose): BS = BCE against scores in [0, 1]; POSE = smooth L1 on the angles in units of 10 degrees.
"""

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from fer_annotate.models.networks import POSE_SCALE, va_bin_centres, va_to_bins

POSE_UNIT = 10.0  # degrees per unit of the pose loss


@dataclass
class LossSpec:
    """Task weights, distillation temperature and the student's distillation / ground-truth mix."""

    weights: dict[str, float] = field(
        default_factory=lambda: {"AU": 8.0, "EXPR": 1.0, "V": 1.0, "A": 1.0, "BS": 4.0, "POSE": 1.0}
    )
    temperature: float = 1.5
    distill: float = 0.4
    truth: float = 0.6
    va_bins: int = 20


def ccc(x: Tensor, y: Tensor) -> Tensor:
    """Concordance correlation coefficient 2 cov / (var_x + var_y + (mean_x - mean_y)^2), population stats."""
    x, y = x.float(), y.float()
    mx, my = x.mean(), y.mean()
    vx, vy = ((x - mx) ** 2).mean(), ((y - my) ** 2).mean()
    cov = ((x - mx) * (y - my)).mean()
    return 2 * cov / (vx + vy + (mx - my) ** 2 + 1e-8)


def au_loss(logits: Tensor, target: Tensor) -> Tensor:
    """BCE with logits over the labelled AUs (NaN targets are missing and masked out)."""
    mask = ~torch.isnan(target)
    if not mask.any():
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits.float()[mask], target[mask])


def expr_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy against class indices [N] or class distributions [N, K] (votes)."""
    return F.cross_entropy(logits.float(), target)


def pose_loss(logits: Tensor, target_degrees: Tensor) -> Tensor:
    """Smooth L1 between predicted and target (yaw, pitch, roll), in units of POSE_UNIT degrees."""
    return F.smooth_l1_loss(logits.float() * (POSE_SCALE / POSE_UNIT), target_degrees.float() / POSE_UNIT)


def va_loss(logits: Tensor, target: Tensor, bins: int = 20) -> tuple[Tensor, Tensor]:
    """(valence, arousal) losses: CE over the bins + (1 - CCC) of the expectation, over the batch."""
    logits = logits.float().unflatten(-1, (2, bins))
    values = (F.softmax(logits, -1) * va_bin_centres(bins, logits.device)).sum(-1)
    target_bins = va_to_bins(target, bins)
    out = []
    for d in range(2):
        ce = F.cross_entropy(logits[:, d], target_bins[:, d])
        out.append(ce + (1.0 - ccc(values[:, d], target[:, d])))
    return out[0], out[1]


def truth_loss(task: str, logits: Tensor, target: Tensor, spec: LossSpec) -> Tensor:
    """Weighted ground-truth loss of one task's head."""
    if task == "AU":
        return spec.weights["AU"] * au_loss(logits, target)
    if task == "EXPR":
        return spec.weights["EXPR"] * expr_loss(logits, target)
    if task == "BS":
        return spec.weights["BS"] * F.binary_cross_entropy_with_logits(logits.float(), target.float())
    if task == "POSE":
        return spec.weights["POSE"] * pose_loss(logits, target)
    v, a = va_loss(logits, target, spec.va_bins)
    return spec.weights["V"] * v + spec.weights["A"] * a


def soft_targets(task: str, logits: Tensor, spec: LossSpec) -> Tensor:
    """A teacher's soft labels: AU and BS sigmoid probabilities; EXPR softmax(t/T) [N, 7]; VA [N, 2, bins];
    POSE the angles in degrees."""
    logits = logits.float()
    if task == "POSE":
        return logits * POSE_SCALE
    if task in ("AU", "BS"):
        return torch.sigmoid(logits)
    if task == "EXPR":
        return F.softmax(logits / spec.temperature, -1)
    return F.softmax(logits.unflatten(-1, (2, spec.va_bins)) / spec.temperature, -1)


def _kl(student_logits: Tensor, target_probs: Tensor, temperature: float) -> Tensor:
    """KL(target || softmax(student / T)) summed over classes, mean over the batch."""
    log_q = F.log_softmax(student_logits / temperature, -1)
    return F.kl_div(log_q, target_probs, reduction="sum") / student_logits.shape[0]


def distill_loss(task: str, logits: Tensor, target: Tensor, spec: LossSpec) -> Tensor:
    """Weighted distillation loss of one head against the teacher's soft labels (see soft_targets)."""
    logits = logits.float()
    if task in ("AU", "BS"):
        return spec.weights[task] * F.binary_cross_entropy_with_logits(logits, target)
    if task == "EXPR":
        return spec.weights["EXPR"] * _kl(logits, target, spec.temperature)
    if task == "POSE":
        return spec.weights["POSE"] * pose_loss(logits, target)
    bins = logits.unflatten(-1, (2, spec.va_bins))
    v = _kl(bins[:, 0], target[:, 0], spec.temperature)
    a = _kl(bins[:, 1], target[:, 1], spec.temperature)
    return spec.weights["V"] * v + spec.weights["A"] * a


Labels = dict[str, tuple[Tensor, Tensor]]  # task -> (rows of the batch labelled for it, their targets)


def teacher_loss(logits: dict[str, Tensor], labels: Labels, spec: LossSpec) -> Tensor:
    """A batch's teacher loss: the ground truth of every task its rows are labelled for, on those rows.

    With the paper's single-task datasets a batch carries one task, so this is that task's loss only.
    """
    total = next(iter(logits.values())).new_zeros(()).float()
    for task, (rows, target) in labels.items():
        total = total + truth_loss(task, logits[task][rows], target, spec)
    return total


def student_loss(logits: dict[str, Tensor], soft: dict[str, Tensor], labels: Labels, spec: LossSpec) -> Tensor:
    """A batch's student loss: distillation on every head over all rows; on a head the batch has labels
    for, `distill * distillation + truth * ground truth` on its labelled rows (0.4 / 0.6, the paper's mix).
    A head the teacher lacks (e.g. blendshapes added when adapting a bundle) learns from its labels only."""
    total = next(iter(logits.values())).new_zeros(()).float()
    for head, out in logits.items():
        if head not in soft:
            if head in labels:
                rows, target = labels[head]
                total = total + truth_loss(head, out[rows], target, spec)
            continue
        d = distill_loss(head, out, soft[head], spec)
        if head in labels:
            rows, target = labels[head]
            d = spec.distill * d + spec.truth * truth_loss(head, out[rows], target, spec)
        total = total + d
    return total
