"""Ensemble maths on constructed members, preprocessing, and a random bundle end to end on CPU."""

import itertools
import time

import numpy as np
import pytest
import torch
from bundle_factory import make_random_bundle

from fer_annotate.models.bundle import load_bundle, load_members
from fer_annotate.models.ensemble import Ensemble, EnsembleOutput, combine, decide
from fer_annotate.models.fuse import Traced


def test_combine_mean_and_spread_of_constructed_members():
    au = torch.tensor([[0.0, 2.0]]), torch.tensor([[0.0, -2.0]])
    expr = torch.tensor([[10.0, -10.0]]), torch.tensor([[-10.0, 10.0]])
    va_a = torch.full((1, 40), -1e4)
    va_a[0, 0] = va_a[0, 39] = 0  # valence -1, arousal 1
    va_b = torch.full((1, 40), -1e4)
    va_b[0, 19] = va_b[0, 39] = 0  # valence 1, arousal 1
    out = combine([{"AU": au[0], "EXPR": expr[0], "VA": va_a}, {"AU": au[1], "EXPR": expr[1], "VA": va_b}])
    np.testing.assert_allclose(out.au_prob, [[0.5, 0.5]], atol=1e-6)
    s = torch.sigmoid(torch.tensor(2.0)).item()
    np.testing.assert_allclose(out.au_std, [[0.0, s - 0.5]], atol=1e-6)
    np.testing.assert_allclose(out.expr_prob, [[0.5, 0.5]], atol=1e-6)
    np.testing.assert_allclose(out.expr_std, [[0.5, 0.5]], atol=1e-6)
    np.testing.assert_allclose([out.valence[0], out.arousal[0]], [0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose([out.valence_std[0], out.arousal_std[0]], [1.0, 0.0], atol=1e-6)
    assert out.hidden is None and out.au_prob.dtype == np.float32


def test_combine_task_subset_and_single_member_has_zero_spread():
    out = combine([{"EXPR": torch.randn(3, 7)}])
    assert out.present() == ["expr_prob", "expr_std"] and len(out) == 3
    assert np.all(out.expr_std == 0) and np.allclose(out.expr_prob.sum(-1), 1, atol=1e-6)


def test_decide_uses_bundle_thresholds(tmp_path):
    bundle = load_bundle(make_random_bundle(tmp_path / "b", "small_cnn", members=1, input_size=32))
    thr = np.asarray(bundle.au_thresholds, dtype=np.float32)  # 0.30, 0.35, ... per AU
    out = EnsembleOutput(au_prob=np.stack([thr + 0.01, thr]), expr_prob=np.eye(7, dtype=np.float32)[[4, 6]])
    d = decide(out, bundle)
    assert d.au.tolist() == [[1] * 8, [0] * 8] and d.expression.tolist() == [4, 6]
    assert decide(EnsembleOutput(valence=np.zeros(2)), bundle).au is None


def test_rows_and_concat():
    out = combine([{"AU": torch.randn(4, 8), "VA": torch.randn(4, 40)}] * 2)
    row = out[2]
    assert len(row) == 1 and row.valence.shape == (1,) and row.au_prob.shape == (1, 8)
    back = EnsembleOutput.concat([out[i] for i in range(4)])
    np.testing.assert_array_equal(back.au_prob, out.au_prob)


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    path = make_random_bundle(tmp_path_factory.mktemp("e") / "b", "small_cnn", members=3, input_size=32)
    return Ensemble(load_bundle(path), "cpu", max_batch=4)


def test_ensemble_matches_members_by_hand(ensemble):
    crops = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    out = ensemble(crops)
    spec = ensemble.bundle.input
    x = (crops.float() / 255 * spec.scale - torch.tensor(spec.mean).view(1, 3, 1, 1)) / torch.tensor(
        spec.std
    ).view(1, 3, 1, 1)
    members = load_members(ensemble.bundle)
    with torch.no_grad():
        expected = combine([m(x) for m in members])
    for name in ("au_prob", "au_std", "expr_prob", "valence", "arousal_std"):
        np.testing.assert_allclose(getattr(out, name), getattr(expected, name), atol=1e-5)
    assert out.au_prob.shape == (6, 8) and out.expr_prob.shape == (6, 7) and out.valence.shape == (6,)
    assert np.all((out.au_prob >= 0) & (out.au_prob <= 1)) and np.all(np.abs(out.valence) <= 1)
    assert out.expr_std.max() > 0 and out.hidden is None


def test_ensemble_rejects_bad_crops(ensemble):
    with pytest.raises(ValueError, match="needs 32"):
        ensemble(torch.zeros(1, 3, 48, 48, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8"):
        ensemble(torch.zeros(1, 3, 32, 32))


def test_gray_bundle_preprocessing(tmp_path):
    path = make_random_bundle(tmp_path / "g", "small_cnn", ("EXPR",), 1, 32, colour="gray")
    ens = Ensemble(load_bundle(path))
    crops = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    crops[:, 1] = 255  # pure green -> luma 0.587
    x = ens.preprocess(crops)
    assert x.shape == (2, 1, 32, 32)
    torch.testing.assert_close(x, torch.full_like(x, (0.587 - 0.5) / 0.25))
    assert ens(crops).present() == ["expr_prob", "expr_std"]


def test_cnn_rnn_bundle_hidden_and_sequence(tmp_path):
    path = make_random_bundle(tmp_path / "r", "small_cnn", members=2, input_size=32, temporal="cnn_rnn")
    ens = Ensemble(load_bundle(path))
    out = ens(torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8))
    assert out.hidden.shape == (5, 2, 3, 128)
    seq = ens.sequence(out.hidden[None])
    assert seq.au_prob.shape == (1, 5, 8) and seq.valence.shape == (1, 5) and seq.expr_std.shape == (1, 5, 7)
    members = load_members(ens.bundle)
    with torch.no_grad():
        h = torch.from_numpy(out.hidden[None])
        tasks = ens.bundle.tasks
        by_hand = combine([m({t: h[:, :, k, j] for j, t in enumerate(tasks)}) for k, m in enumerate(members)])
    np.testing.assert_allclose(seq.expr_prob, by_hand.expr_prob, atol=1e-6)


def test_geometry_heads_columns_and_roll_of_rotated_crops(tmp_path):
    """A bundle with distilled blendshape and pose heads: scores in [0, 1], the members' mean and spread,
    and roll in the frame = roll in the upright crop + the alignment's rotation (wrapped to +-180)."""
    from fer_annotate.models.model import ModelStage

    path = make_random_bundle(tmp_path / "b", backbone="small_cnn", tasks=("EXPR", "BS", "POSE"), members=3,
                              input_size=32, colour="gray")
    stage = ModelStage(load_bundle(path), "cpu", smooth="none")
    crops = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    upright = stage.predict(crops)
    turned = stage.predict(crops, np.array([0.0, 30.0, -45.0, 179.0]))
    for k, angle in enumerate((0.0, 30.0, -45.0, 179.0)):
        expected = (upright[k].pose[0, 2] + angle + 180) % 360 - 180
        assert turned[k].pose[0, 2] == pytest.approx(expected, abs=1e-3)
        np.testing.assert_allclose(turned[k].pose[0, :2], upright[k].pose[0, :2])
    cells = stage.columns(turned[1])
    assert 0.0 <= cells["bs_jawOpen"] <= 1.0 and "bs_neutral" in cells and cells["bs_std"] >= 0
    assert {"pose_yaw", "pose_pitch", "pose_roll", "pose_std"} <= set(cells)
    columns = stage.schema().columns
    assert columns[-4:] == ["pose_yaw", "pose_pitch", "pose_roll", "pose_std"] and "bs_mouthSmileLeft" in columns
    stage.geometry_columns = False  # the landmarker measures them instead
    assert not any(c.startswith(("bs_", "pose_")) for c in stage.schema().columns)
    assert not any(c.startswith(("bs_", "pose_")) for c in stage.columns(turned[1]))


def test_cpu_members_are_fused_at_load_with_the_eager_answers(tmp_path):
    path = make_random_bundle(tmp_path / "f", "small_cnn", members=2, input_size=32)
    ens = Ensemble(load_bundle(path), "cpu")
    assert ens.fused and all(isinstance(net, Traced) for net in ens.cnns)
    eager = load_members(load_bundle(path))
    crops = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    x = ens.preprocess(crops).contiguous()
    with torch.inference_mode():
        want = combine([m.forward_hidden(x)[0] for m in eager])
    got = ens(crops)
    for name in ("au_prob", "au_std", "expr_prob", "valence", "arousal_std"):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), atol=1e-5)


def test_answers_do_not_depend_on_what_ran_before(tmp_path, monkeypatch):
    """The same crops give the same bytes first, after a long history of other batches, and in a fresh
    ensemble. The clock races ahead an hour per reading, so any switch of execution form triggered by time
    spent (as the members' old swap to fused versions after 10 s) would happen inside this test."""
    clock = itertools.count(0.0, 3600.0)
    monkeypatch.setattr(time, "perf_counter", lambda: next(clock))
    path = make_random_bundle(tmp_path / "f", "small_cnn", members=2, input_size=32)
    generator = torch.Generator().manual_seed(3)
    crops = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=generator)
    ens = Ensemble(load_bundle(path), "cpu")
    first = ens(crops)
    for n in (1, 7, 16, 3, 16):  # other videos' batches, of other sizes
        ens(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator))
    later = ens(crops)
    fresh = Ensemble(load_bundle(path), "cpu")(crops)
    assert first.present() == later.present() == fresh.present()
    for name in first.present():
        assert getattr(later, name).tobytes() == getattr(first, name).tobytes(), name
        assert getattr(fresh, name).tobytes() == getattr(first, name).tobytes(), name
