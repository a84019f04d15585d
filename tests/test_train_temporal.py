"""The CNN-RNN stage: video windows as in the paper, and a tiny ABAW-layout run exported as a cnn_rnn
bundle that fer-annotate's Ensemble runs over sequences."""

import numpy as np
import torch
from click.testing import CliRunner

from fer_annotate.models.bundle import load_bundle
from fer_annotate.models.ensemble import Ensemble
from training.cli import main
from training.synthetic import write_abaw
from training.temporal import windows


def test_windows_stride_end_aligned_and_padded():
    video = np.array([0] * 10 + [1] * 3)
    frame = np.r_[np.arange(10, 0, -1), [5, 6, 7]]  # video 0 rows listed in reverse frame order
    w = windows(video, frame, 4, 4)
    rows0 = np.arange(9, -1, -1)  # rows of video 0 sorted by frame
    np.testing.assert_array_equal(w[0], rows0[0:4])
    np.testing.assert_array_equal(w[1], rows0[4:8])
    np.testing.assert_array_equal(w[2], rows0[6:10])  # last window aligned to the end
    np.testing.assert_array_equal(w[3], [10, 11, 12, 12])  # short video padded with its last frame
    assert len(windows(video, frame, 4, 2)) == 4 + 1  # starts 0, 2, 4, 6 + the padded one


def test_temporal_run_exports_cnn_rnn_bundle(tmp_path):
    root = write_abaw(tmp_path / "abaw", videos=2, frames=24, size=24, seed=1)
    write_abaw(tmp_path / "abaw", videos=1, frames=16, size=24, seed=2, split="Validation_Set")
    net = ["--backbone", "small_cnn", "--backbone-kwargs", '{"width": 8, "depths": [1, 1]}', "--size", "24",
           "--colour", "gray", "--batch-size", "8", "--steps-per-epoch", "2", "--threads", "1"]
    runner = CliRunner()

    def ok(args):
        result = runner.invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result

    ok(["teacher", "--abaw", str(root), "--val-abaw", str(root), *net, "--epochs", "1", "--out", str(tmp_path / "t")])
    ok(["temporal", "--cnn", str(tmp_path / "t"), "--seq-len", "8", "--seq-stride", "4", "--epochs", "1",
        "--batch-size", "4", "--out", str(tmp_path / "rnn")])
    ok(["export", str(tmp_path / "rnn"), "-o", str(tmp_path / "b")])
    bundle = load_bundle(tmp_path / "b")
    assert bundle.temporal.kind == "cnn_rnn" and bundle.temporal.seq_len == 8
    assert "temporal" in bundle.provenance["commands"]
    ens = Ensemble(bundle, "cpu")
    out = ens(torch.randint(0, 256, (8, 3, 24, 24), dtype=torch.uint8))
    seq = ens.sequence(out.hidden[None])
    assert seq.expr_prob.shape == (1, 8, 7) and seq.au_prob.shape == (1, 8, 8)
