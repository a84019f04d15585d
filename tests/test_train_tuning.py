"""The FER+ tuning split: decided by the FER+ image name, dropped from every run's training data, carried
through labelled manifests, and the only data `fer-train evaluate --tuning` scores; flip TTA and logit
averaging in the evaluation. Small files written here."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_factory import make_random_bundle
from click.testing import CliRunner
from PIL import Image

from fer_annotate.models.tta import flipped_logits, mirror_permutation
from training.cli import main
from training.config import Source, TrainConfig
from training.data import read_manifest
from training.label import TeacherLabels, write_labels
from training.loop import Env, load_datasets
from training.tuning import in_tuning, only_tuning, tuning_mask

HEADER = "path,ferplus_name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
NAMES = [f"fer{i:07d}.png" for i in range(60)]


def _ferplus(tmp_path: Path) -> Path:
    rows = []
    rng = np.random.default_rng(0)
    for i, name in enumerate(NAMES):
        path = tmp_path / "train" / f"{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path)
        votes = [0] * 10
        votes[i % 7] = 8
        votes[(i + 1) % 7] = 2
        rows.append(f"{i}.jpg,{name}," + ",".join(map(str, votes)))
    csv = tmp_path / "ferplus_train.csv"
    csv.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    return csv


def test_split_is_a_fixed_tenth_by_name():
    names = [f"fer{i:07d}.png" for i in range(5000)]
    share = np.mean([in_tuning(n) for n in names])
    assert 0.08 < share < 0.12
    assert [in_tuning(n) for n in names[:200]] == [in_tuning(n.upper() + " ") for n in names[:200]]
    assert not in_tuning("")


def test_training_runs_never_see_the_tuning_split(tmp_path):
    csv = _ferplus(tmp_path)
    tuning = {n for n in NAMES if in_tuning(n)}
    assert 0 < len(tuning) < len(NAMES)  # the fixture has both kinds of rows
    source = Source("manifest", f"{csv}@{tmp_path / 'train'}")
    cfg = TrainConfig(train=[source], val=[source], size=16)
    notes = []
    train, val = load_datasets(cfg, tmp_path / "cache", Env(torch.device("cpu")), notes.append)
    assert not tuning & set(train.labels.ferplus_names)
    assert len(train) == len(NAMES) - len(tuning) and len(train.images) == len(train)
    assert len(val) == len(NAMES)  # validation data is not touched
    assert any(f"{len(tuning)} FER+ images held out as the tuning split" in n for n in notes)


def test_labelled_manifests_keep_the_split(tmp_path):
    table = read_manifest(_ferplus(tmp_path), tmp_path / "train")
    labels = TeacherLabels(["pose_yaw", "pose_pitch", "pose_roll"], np.zeros((len(table), 3), np.float32))
    out = tmp_path / "labelled.csv"
    write_labels(out, table.paths, labels, {"ferplus_name": table.ferplus_names})
    again = read_manifest(out)
    assert again.ferplus_names == table.ferplus_names
    assert tuning_mask(again).tolist() == tuning_mask(table).tolist()
    with pytest.raises(ValueError, match="no tuning-split rows"):
        only_tuning(read_manifest(out).subset(~tuning_mask(again)))


def test_evaluate_tuning_tta_and_several_bundles(tmp_path):
    csv = _ferplus(tmp_path)
    bundle = make_random_bundle(tmp_path / "b", backbone="small_cnn", tasks=("EXPR", "BS", "POSE"), members=2,
                                input_size=16, colour="gray")
    source = f"{csv}@{tmp_path / 'train'}"
    n_tuning = sum(in_tuning(n) for n in NAMES)
    report = tmp_path / "r.json"
    runs = [["--tuning"], ["--tuning", "--tta", "flip"], ["--tuning", "--average", "logits"]]
    results = []
    for extra in runs:
        args = ["evaluate", str(bundle), str(bundle), "--manifest", source, "--threads", "1", "--json", str(report)]
        result = CliRunner().invoke(main, args + extra)
        assert result.exit_code == 0, result.output
        results.append(json.loads(report.read_text()))
    assert all(r["images"] == n_tuning and len(r["members"]) == 4 for r in results)
    assert "tta flip" in results[1]["bundle"] and "logit average" in results[2]["bundle"]


def test_flipped_logits_map_mirrored_faces_back():
    names = ["browDownLeft", "browDownRight", "jawOpen"]
    mirror = mirror_permutation(names)

    class Net(torch.nn.Module):
        def forward_hidden(self, x):  # left half brightness drives ...Left and yaw
            left, right = x[..., :2].mean((1, 2, 3)), x[..., 2:].mean((1, 2, 3))
            return {"BS": torch.stack([left, right, left + right], 1),
                    "POSE": torch.stack([left - right, left + right, right - left], 1)}, {}

    x = torch.zeros(1, 1, 4, 4)
    x[..., :2] = 1.0
    out, back = Net().forward_hidden(x)[0], flipped_logits(Net(), x, mirror)
    torch.testing.assert_close(back["BS"], out["BS"])
    torch.testing.assert_close(back["POSE"], out["POSE"])
