"""The shipped offline default: a real FER2013 expression ensemble that fer-annotate uses when nothing is cached."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_run import invoke, read_table, sidecar
from PIL import Image

from fer_annotate.bundle import load_bundle
from fer_annotate.ensemble import Ensemble
from fer_annotate.weights import load_registry

FOLDER_TO_EXPR = {"neutral": "neutral", "angry": "anger", "disgust": "disgust", "fear": "fear",
                  "happy": "happiness", "sad": "sadness", "surprise": "surprise"}


@pytest.fixture(scope="module")
def shipped() -> Path:
    registry = load_registry()
    assert registry.offline_default == "fer2013-expr"
    return registry.location(registry.offline_default)


def test_shipped_bundle_verifies_and_is_small(shipped):
    bundle = load_bundle(shipped)
    assert bundle.tasks == ["EXPR"] and len(bundle.members) == 5
    assert bundle.input.colour == "gray" and bundle.input.size == 48
    assert sum(p.stat().st_size for p in shipped.iterdir()) < 40 * 2**20
    assert "teacher" in json.dumps(bundle.provenance) and "fer-train" in json.dumps(bundle.provenance)


def test_shipped_bundle_recognises_fer2013_validation_faces(shipped, shared_dir):
    """Real weights, prepared as trained: well above chance on a slice of FER2013 val through the inference path."""
    val = shared_dir / "data" / "fer2013" / "val"
    if not val.is_dir():
        pytest.skip(f"needs {val}")
    ensemble = Ensemble(load_bundle(shipped), "cpu")
    names = ensemble.bundle.expr_names
    images, labels = [], []
    for folder, expr in FOLDER_TO_EXPR.items():
        for path in sorted((val / folder).glob("*"))[:60]:
            grey = np.asarray(Image.open(path).convert("L"))
            images.append(np.repeat(grey[None], 3, 0))
            labels.append(names.index(expr))
    out = ensemble(torch.from_numpy(np.stack(images)))
    accuracy = float((out.expr_prob.argmax(1) == np.array(labels)).mean())
    assert accuracy > 0.5, accuracy


def test_offline_default_is_used_and_said(shipped, torch_home, shared_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FER_ANNOTATE_CACHE", str(tmp_path / "empty-cache"))
    video = shared_dir / "fixtures" / "videos" / "pyfeat_single_face.mp4"
    out = tmp_path / "out.csv"
    result = invoke([video, "-o", out])
    assert result.exit_code == 0, result.describe()
    assert "fer2013-expr" in result.output and "deng2020-cnn is not in the cache" in result.output
    meta = json.loads(sidecar(out).read_text())
    assert meta["model"]["bundle"] == "fer2013-expr" and "not in the cache" in meta["model"]["note"]
    table = read_table(out)
    assert {"expression", "expr_happiness", "expr_std"} <= set(table.columns)
    assert not any(c.startswith("AU") for c in table.columns) and "valence" not in table.columns
    ok = table[table["status"] == "ok"]
    assert len(ok) == len(table) == 72
    probs = ok[[f"expr_{n}" for n in meta["model"]["manifest"]["expr_names"]]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-3)
