"""The shipped offline default: real weights (expressions learnt from FER+ votes, blendshapes and head pose
distilled from MediaPipe's landmarker) that fer-annotate uses when nothing is cached, at the accuracy its
manifest claims."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_run import invoke, read_table, sidecar
from PIL import Image

from fer_annotate.models.bundle import load_bundle
from fer_annotate.models.ensemble import Ensemble
from fer_annotate.models.weights import load_registry


@pytest.fixture(scope="module")
def shipped() -> Path:
    registry = load_registry()
    assert registry.offline_default == "ferplus"
    return registry.location(registry.offline_default)


def test_shipped_bundle_verifies_and_is_small(shipped):
    bundle = load_bundle(shipped)
    assert bundle.tasks == ["EXPR", "BS", "POSE"] and len(bundle.bs_names) == 52
    assert bundle.input.colour == "gray" and bundle.input.size == 48
    assert bundle.figures["network_passes"] <= 5  # no dearer per face than the 5-network default it replaced
    assert sum(p.stat().st_size for p in shipped.iterdir()) < 40 * 2**20
    assert "teacher" in json.dumps(bundle.provenance) and "fer-train" in json.dumps(bundle.provenance)


def test_shipped_bundle_has_the_accuracy_its_manifest_claims(shipped, shared_dir):
    """Real weights, prepared as trained, through the inference path (with the bundle's test-time
    augmentation): majority-vote accuracy on all of FER+ validation is the manifest's figure, and above
    the 0.819 of the 5-student ensemble it replaced (chance is under 0.4)."""
    from training.data import read_manifest

    folder = shared_dir / "data" / "fer2013"
    if not (folder / "ferplus_val.csv").is_file():
        pytest.skip(f"needs {folder / 'ferplus_val.csv'}")
    table = read_manifest(folder / "ferplus_val.csv", folder / "val")
    bundle = load_bundle(shipped)
    ensemble = Ensemble(bundle, "cpu")
    images = np.stack([np.repeat(np.asarray(Image.open(p).convert("L"))[None], 3, 0) for p in table.paths])
    out = ensemble(torch.from_numpy(images))
    accuracy = float((out.expr_prob.argmax(1) == table.expr).mean())
    assert accuracy == pytest.approx(bundle.figures["ferplus_val_acc"], abs=0.002)
    assert accuracy > 0.819, accuracy
    assert out.bs_prob.shape == (len(table), 52) and out.pose.shape == (len(table), 3)


def test_offline_default_is_used_and_said(shipped, torch_home, shared_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FER_ANNOTATE_CACHE", str(tmp_path / "empty-cache"))
    video = shared_dir / "fixtures" / "videos" / "pyfeat_single_face.mp4"
    out = tmp_path / "out.csv"
    result = invoke([video, "-o", out])
    assert result.exit_code == 0, result.describe()
    assert "ferplus" in result.output and "deng2020-cnn is not in the cache" in result.output
    meta = json.loads(sidecar(out).read_text())
    assert meta["model"]["bundle"] == "ferplus" and "not in the cache" in meta["model"]["note"]
    table = read_table(out)
    assert {"expression", "expr_happiness", "expr_std", "bs_jawOpen", "bs_std", "pose_yaw", "pose_std"} <= set(
        table.columns)
    assert not any(c.startswith("AU") for c in table.columns) and "valence" not in table.columns
    ok = table[table["status"] == "ok"]
    assert len(ok) == len(table) == 72
    probs = ok[[f"expr_{n}" for n in meta["model"]["manifest"]["expr_names"]]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-3)
