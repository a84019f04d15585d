"""ABAW challenge metrics and per-AU threshold tuning.

ABAW 2020 (and 2021): AU = 0.5 * mean per-AU F1 + 0.5 * accuracy over all frame x AU decisions;
EXPR = 0.67 * macro F1 + 0.33 * accuracy; VA = CCC per dimension. ABAW 2022+: AU = mean per-AU F1,
EXPR = macro F1, VA = mean CCC. The model-selection score is AU + EXPR + CCC_V + CCC_A (tasks present).
"""

import numpy as np

EDITIONS = ("2020", "2022")


def f1_binary(pred: np.ndarray, true: np.ndarray) -> float:
    """F1 of the positive class (0 when there are no positives predicted or true)."""
    tp = float(np.sum((pred == 1) & (true == 1)))
    fp = float(np.sum((pred == 1) & (true == 0)))
    fn = float(np.sum((pred == 0) & (true == 1)))
    return 2 * tp / (2 * tp + fp + fn) if tp > 0 else 0.0


def ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Concordance correlation coefficient with population statistics."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    mx, my = x.mean(), y.mean()
    cov = np.mean((x - mx) * (y - my))
    return float(2 * cov / (x.var() + y.var() + (mx - my) ** 2 + 1e-12))


def au_metrics(prob: np.ndarray, true: np.ndarray, thresholds=0.5, edition: str = "2020") -> dict:
    """AU scores for probabilities [N, A] and 0/1 labels [N, A] (NaN = missing, excluded per AU)."""
    pred = (prob >= np.asarray(thresholds, np.float64)).astype(np.int64)
    mask = ~np.isnan(true)
    f1 = [f1_binary(pred[mask[:, j], j], true[mask[:, j], j]) for j in range(true.shape[1])]
    acc = float((pred[mask] == true[mask]).mean()) if mask.any() else 0.0
    mean_f1 = float(np.mean(f1))
    score = mean_f1 if edition == "2022" else 0.5 * mean_f1 + 0.5 * acc
    return {"score": score, "f1": mean_f1, "acc": acc, "f1_per_au": f1}


def confusion(pred: np.ndarray, true: np.ndarray, n: int) -> np.ndarray:
    """Confusion matrix [n, n]: rows true class, columns predicted class."""
    return np.bincount(true * n + pred, minlength=n * n).reshape(n, n)


def expr_metrics(prob: np.ndarray, true: np.ndarray, edition: str = "2020") -> dict:
    """EXPR scores for probabilities [N, K] and class indices [N]; macro F1 over the K classes."""
    n = prob.shape[1]
    pred = prob.argmax(1)
    f1 = [f1_binary((pred == k).astype(int), (true == k).astype(int)) for k in range(n)]
    acc = float((pred == true).mean())
    macro = float(np.mean(f1))
    score = macro if edition == "2022" else 0.67 * macro + 0.33 * acc
    return {"score": score, "f1": macro, "acc": acc, "f1_per_class": f1, "confusion": confusion(pred, true, n).tolist()}


def va_metrics(pred: np.ndarray, true: np.ndarray) -> dict:
    """VA scores for predictions and labels [N, 2]: CCC of valence, arousal and their mean."""
    v, a = ccc(pred[:, 0], true[:, 0]), ccc(pred[:, 1], true[:, 1])
    return {"score": v + a, "ccc_v": v, "ccc_a": a, "ccc_mean": 0.5 * (v + a)}


def selection_score(metrics: dict[str, dict]) -> float:
    """AU metric + EXPR metric + CCC_V + CCC_A over the tasks present (the paper's best-epoch rule)."""
    return float(sum(m["score"] for m in metrics.values()))


def tune_thresholds(prob: np.ndarray, true: np.ndarray, rule: str = "break_even") -> list[float]:
    """Per-AU thresholds on validation: where precision meets recall ("break_even", the paper's rule)
    or where F1 is highest ("f1"). An AU without positives keeps 0.5."""
    out = []
    for j in range(true.shape[1]):
        mask = ~np.isnan(true[:, j])
        p, t = prob[mask, j].astype(np.float64), true[mask, j]
        if t.sum() == 0 or len(t) == 0:
            out.append(0.5)
            continue
        order = np.argsort(-p, kind="stable")
        p, t = p[order], t[order]
        tp = np.cumsum(t)
        k = np.arange(1, len(t) + 1)
        precision, recall = tp / k, tp / t.sum()
        last = np.r_[p[1:] != p[:-1], True]  # thresholds only between distinct scores
        if rule == "f1":
            f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
            best = int(np.argmax(np.where(last, f1, -1)))
        else:
            best = int(np.argmin(np.where(last, np.abs(precision - recall), np.inf)))
        out.append(float(p[best]))
    return out


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation (0 when either side is constant)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    sx, sy = x.std(), y.std()
    return 0.0 if sx == 0 or sy == 0 else float(((x - x.mean()) * (y - y.mean())).mean() / (sx * sy))


def regression_metrics(pred: np.ndarray, true: np.ndarray, names: list[str], active: int = 10) -> dict:
    """Agreement of predictions [N, D] with a teacher's targets [N, D] per output: Pearson r, CCC, mean
    absolute error. `score` is the mean CCC over the `active` outputs whose targets vary most (the most
    active blendshapes; all outputs when there are fewer)."""
    per = {n: {"r": pearson(pred[:, j], true[:, j]), "ccc": ccc(pred[:, j], true[:, j]),
               "mae": float(np.abs(pred[:, j] - true[:, j]).mean()), "target_std": float(true[:, j].std())}
           for j, n in enumerate(names)}
    ranked = sorted(names, key=lambda n: -per[n]["target_std"])[: min(active, len(names))]
    return {"score": float(np.mean([per[n]["ccc"] for n in ranked])), "active": ranked,
            "mae": float(np.mean([per[n]["mae"] for n in ranked])), "per_output": per}
