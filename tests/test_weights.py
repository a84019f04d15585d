"""Weights: importing the authors' checkpoints, pulling with verification, resolving, the CLI."""

import io
import pickle
import urllib.request
from pathlib import Path

import pytest
import torch
from bundle_factory import authors_cnn_rnn_shapes, authors_cnn_shapes, make_random_bundle, random_state
from click.testing import CliRunner

from fer_annotate.cli.weights import weights as weights_cli
from fer_annotate.models import weights as W
from fer_annotate.models.bundle import BundleError, load_bundle, load_members
from fer_annotate.models.networks import NetworkSpec, build_network


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("FER_ANNOTATE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def authors_files(tmp_path_factory) -> Path:
    """One CNN and one CNN-RNN checkpoint in the authors' layout, saved with torch.save."""
    root = tmp_path_factory.mktemp("authors")
    (root / "cnn").mkdir()
    (root / "rnn").mkdir()
    torch.save(random_state(authors_cnn_shapes()), root / "cnn" / "0.pth")
    torch.save(random_state(authors_cnn_rnn_shapes()), root / "rnn" / "0.pth")
    return root


def test_import_authors_cnn_round_trip(authors_files, cache):
    bundle = W.import_weights("deng2020-cnn", authors_files / "cnn")
    assert bundle.path == cache / "bundles" / "deng2020-cnn"
    loaded = load_bundle(bundle.path)
    assert loaded.au_thresholds[0] == pytest.approx(0.1449, abs=1e-4) and loaded.input.scale == 255
    assert loaded.input.template[0] == [0.25, 0.25] and loaded.provenance["imported_from"][0]["file"] == "0.pth"
    reference = build_network(NetworkSpec("caffe_resnet50", {"EXPR": 7, "AU": 8, "VA": 40})).eval()
    reference.load_state_dict(torch.load(authors_files / "cnn" / "0.pth", weights_only=True), strict=True)
    [member] = load_members(loaded)
    x = torch.randn(1, 3, 64, 64) * 40  # any size: the pooling is adaptive; small keeps the test fast
    with torch.no_grad():
        for task, out in reference(x).items():
            # The same float32 network run twice may differ by rounding: the CPU kernels (oneDNN) may fold
            # BatchNorm into the convolutions or sum in another order (7.45e-9 seen). Float32 keeps ~1.2e-7 of
            # each value; over ~50 layers of sums of thousands of terms that stays below 1e-5 of the output's
            # scale, while a wrongly mapped weight changes the outputs by the order of that scale.
            scale = max(float(out.abs().max()), 1.0)
            torch.testing.assert_close(member(x)[task], out, rtol=1e-5, atol=1e-5 * scale)
    assert W.resolve_bundle(None).path == bundle.path  # the paper's ensemble is now the default


def test_import_authors_cnn_rnn_round_trip(authors_files):
    bundle = W.import_weights("deng2020-cnn-rnn", authors_files / "rnn")
    assert bundle.temporal.kind == "cnn_rnn" and bundle.au_thresholds[0] == pytest.approx(0.4254, abs=1e-4)
    [member] = load_members(load_bundle(bundle.path))
    state = torch.load(authors_files / "rnn" / "0.pth", weights_only=True)
    for key, value in member.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)


def test_import_wrong_kind_names_it(authors_files):
    with pytest.raises(BundleError, match="not a deng2020-cnn checkpoint .it looks like a CNN-RNN checkpoint"):
        W.import_weights("deng2020-cnn", authors_files / "rnn")


class Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_import_rejects_corrupt_and_pickled_code(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    good = io.BytesIO()
    torch.save({"a": torch.zeros(3)}, good)
    (folder / "0.pth").write_bytes(good.getvalue()[:50])
    with pytest.raises(BundleError, match=r"0\.pth: not a loadable PyTorch checkpoint"):
        W.import_weights("deng2020-cnn", folder)
    (folder / "0.pth").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(BundleError, match=r"0\.pth: not a plain state dict of tensors .*refused for safety$"):
        W.import_weights("deng2020-cnn", folder)
    torch.save({"a": torch.zeros(3), "b": Evil()}, folder / "0.pth")  # a real torch file with code inside
    with pytest.raises(BundleError, match=r"0\.pth: not a plain state dict of tensors .*refused for safety$") as info:
        W.import_weights("deng2020-cnn", folder)
    assert "weights_only" not in str(info.value)
    torch.save({"a": torch.zeros(3)}, folder / "0.pth")
    with pytest.raises(BundleError, match="missing key"):
        W.import_weights("deng2020-cnn", folder)
    with pytest.raises(BundleError, match="unknown weights 'nope'"):
        W.import_weights("nope", folder)


SMALL = {"EXPR": 7, "AU": 8, "VA": 40}


def small_registry(tmp_path: Path, files: list[tuple[str, str, str]], offline_default: str = "") -> W.Registry:
    """A registry with one downloadable small_cnn entry `tiny` (name, url, sha256 per file)."""
    entries = "".join(f'[[bundles.tiny.files]]\nname = "{n}"\nurl = "{u}"\nsha256 = "{s}"\n\n' for n, u, s in files)
    text = f"""offline_default = "{offline_default}"
[bundles.shipped-one]
path = "shipped-one"
description = "a shipped bundle"

[bundles.tiny]
description = "tiny test network"
au_names = ["AU01", "AU02", "AU04", "AU06", "AU12", "AU15", "AU20", "AU25"]
au_thresholds = [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
temporal = {{ kind = "none", seq_len = 32 }}
network = {{ backbone = "small_cnn", heads = {{ EXPR = 7, AU = 8, VA = 40 }}, in_channels = 3 }}
input = {{ size = 32, colour = "rgb", scale = 1.0, mean = [0.5, 0.5, 0.5], std = [0.5, 0.5, 0.5] }}

{entries}"""
    folder = tmp_path / "weights"
    folder.mkdir(exist_ok=True)
    (folder / "registry.toml").write_text(text)
    return W.load_registry(folder / "registry.toml")


@pytest.fixture
def served(tmp_path) -> tuple[Path, str]:
    """A 'remote' checkpoint for the tiny entry, reachable by a file:// URL, and its SHA-256."""
    remote = tmp_path / "remote"
    remote.mkdir()
    torch.save(build_network(NetworkSpec("small_cnn", SMALL)).state_dict(), remote / "m.pth")
    return remote / "m.pth", W.sha256_file(remote / "m.pth")


def test_pull_records_hash_on_first_download_then_verifies(tmp_path, cache, served):
    source, digest = served
    registry = small_registry(tmp_path, [("m.pth", source.as_uri(), "")])
    bundle = W.pull("tiny", registry, progress=False)
    assert load_bundle(bundle.path).provenance["imported_from"][0]["sha256"] == digest
    assert W.read_sums(cache / "downloads" / "tiny") == {"m.pth": digest}
    W.pull("tiny", registry, progress=False)  # cached file matches its record: no download needed
    (cache / "downloads" / "tiny" / "m.pth").write_bytes(b"corrupted")
    source.write_bytes(b"replaced upstream")
    with pytest.raises(BundleError, match="SHA-256 mismatch"):
        W.pull("tiny", registry, progress=False)
    assert sorted(p.name for p in (cache / "downloads" / "tiny").iterdir()) == ["SHA256SUMS", "m.pth"]


def test_pull_with_published_hash_and_failures(tmp_path, cache, served):
    source, digest = served
    with pytest.raises(BundleError, match="SHA-256 mismatch .expected 000000000000"):
        W.pull("tiny", small_registry(tmp_path, [("m.pth", source.as_uri(), "0" * 64)]), progress=False)
    assert not (cache / "downloads" / "tiny" / "m.pth").exists()
    with pytest.raises(BundleError, match="download failed"):
        W.pull("tiny", small_registry(tmp_path, [("m.pth", (tmp_path / "gone.pth").as_uri(), "")]), progress=False)
    bundle = W.pull("tiny", small_registry(tmp_path, [("m.pth", source.as_uri(), digest)]), progress=False)
    assert bundle.network.backbone == "small_cnn"


def test_pull_interrupted_stream_leaves_nothing(tmp_path, cache, served, monkeypatch):
    source, _ = served

    class Broken(io.BytesIO):
        headers = {"Content-Length": "1000000"}

        def read(self, n=-1):
            if self.tell() > 1000:
                raise ConnectionResetError("connection reset")
            return super().read(600)

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Broken(source.read_bytes()))
    with pytest.raises(BundleError, match="download failed .connection reset"):
        W.pull("tiny", small_registry(tmp_path, [("m.pth", "https://example.invalid/m.pth", "")]), progress=False)
    assert [p.name for p in (cache / "downloads" / "tiny").iterdir()] == []


