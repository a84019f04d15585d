"""Data balancing as in the paper: ML-ROS for AU, class-balanced sampling for EXPR, a 2-D VA histogram.

Each task's sampler yields the dataset positions of one epoch; the training loop cuts them into that
task's batches. Balancing is per task and can be switched off (plain shuffling).
"""

import numpy as np


def imbalance_ratios(labels: np.ndarray) -> np.ndarray:
    """IRLbl per label: (count of the most frequent label) / (count of this label); inf when absent."""
    counts = np.nansum(labels, axis=0)
    with np.errstate(divide="ignore"):
        return np.where(counts > 0, counts.max() / np.maximum(counts, 1e-12), np.inf)


def ml_ros(labels: np.ndarray, max_extra: float = 0.5, rng: np.random.Generator | None = None) -> np.ndarray:
    """Multi-label random oversampling (Charte et al. 2015): positions of the original samples plus clones.

    Labels whose imbalance ratio IRLbl exceeds the mean ratio (MeanIR, over the labels present) are
    minority labels; samples carrying one are cloned at random, round-robin over the minority labels,
    until each one's IRLbl <= MeanIR or the clones reach `max_extra` times the dataset size. labels:
    [N, A] with 0/1 and NaN for missing (counted as absent).
    """
    rng = rng or np.random.default_rng(0)
    y = np.nan_to_num(labels.astype(np.float64), nan=0.0)
    counts = y.sum(axis=0)
    present = counts > 0
    if present.sum() < 2:
        return np.arange(len(y))
    ir = counts[present].max() / counts[present]
    mean_ir = ir.mean()
    budget = int(len(y) * max_extra)
    bags = {j: np.flatnonzero(y[:, j] > 0) for j in np.flatnonzero(present)}
    minority = [j for j in bags if counts.max() / counts[j] > mean_ir]
    clones: list[int] = []
    while minority and len(clones) < budget:
        for j in list(minority):
            i = int(rng.choice(bags[j]))
            clones.append(i)
            counts += y[i]
            if counts.max() / counts[j] <= mean_ir:
                minority.remove(j)
            if len(clones) >= budget:
                break
    return np.concatenate([np.arange(len(y)), np.asarray(clones, np.int64)])


def class_weights(classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-sample weight 1 / (count of its class): every class equally likely in an epoch."""
    counts = np.bincount(classes, minlength=n_classes).astype(np.float64)
    return 1.0 / counts[classes]


def va_weights(va: np.ndarray, bins: int = 20) -> np.ndarray:
    """Per-sample weight 1 / (count of its cell) in a bins x bins histogram of (valence, arousal) on [-1,1]^2."""
    idx = np.clip(((va + 1.0) / 2.0 * bins).astype(np.int64), 0, bins - 1)
    cell = idx[:, 0] * bins + idx[:, 1]
    counts = np.bincount(cell, minlength=bins * bins).astype(np.float64)
    return 1.0 / counts[cell]


class TaskSampler:
    """Epoch positions for one task's dataset: shuffled, ML-ROS pool (AU), or weighted draws (EXPR, VA)."""

    def __init__(self, task: str, labels, balance: bool, seed: int = 0):
        """labels: the task's labels for its rows (AU [N, A]; EXPR [N]; VA [N, 2])."""
        self.task, self.balance = task, balance
        self.n = len(labels)
        self.pool = np.arange(self.n)
        self.weights = None
        if balance and task == "AU":
            self.pool = ml_ros(labels, rng=np.random.default_rng(seed))
        elif balance and task == "EXPR":
            self.weights = class_weights(labels, int(labels.max()) + 1)
        elif balance and task == "VA":
            self.weights = va_weights(labels)
        if self.weights is not None:
            self.weights = self.weights / self.weights.sum()

    def epoch_size(self) -> int:
        """Samples in one natural epoch of this task (the ML-ROS pool includes the clones)."""
        return len(self.pool)

    def draw(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """count positions: whole shuffled passes over the pool, or weighted draws with replacement."""
        if self.weights is not None:
            return rng.choice(self.n, size=count, replace=True, p=self.weights)
        passes = [rng.permutation(self.pool) for _ in range(-(-count // len(self.pool)))]
        return np.concatenate(passes)[:count]
