"""ABAW metrics and AU threshold tuning against hand-computed values."""

import numpy as np
import pytest

from training.metrics import au_metrics, ccc, expr_metrics, f1_binary, tune_thresholds, va_metrics


def test_f1_binary():
    pred = np.array([1, 1, 0, 0, 1])
    true = np.array([1, 0, 1, 0, 1])
    # tp 2, fp 1, fn 1 -> F1 = 4 / 6
    assert f1_binary(pred, true) == pytest.approx(2 / 3)
    assert f1_binary(np.zeros(3, int), np.zeros(3, int)) == 0.0


def test_au_metric_2020_and_2022():
    prob = np.array([[0.9, 0.1], [0.6, 0.7], [0.2, 0.8], [0.1, 0.2]])
    true = np.array([[1, 0], [0, 1], [1, 1], [0, np.nan]], dtype=np.float32)
    m = au_metrics(prob, true, 0.5)
    # AU a: pred 1 1 0 0 vs 1 0 1 0 -> tp1 fp1 fn1 -> F1 0.5; AU b (3 labelled): pred 0 1 1 vs 0 1 1 -> F1 1
    # accuracy over the 7 labelled decisions: a 2/4 right, b 3/3 -> 5/7
    assert m["f1_per_au"] == pytest.approx([0.5, 1.0])
    assert m["acc"] == pytest.approx(5 / 7)
    assert m["score"] == pytest.approx(0.5 * 0.75 + 0.5 * 5 / 7)
    assert au_metrics(prob, true, 0.5, "2022")["score"] == pytest.approx(0.75)
    # per-AU thresholds
    assert au_metrics(prob, true, [0.95, 0.5])["f1_per_au"][0] == 0.0


def test_expr_metric_2020():
    prob = np.eye(3)[[0, 1, 1, 2]]
    true = np.array([0, 1, 2, 2])
    m = expr_metrics(prob, true)
    # class F1: 1, 2/3, 2/3 -> macro 7/9; accuracy 3/4
    assert m["f1"] == pytest.approx(7 / 9)
    assert m["acc"] == pytest.approx(0.75)
    assert m["score"] == pytest.approx(0.67 * 7 / 9 + 0.33 * 0.75)
    assert m["confusion"] == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]


def test_va_metrics():
    pred = np.array([[1.0, 2.0], [2.0, 2.0], [3.0, 5.0]])
    true = np.array([[2.0, 2.0], [2.0, 2.0], [5.0, 5.0]])
    assert ccc(pred[:, 0], pred[:, 0]) == pytest.approx(1.0)
    m = va_metrics(pred, true)
    assert m["ccc_a"] == pytest.approx(1.0)
    assert m["ccc_v"] == pytest.approx(ccc([1, 2, 3], [2, 2, 5]))
    assert ccc([1, 2, 3], [2, 2, 5]) == pytest.approx(6 / 11)


def test_tune_thresholds_break_even_and_f1():
    prob = np.array([[0.9], [0.8], [0.7], [0.4], [0.3], [0.1]])
    true = np.array([[1], [0], [1], [1], [0], [0]], dtype=np.float32)
    # top-k precision / recall: k=1 1/1, 1/3; k=2 1/2, 1/3; k=3 2/3, 2/3 -> break-even at 0.7
    assert tune_thresholds(prob, true) == [pytest.approx(0.7)]
    # F1 per k: 0.5, 0.4, 0.667, 0.857 (k=4: 3/4 precision, recall 1) -> best threshold 0.4
    assert tune_thresholds(prob, true, "f1") == [pytest.approx(0.4)]
    assert tune_thresholds(prob, np.zeros_like(true)) == [0.5]
