"""Balancing: ML-ROS raises minority labels, class-balanced and VA-histogram sampling even out frequencies."""

import numpy as np
import pytest

from training.sampling import TaskSampler, imbalance_ratios, ml_ros, va_weights


def _multilabel(n: int = 2000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((n, 4)) < np.array([0.5, 0.3, 0.05, 0.02])).astype(np.float32)


def test_ml_ros_raises_minority_frequency():
    y = _multilabel()
    pool = ml_ros(y, max_extra=0.5, rng=np.random.default_rng(1))
    assert len(y) < len(pool) <= int(1.5 * len(y)) + len(y)
    assert set(pool[: len(y)]) == set(range(len(y)))  # every original sample kept
    before, after = y.mean(0), y[pool].mean(0)
    assert after[3] > 2 * before[3] and after[2] > before[2]
    ir_before, ir_after = imbalance_ratios(y), imbalance_ratios(y[pool])
    mean_ir = ir_before.mean()
    assert ir_after[2] <= mean_ir and ir_after[3] <= mean_ir  # cloned until IRLbl <= MeanIR
    assert ir_after.max() < 0.5 * ir_before.max()


def test_ml_ros_budget_and_missing_labels():
    y = _multilabel()
    y[:100, 1] = np.nan  # missing labels count as absent
    assert len(ml_ros(y, max_extra=0.1)) <= len(y) + int(0.1 * len(y))
    balanced = np.ones((50, 3), np.float32)
    assert len(ml_ros(balanced)) == 50  # nothing to balance


def test_class_balanced_frequencies_equal():
    rng = np.random.default_rng(0)
    classes = rng.choice(5, size=5000, p=[0.6, 0.25, 0.1, 0.04, 0.01])
    sampler = TaskSampler("EXPR", classes, balance=True)
    drawn = classes[sampler.draw(50_000, np.random.default_rng(1))]
    freq = np.bincount(drawn, minlength=5) / len(drawn)
    assert freq == pytest.approx(np.full(5, 0.2), abs=0.015)
    plain = TaskSampler("EXPR", classes, balance=False).draw(5000, np.random.default_rng(1))
    assert sorted(plain) == list(range(5000))  # unbalanced: one shuffled pass


def test_va_histogram_weights_flatten_cells():
    rng = np.random.default_rng(0)
    va = np.clip(rng.normal(0.2, 0.15, size=(20_000, 2)), -1, 1)
    va[:200] = rng.uniform(-1, -0.5, size=(200, 2))  # a rare corner
    w = va_weights(va, bins=20)
    corner = (va[:, 0] < -0.5) & (va[:, 1] < -0.5)
    assert w[corner].sum() / w.sum() > 10 * corner.mean()
    sampler = TaskSampler("VA", va, balance=True)
    drawn = va[sampler.draw(20_000, np.random.default_rng(2))]
    assert ((drawn[:, 0] < -0.5) & (drawn[:, 1] < -0.5)).mean() > 5 * corner.mean()


def test_au_sampler_uses_ml_ros_pool():
    y = _multilabel()
    sampler = TaskSampler("AU", y, balance=True, seed=3)
    assert sampler.epoch_size() > len(y)
    drawn = sampler.draw(sampler.epoch_size(), np.random.default_rng(0))
    assert y[drawn].mean(0)[3] > 2 * y.mean(0)[3]
