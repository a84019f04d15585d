"""The bundle family: bundles packed from other bundles' members, flip test-time augmentation in the
inference path, figures recorded in the manifest and printed by `weights list`, and the shipped family's
promises (registry names, no bundle both slower and less accurate than another)."""

import json

import numpy as np
import pytest
import torch
from bundle_factory import make_random_bundle
from click.testing import CliRunner

from fer_annotate.cli.weights import weights as weights_cli
from fer_annotate.models.bundle import BundleError, load_bundle
from fer_annotate.models.ensemble import Ensemble
from fer_annotate.models.tta import mirror_permutation
from fer_annotate.models.weights import load_registry
from training.cli import main
from training.pack import pack_bundle, write_figures


@pytest.fixture()
def source(tmp_path):
    return make_random_bundle(tmp_path / "src", backbone="small_cnn", tasks=("EXPR", "BS", "POSE"), members=3,
                              input_size=24, colour="gray")


def test_pack_picks_members_and_keeps_provenance(tmp_path, source):
    result = CliRunner().invoke(main, ["pack", str(source), str(source), "-o", str(tmp_path / "p"),
                                       "--members", "0,4", "--tta", "flip"])
    assert result.exit_code == 0, result.output
    packed, src = load_bundle(tmp_path / "p"), load_bundle(source)
    assert packed.tta == "flip" and packed.name == "p"
    assert [m.sha256 for m in packed.members] == [src.members[0].sha256, src.members[1].sha256]
    assert packed.provenance["packed_from"][1]["member"] == "member1.safetensors"
    bad = CliRunner().invoke(main, ["pack", str(source), "-o", str(tmp_path / "q"), "--members", "3"])
    assert bad.exit_code != 0 and "members 0..2" in bad.output and not (tmp_path / "q").exists()


def test_flip_tta_averages_the_mirrored_crop_mapped_back(tmp_path, source):
    plain = pack_bundle([source], tmp_path / "plain", "plain", members=[0])
    flip = pack_bundle([source], tmp_path / "flip", "flip", tta="flip", members=[0])
    crops = torch.randint(0, 256, (4, 3, 24, 24), dtype=torch.uint8)
    a, b = Ensemble(plain)(crops), Ensemble(flip)(crops)
    mirrored = Ensemble(plain)(crops.flip(-1))
    np.testing.assert_allclose(b.expr_prob, (a.expr_prob + mirrored.expr_prob) / 2, atol=1e-5)
    mirror = mirror_permutation(flip.bs_names)
    np.testing.assert_allclose(b.bs_prob, (a.bs_prob + mirrored.bs_prob[:, mirror]) / 2, atol=1e-5)
    sign = np.array([-1.0, 1.0, -1.0], np.float32)
    np.testing.assert_allclose(b.pose, (a.pose + mirrored.pose * sign) / 2, atol=1e-3)
    assert not np.allclose(a.expr_prob, b.expr_prob)  # random networks are not mirror-symmetric


def test_tta_needs_a_known_kind(tmp_path, source):
    bundle = pack_bundle([source], tmp_path / "b", "b")
    manifest = tmp_path / "b" / "bundle.json"
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps(data | {"tta": "rotate"}))
    with pytest.raises(BundleError, match="tta must be one of"):
        load_bundle(bundle.path)


def test_figures_are_listed(tmp_path, source, monkeypatch):
    monkeypatch.setenv("FER_ANNOTATE_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "cache" / "bundles" / "mine"
    pack_bundle([source], folder, "mine", tta="flip")
    write_figures(folder, {"network_passes": 6, "ferplus_val_acc": 0.8123, "frames_per_s": 41.0})
    assert load_bundle(folder).figures["ferplus_val_acc"] == 0.8123  # members untouched: still verifies
    result = CliRunner().invoke(weights_cli, ["list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    row = next(line.split() for line in result.output.splitlines() if line.split()[:1] == ["mine"])
    assert row[1:] == ["local", "6", "0.812", "-", "-", "41.0", "-"]


def _shipped_figures() -> dict[str, dict]:
    registry = load_registry()
    out = {}
    for name, entry in registry.entries.items():
        if entry.shipped:
            out[str(registry.location(name).resolve())] = load_bundle(registry.location(name), verify=False).figures
    return out


def test_shipped_family_keeps_its_names_and_records_figures():
    registry = load_registry()
    for name in ("ferplus-fast", "ferplus-teacher", "ferplus-distilled", registry.offline_default):
        assert (registry.location(name) / "bundle.json").is_file(), name
    for figures in _shipped_figures().values():
        assert {"network_passes", "ferplus_val_acc", "ferplus_val_macro_f1", "tuning_acc", "frames_per_s",
                "size_mb"} <= set(figures)


def test_no_shipped_bundle_is_slower_and_less_accurate_than_another():
    family = list(_shipped_figures().values())
    for a in family:
        for b in family:
            dominated = a["frames_per_s"] < b["frames_per_s"] and a["ferplus_val_acc"] < b["ferplus_val_acc"]
            assert not dominated, (a, b)


def test_default_is_the_most_accurate_within_five_networks():
    registry = load_registry()
    default = load_bundle(registry.location(registry.offline_default), verify=False).figures
    assert default["network_passes"] <= 5
    for figures in _shipped_figures().values():
        if figures["network_passes"] <= 5:
            assert figures["ferplus_val_acc"] <= default["ferplus_val_acc"]