def test_resolve_default_and_names(tmp_path, cache):
    registry = small_registry(tmp_path, [], offline_default="shipped-one")
    remedies = "weights pull deng2020-cnn.*weights import deng2020-cnn FOLDER.*--weights PATH"
    with pytest.raises(BundleError, match=remedies):
        W.resolve_bundle(None, small_registry(tmp_path, []))
    with pytest.raises(BundleError, match="weights pull deng2020-cnn"):
        W.resolve_bundle(None, registry)  # offline default named but not shipped here
    make_random_bundle(tmp_path / "weights" / "shipped-one", "small_cnn", ("EXPR",), 1, 32)
    assert W.resolve_bundle(None, registry).name == "random-small_cnn"
    assert W.resolve_bundle("shipped-one", registry).path == tmp_path / "weights" / "shipped-one"
    other = make_random_bundle(tmp_path / "elsewhere", "small_cnn", ("AU",), 1, 32)
    assert W.resolve_bundle(str(other), registry).tasks == ["AU"]
    with pytest.raises(BundleError, match="tiny are not in the cache"):
        W.resolve_bundle("tiny", registry)
    with pytest.raises(BundleError, match="unknown weights 'nope'"):
        W.resolve_bundle("nope", registry)


def test_list_weights(tmp_path, cache):
    registry = small_registry(tmp_path, [])
    make_random_bundle(cache / "bundles" / "my-own", "small_cnn", ("EXPR",), 1, 32)
    rows = {r.name: (r.kind, r.status) for r in W.list_weights(registry)}
    assert rows == {"shipped-one": ("shipped", "missing"), "tiny": ("download", "not cached"),
                    "my-own": ("local", "available")}
    assert {r.name for r in W.list_weights()} >= {"deng2020-cnn", "deng2020-cnn-rnn", "my-own"}


def test_cli(tmp_path, cache):
    runner = CliRunner()
    result = runner.invoke(weights_cli, ["list"])
    assert result.exit_code == 0 and "deng2020-cnn" in result.output
    path = make_random_bundle(tmp_path / "b", "small_cnn", ("EXPR", "VA"), 2, 32)
    result = runner.invoke(weights_cli, ["verify", str(path)])
    assert result.exit_code == 0 and result.output.startswith("ok random-small_cnn")
    (path / "member1.safetensors").write_bytes(b"x")
    result = runner.invoke(weights_cli, ["verify", str(path)])
    assert result.exit_code == 1 and "member1.safetensors: SHA-256 mismatch" in result.output
    assert len(result.output.strip().splitlines()) == 1
    result = runner.invoke(weights_cli, ["import", "deng2020-cnn", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "folder not found" in result.output
    result = runner.invoke(weights_cli, ["pull", "nope"])
    assert result.exit_code == 1 and "unknown weights 'nope'" in result.output
