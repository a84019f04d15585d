"""Bundles: round trip, and clear one-line errors for every kind of broken bundle."""

import json

import pytest
import torch
from bundle_factory import make_random_bundle

from fer_annotate.models.bundle import (
    MANIFEST,
    BundleError,
    InputSpec,
    load_bundle,
    load_members,
    save_bundle,
)
from fer_annotate.models.networks import MultitaskCNNRNN, MultitaskNet, NetworkSpec, build_network


@pytest.fixture
def small(tmp_path):
    return make_random_bundle(tmp_path / "b", backbone="small_cnn", input_size=48, members=2)


def _edit_manifest(folder, **changes):
    data = json.loads((folder / MANIFEST).read_text())
    data.update(changes)
    (folder / MANIFEST).write_text(json.dumps(data))


def test_round_trip_identical_outputs(tmp_path):
    spec = NetworkSpec("small_cnn", {"EXPR": 7, "AU": 8, "VA": 40})
    nets = [build_network(spec).eval() for _ in range(2)]
    bundle = save_bundle(tmp_path / "rt", [n.state_dict() for n in nets], name="rt", network=spec,
                         input=InputSpec(48), provenance={"command": "test"})
    loaded = load_bundle(tmp_path / "rt")
    assert loaded.to_manifest() == bundle.to_manifest()
    assert loaded.tasks == ["EXPR", "AU", "VA"] and loaded.au_names[0] == "AU01" and loaded.va_bins == 20
    assert loaded.expr_names[4] == "happiness" and loaded.au_thresholds == [0.5] * 8
    x = torch.randn(3, 3, 48, 48)
    for net, member in zip(nets, load_members(loaded), strict=True):
        assert isinstance(member, MultitaskNet) and not member.training
        for task, out in net(x).items():
            torch.testing.assert_close(member(x)[task], out, rtol=0, atol=0)


def test_load_accepts_manifest_path_and_factory_variants(tmp_path, small):
    assert load_bundle(small / MANIFEST).path == small
    rnn = make_random_bundle(tmp_path / "r", "small_cnn", ("EXPR", "VA"), 1, 48, "cnn_rnn", colour="gray")
    b = load_bundle(rnn)
    assert b.temporal.kind == "cnn_rnn" and b.tasks == ["EXPR", "VA"] and b.au_names == []
    assert b.input.colour == "gray" and b.network.in_channels == 1
    assert isinstance(load_members(b)[0], MultitaskCNNRNN)


def test_missing_member(small):
    (small / "member1.safetensors").unlink()
    with pytest.raises(BundleError, match=r"member1\.safetensors: member file missing"):
        load_bundle(small)


def test_checksum_mismatch(small):
    file = small / "member0.safetensors"
    data = bytearray(file.read_bytes())
    data[-5] ^= 0xFF
    file.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="member0.safetensors: SHA-256 mismatch"):
        load_bundle(small)


def test_truncated_member_without_verification(small):
    file = small / "member0.safetensors"
    file.write_bytes(file.read_bytes()[:1000])
    bundle = load_bundle(small, verify=False)
    with pytest.raises(BundleError, match="member0.safetensors: unreadable safetensors file"):
        load_members(bundle)


def test_unknown_manifest_version(small):
    _edit_manifest(small, schema_version=99)
    with pytest.raises(BundleError, match="unknown manifest schema_version 99"):
        load_bundle(small)


def test_not_a_bundle(tmp_path, small):
    with pytest.raises(BundleError, match="bundle folder not found"):
        load_bundle(tmp_path / "nope")
    with pytest.raises(BundleError, match="not a weights bundle"):
        load_bundle(small / "member0.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="manifest missing"):
        load_bundle(tmp_path / "empty")
    (small / MANIFEST).write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(small)


def test_inconsistent_manifest(small):
    _edit_manifest(small, au_names=["AU01"])
    with pytest.raises(BundleError, match="1 AU names for 8 AU outputs"):
        load_bundle(small)


def test_missing_field_and_unknown_subfield(small):
    data = json.loads((small / MANIFEST).read_text())
    del data["au_thresholds"]
    (small / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"missing field\(s\) \['au_thresholds'\]"):
        load_bundle(small)
    data["au_thresholds"] = [0.5] * 8
    data["input"]["gamma"] = 2
    (small / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(BundleError, match="unknown field"):
        load_bundle(small)


def test_shape_mismatch_member(small):
    data = json.loads((small / MANIFEST).read_text())
    data["network"]["heads"]["EXPR"] = 8
    data["expr_names"].append("other")
    (small / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"shape mismatch for classifier\.0\.fc_1\.(weight|bias): file has \[7"):
        load_members(load_bundle(small))


def test_save_rejects_wrong_state_and_existing_folder(tmp_path, small):
    spec = NetworkSpec("small_cnn", {"EXPR": 7})
    state = build_network(spec).state_dict()
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(BundleError, match="unexpected key"):
        save_bundle(tmp_path / "x", [state], name="x", network=spec, input=InputSpec(48))
    assert not (tmp_path / "x").exists()
    with pytest.raises(BundleError, match="already exists"):
        save_bundle(small, [build_network(spec).state_dict()], name="x", network=spec, input=InputSpec(48))
    assert load_bundle(small).tasks == ["EXPR", "AU", "VA"]
    save_bundle(small, [build_network(spec).state_dict()], name="x", network=spec, input=InputSpec(48),
                overwrite=True)
    assert load_bundle(small).tasks == ["EXPR"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_saved_bundle_has_ordinary_permissions(tmp_path):
    """Built in a private temporary folder, a bundle is still readable by others once published (umask 022)."""
    import os

    from bundle_factory import make_random_bundle

    old = os.umask(0o022)
    try:
        path = make_random_bundle(tmp_path / "b", backbone="small_cnn", members=1, input_size=48)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o755
    assert {p.stat().st_mode & 0o777 for p in path.iterdir()} == {0o644}
