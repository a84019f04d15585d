"""fer-train losses against hand-computed values: CCC, BCE with missing AUs, VA bins + CCC, distillation."""

import math

import pytest
import torch

from training.losses import (
    LossSpec,
    au_loss,
    ccc,
    distill_loss,
    pose_loss,
    soft_targets,
    student_loss,
    teacher_loss,
    va_loss,
)


def test_ccc_hand_computed():
    x = torch.tensor([1.0, 2.0, 3.0])
    y = torch.tensor([2.0, 2.0, 5.0])
    # means 2, 3; population vars 2/3, 2; cov 1; CCC = 2 / (2/3 + 2 + 1) = 6 / 11
    assert ccc(x, y).item() == pytest.approx(6 / 11, abs=1e-6)
    assert ccc(x, x).item() == pytest.approx(1.0, abs=1e-6)
    assert ccc(x - 2, 2 - x).item() == pytest.approx(-1.0, abs=1e-6)
    # a shifted copy: cov 2/3, vars 2/3, mean gap 1 -> (4/3) / (4/3 + 1)
    assert ccc(x, x + 1).item() == pytest.approx(4 / 7, abs=1e-6)


def test_au_loss_masks_missing():
    logits = torch.tensor([[0.0, 2.0], [1.0, -1.0]])
    target = torch.tensor([[1.0, float("nan")], [0.0, 1.0]])
    # labelled: (0 -> 1), (1 -> 0), (-1 -> 1): -log s(0), -log(1 - s(1)), -log s(-1)
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    expected = (-math.log(sig(0.0)) - math.log(1 - sig(1.0)) - math.log(sig(-1.0))) / 3
    assert au_loss(logits, target).item() == pytest.approx(expected, abs=1e-6)
    all_missing = torch.full((2, 2), float("nan"))
    assert au_loss(logits, all_missing).item() == 0.0


def test_va_loss_bins_and_ccc():
    bins = 4
    # uniform logits: expectation 0 for every row -> CCC 0 (no variance) -> 1 - CCC = 1; CE = log 4
    logits = torch.zeros(3, 2 * bins)
    target = torch.tensor([[-0.9, 0.1], [0.2, 0.6], [0.99, -0.4]])
    v, a = va_loss(logits, target, bins)
    assert v.item() == pytest.approx(math.log(4) + 1.0, abs=1e-5)
    assert a.item() == pytest.approx(math.log(4) + 1.0, abs=1e-5)


def test_va_loss_confident_correct_bins():
    bins = 4  # centres -1, -1/3, 1/3, 1; edges -1, -0.5, 0, 0.5, 1
    target = torch.tensor([[-1.0, 1.0], [1.0, -1.0]])
    logits = torch.full((2, 2 * bins), -30.0)
    logits[0, 0] = logits[0, bins + 3] = 30.0  # v bin 0, a bin 3
    logits[1, 3] = logits[1, bins + 0] = 30.0
    v, a = va_loss(logits, target, bins)
    assert v.item() == pytest.approx(0.0, abs=1e-4)  # CE ~0 and CCC = 1
    assert a.item() == pytest.approx(0.0, abs=1e-4)


def test_distillation_kl_with_temperature():
    spec = LossSpec(temperature=1.5)
    teacher = torch.tensor([[1.0, 0.0, -1.0]])
    student = torch.tensor([[0.0, 0.5, 0.0]])
    p = torch.softmax(teacher / 1.5, -1)
    q = torch.softmax(student / 1.5, -1)
    expected = float((p * (p / q).log()).sum())
    soft = soft_targets("EXPR", teacher, spec)
    assert distill_loss("EXPR", student, soft, spec).item() == pytest.approx(expected, abs=1e-6)
    assert distill_loss("EXPR", teacher, soft, spec).item() == pytest.approx(0.0, abs=1e-6)


def test_distillation_au_is_bce_against_teacher_probabilities():
    spec = LossSpec()
    teacher, student = torch.tensor([[0.0]]), torch.tensor([[0.0]])
    soft = soft_targets("AU", teacher, spec)
    assert distill_loss("AU", student, soft, spec).item() == pytest.approx(8 * math.log(2), abs=1e-6)


def test_student_mix_own_task_04_06():
    spec = LossSpec()
    logits = {"EXPR": torch.tensor([[0.3, -0.2, 0.1, 0.0, 0.0, 0.4, -0.1]]), "AU": torch.tensor([[0.5, -0.5]])}
    teacher = {"EXPR": torch.zeros(1, 7), "AU": torch.tensor([[1.0, 0.0]])}
    soft = {t: soft_targets(t, v, spec) for t, v in teacher.items()}
    target = torch.tensor([2])
    d_expr = distill_loss("EXPR", logits["EXPR"], soft["EXPR"], spec)
    d_au = distill_loss("AU", logits["AU"], soft["AU"], spec)
    gt = torch.nn.functional.cross_entropy(logits["EXPR"], target)
    expected = 0.4 * d_expr + 0.6 * gt + d_au
    labels = {"EXPR": (torch.tensor([0]), target)}
    assert student_loss(logits, soft, labels, spec).item() == pytest.approx(expected.item(), abs=1e-6)


def test_vote_distribution_cross_entropy():
    logits = torch.tensor([[1.0, 0.0, -1.0, 0.0, 2.0, 0.0, 0.0]])
    votes = torch.tensor([[0.5, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0]])
    logp = torch.log_softmax(logits, -1)
    expected = -(0.5 * logp[0, 0] + 0.5 * logp[0, 4])
    loss = teacher_loss({"EXPR": logits}, {"EXPR": (torch.tensor([0]), votes)}, LossSpec())
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)


def test_teacher_loss_covers_every_labelled_task_on_its_rows_only():
    spec = LossSpec()
    logits = {"EXPR": torch.randn(4, 7), "BS": torch.randn(4, 52), "POSE": torch.randn(4, 3)}
    expr = torch.softmax(torch.randn(4, 7), -1)
    bs, pose = torch.rand(2, 52), torch.randn(2, 3) * 20
    rows = torch.tensor([1, 3])
    labels = {"EXPR": (torch.arange(4), expr), "BS": (rows, bs), "POSE": (rows, pose)}
    expected = (torch.nn.functional.cross_entropy(logits["EXPR"], expr)
                + 4.0 * torch.nn.functional.binary_cross_entropy_with_logits(logits["BS"][rows], bs)
                + pose_loss(logits["POSE"][rows], pose))
    assert teacher_loss(logits, labels, spec).item() == pytest.approx(expected.item(), rel=1e-5)


def test_pose_loss_in_degrees():
    from fer_annotate.models.networks import POSE_SCALE

    exact = torch.tensor([[10.0, -5.0, 30.0]])
    assert pose_loss(exact / POSE_SCALE, exact).item() == pytest.approx(0.0, abs=1e-6)
    off = pose_loss((exact + torch.tensor([[5.0, 0.0, 0.0]])) / POSE_SCALE, exact)
    assert off.item() == pytest.approx(0.5 * 0.5**2 / 3, rel=1e-4)  # smooth L1 of 0.5 unit on one of 3 angles
