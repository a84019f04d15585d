"""Temporal filter: step and ramp signals, gaps and track breaks, bounded lag, CNN-RNN windows."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from bundle_factory import make_random_bundle

from fer_annotate.models.bundle import load_bundle
from fer_annotate.models.ensemble import Ensemble, EnsembleOutput
from fer_annotate.models.temporal import SmoothSpec, TrackFilter


def row(v: float, au: float = 0.5) -> EnsembleOutput:
    return EnsembleOutput(
        au_prob=np.array([[au, 1 - au]], np.float32),
        valence=np.array([v], np.float32),
        valence_std=np.array([0.1], np.float32),
    )


def run(filt: TrackFilter, times, values) -> dict[int, EnsembleOutput]:
    out = []
    for frame, (t, v) in enumerate(zip(times, values, strict=True)):
        out += filt.push(frame, float(t), row(float(v)))
    out += filt.flush()
    frames = [f for f, _ in out]
    assert frames == sorted(frames) and len(set(frames)) == len(frames) == len(times)
    return dict(out)


def valences(out: dict[int, EnsembleOutput]) -> np.ndarray:
    return np.array([out[f].valence[0] for f in sorted(out)])


def test_smooth_spec_parse():
    assert SmoothSpec.parse("none").kind == "none"
    assert SmoothSpec.parse("gauss") == SmoothSpec()
    assert SmoothSpec.parse("gauss:0.25") == SmoothSpec("gauss", 0.25)
    assert SmoothSpec.parse("GAUSS:0.2:1").max_gap_s == 1.0
    for bad in ("median", "gauss:x", "gauss:-1", "none:2", "gauss:1:2:3"):
        with pytest.raises(ValueError):
            SmoothSpec.parse(bad)


def test_none_passes_through_without_lag():
    filt = TrackFilter(None, SmoothSpec("none"))
    r = row(0.3)
    assert filt.push(0, 0.0, r) == [(0, r)]
    assert filt.flush() == []


def test_step_is_smoothed_symmetrically_and_locally():
    t = np.arange(60) / 30
    values = (t >= 1.0).astype(float)
    v = valences(run(TrackFilter(None, SmoothSpec("gauss", 0.1)), t, values))
    assert np.all(np.diff(v) >= -1e-6)
    np.testing.assert_allclose(v[(t < 1.0 - 0.31) | (t > 1.0 + 0.31)], values[(t < 0.69) | (t > 1.31)], atol=1e-6)
    step = int(np.argmax(t >= 1.0))
    assert 0 < v[step - 1] < 0.5 < v[step] < 1
    np.testing.assert_allclose(v[step - 1] + v[step], 1.0, atol=1e-6)  # odd symmetry about the step


def test_ramp_interior_is_preserved():
    t = np.arange(90) / 30
    v = valences(run(TrackFilter(None, SmoothSpec("gauss", 0.1)), t, 0.5 * t - 0.5))
    interior = (t > 0.31) & (t < t[-1] - 0.31)
    np.testing.assert_allclose(v[interior], (0.5 * t - 0.5)[interior], atol=1e-5)


def test_irregular_timestamps_weight_by_time():
    t = np.array([0.0, 0.01, 0.02, 0.2])
    out = run(TrackFilter(None, SmoothSpec("gauss", 0.1, max_gap_s=1)), t, [0, 0, 0, 1])
    w = np.exp(-0.5 * ((t - 0.2) / 0.1) ** 2)
    np.testing.assert_allclose(out[3].valence[0], w[3] / w.sum(), atol=1e-6)
    assert out[3].au_prob.shape == (1, 2) and out[3].valence_std[0] == pytest.approx(0.1)


def test_gap_starts_a_new_segment():
    t = np.r_[np.arange(30) / 30, 2.0 + np.arange(30) / 30]  # 1 s gap > max_gap 0.5 s
    values = np.r_[np.zeros(30), np.ones(30)]
    v = valences(run(TrackFilter(None, SmoothSpec("gauss", 0.2)), t, values))
    np.testing.assert_allclose(v, values, atol=1e-6)
    filt = TrackFilter(None, SmoothSpec("gauss", 0.2))
    filt.push(0, 0.0, row(0))
    assert [f for f, _ in filt.push(1, 0.9, row(1))] == [0]  # the gap flushes the old segment first
    assert [f for f, _ in filt.push(2, 0.5, row(1))] == [1]  # time going backwards is a break too


def test_lag_and_memory_are_bounded():
    filt = TrackFilter(None, SmoothSpec("gauss", 0.1))
    held = 0
    for frame in range(3000):
        held += 1 - len(filt.push(frame, frame / 30, row(0.0)))
        assert held <= 11 and len(filt.stages[0].buf) <= 21
    assert len(filt.flush()) == held


class FakeSequenceEnsemble:
    """Stands in for an Ensemble with a CNN-RNN: records windows; valence = frame + 1000 * window."""

    def __init__(self, seq_len: int):
        self.bundle = SimpleNamespace(temporal=SimpleNamespace(seq_len=seq_len))
        self.temporal = True
        self.windows: list[list[int]] = []

    def sequence(self, hidden: np.ndarray) -> EnsembleOutput:
        frames = hidden[0, :, 0, 0, 0].astype(int).tolist()
        self.windows.append(frames)
        v = hidden[:, :, 0, 0, 0] + 1000 * (len(self.windows) - 1)
        return EnsembleOutput(valence=v.astype(np.float32), valence_std=np.zeros_like(v, np.float32))


def hidden_row(frame: int) -> EnsembleOutput:
    return EnsembleOutput(valence=np.zeros(1, np.float32), hidden=np.full((1, 2, 1, 4), frame, np.float32))


def run_sequence(n: int, seq_len: int = 8, times=None) -> tuple[FakeSequenceEnsemble, dict]:
    ens = FakeSequenceEnsemble(seq_len)
    filt = TrackFilter(ens, SmoothSpec("none"))
    times = np.arange(n) / 30 if times is None else times
    out = []
    for f in range(n):
        out += filt.push(f, float(times[f]), hidden_row(f))
        assert len(filt.stages[0].context) <= seq_len
    out += filt.flush()
    assert [f for f, _ in out] == list(range(n))
    assert all(r.hidden is None for _, r in out)
    return ens, {f: r.valence[0] for f, r in out}


def test_cnn_rnn_windows_last_aligned_to_track_end():
    ens, v = run_sequence(20)
    assert ens.windows == [list(range(0, 8)), list(range(8, 16)), list(range(12, 20))]
    assert [v[f] for f in (0, 7, 8, 15, 16, 19)] == [0, 7, 1008, 1015, 2016, 2019]


def test_cnn_rnn_exact_multiple_and_short_track():
    ens, _ = run_sequence(16)
    assert ens.windows == [list(range(8)), list(range(8, 16))]
    ens, v = run_sequence(3)
    assert ens.windows == [[0, 1, 2, 2, 2, 2, 2, 2]] and v == {0: 0, 1: 1, 2: 2}


def test_cnn_rnn_resets_at_gaps():
    times = np.r_[np.arange(10) / 30, 5 + np.arange(5) / 30]
    ens, _ = run_sequence(15, times=times)
    assert ens.windows == [list(range(8)), list(range(2, 10)), [10, 11, 12, 13, 14, 14, 14, 14]]


def test_cnn_rnn_with_a_real_bundle_then_gauss(tmp_path):
    path = make_random_bundle(tmp_path / "r", "small_cnn", members=2, input_size=32, temporal="cnn_rnn")
    ens = Ensemble(load_bundle(path))
    per_frame = ens(torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8))
    filt = TrackFilter(ens, SmoothSpec("gauss", 0.05))
    out = []
    for f in range(40):
        out += filt.push(f, f / 30, per_frame[f])
    out += filt.flush()
    assert [f for f, _ in out] == list(range(40))
    r = out[0][1]
    assert r.hidden is None and r.au_prob.shape == (1, 8) and r.expr_prob.shape == (1, 7)
    np.testing.assert_allclose(r.expr_prob.sum(), 1.0, atol=1e-5)
