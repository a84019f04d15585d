"""Known weights: the registry, the cache, downloads, imports of the authors' checkpoints, resolution.

`weights/registry.toml` names bundles shipped in `weights/` and bundles made from the authors'
published `.pth` files. Those are downloaded (`pull`) or copied in by hand (`import_weights`) and
converted into a bundle in the cache: `$FER_ANNOTATE_CACHE` (default ~/.cache/fer-annotate), with
`downloads/NAME/` for the original files and `bundles/NAME/` for the converted bundle.
`.pth` files are read with `torch.load(weights_only=True)`: tensors only, never arbitrary pickles.
"""

import json
import logging
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fer_annotate.files import fetch
from fer_annotate.files.fetch import cache_dir
from fer_annotate.models.bundle import (
    EXPR_NAMES,
    Bundle,
    BundleError,
    InputSpec,
    TemporalSpec,
    check_state_dict,
    load_bundle,
    save_bundle,
    sha256_file,
)
from fer_annotate.models.networks import NetworkSpec

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"
DEFAULT_BUNDLE = "deng2020-cnn"
SUMS = "SHA256SUMS"


@dataclass
class RegistryEntry:
    """One named bundle: shipped (`path` under weights/) or made from downloadable checkpoints (`files`)."""

    name: str
    description: str = ""
    source: str = ""
    licence: str = ""
    path: str | None = None
    files: list[dict] = field(default_factory=list)
    network: dict | None = None
    input: dict | None = None
    temporal: dict = field(default_factory=dict)
    au_names: list[str] = field(default_factory=list)
    expr_names: list[str] = field(default_factory=lambda: list(EXPR_NAMES))
    va_bins: int = 20
    au_thresholds: list[float] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)

    @property
    def shipped(self) -> bool:
        return self.path is not None


@dataclass
class Registry:
    """The parsed registry file; `folder` is where shipped bundles live."""

    folder: Path
    entries: dict[str, RegistryEntry]
    offline_default: str = ""

    def get(self, name: str) -> RegistryEntry:
        if name not in self.entries:
            raise BundleError(f"unknown weights {name!r}: not a bundle folder and not in the registry "
                              f"(known: {', '.join(self.entries)})")
        return self.entries[name]

    def location(self, name: str) -> Path:
        """Where the named bundle's folder is (or would be, once pulled or imported)."""
        entry = self.get(name)
        return self.folder / entry.path if entry.shipped else cache_dir() / "bundles" / name


def load_registry(path: Path | None = None) -> Registry:
    """Read weights/registry.toml (or another registry file, e.g. in tests)."""
    path = path or WEIGHTS_DIR / "registry.toml"
    try:
        data = tomllib.loads(path.read_text())
        entries = {name: RegistryEntry(name=name, **spec) for name, spec in data.get("bundles", {}).items()}
    except (OSError, tomllib.TOMLDecodeError, TypeError) as exc:
        raise BundleError(f"{path}: unreadable weights registry ({exc})") from None
    return Registry(path.parent, entries, data.get("offline_default", ""))


def _remedy(name: str) -> str:
    return (f"on a connected machine run `fer-annotate weights pull {name}`, or import local copies with "
            f"`fer-annotate weights import {name} FOLDER`, or pass `--weights PATH` to another bundle")


def resolve_bundle(name_or_path: str | os.PathLike | None, registry: Registry | None = None) -> Bundle:
    """The bundle to annotate with: a bundle folder, a registry name, or None for the default.

    The default is the paper's CNN ensemble (deng2020-cnn) when it is in the cache, else the shipped
    bundle the registry marks as `offline_default` (the CLI says so on the console and in the sidecar).
    """
    registry = registry or load_registry()
    if name_or_path is None:
        default = cache_dir() / "bundles" / DEFAULT_BUNDLE
        if (default / "bundle.json").is_file():
            return load_bundle(default)
        fallback = registry.offline_default
        if fallback and (registry.location(fallback) / "bundle.json").is_file():
            return load_bundle(registry.location(fallback))
        raise BundleError(f"no weights available: the default {DEFAULT_BUNDLE} is not in the cache ({default}) "
                          f"and no shipped bundle is installed; {_remedy(DEFAULT_BUNDLE)}")
    path = Path(name_or_path)
    if path.exists():
        return load_bundle(path)
    location = registry.location(str(name_or_path))
    if not (location / "bundle.json").is_file():
        if registry.get(str(name_or_path)).shipped:
            raise BundleError(f"{location}: shipped bundle {name_or_path} is missing from this installation")
        raise BundleError(f"weights {name_or_path} are not in the cache ({location}); {_remedy(str(name_or_path))}")
    return load_bundle(location)


def read_sums(folder: Path) -> dict[str, str]:
    """File name -> SHA-256 recorded in folder/SHA256SUMS (empty if none)."""
    sums = folder / SUMS
    if not sums.is_file():
        return {}
    return {name: digest for digest, name in (line.split(None, 1) for line in sums.read_text().splitlines() if line)}


def write_sums(folder: Path, sums: dict[str, str]) -> None:
    tmp = folder / f".{SUMS}.tmp"
    tmp.write_text("".join(f"{digest}  {name}\n" for name, digest in sorted(sums.items())))
    os.replace(tmp, folder / SUMS)


def download(url: str, dest: Path, sha256: str = "", progress: bool = True) -> str:
    """`fetch.download` for a bundle's files: a failure is a BundleError saying how to get them offline."""
    try:
        return fetch.download(url, dest, sha256, progress)
    except fetch.DownloadError as exc:
        raise BundleError(f"{exc}; offline, copy the files by hand and use "
                          "`fer-annotate weights import NAME FOLDER`") from None


def pull(name: str, registry: Registry | None = None, progress: bool = True) -> Bundle:
    """Download a registry entry's checkpoints into the cache (verified, resumable per file) and import them.

    Where the registry has no SHA-256 for a file, the first download's hash is recorded in
    downloads/NAME/SHA256SUMS and later downloads must match it.
    """
    registry = registry or load_registry()
    entry = registry.get(name)
    if not entry.files:
        raise BundleError(f"weights {name} have nothing to download (shipped with fer-annotate: {entry.shipped})")
    folder = cache_dir() / "downloads" / name
    folder.mkdir(parents=True, exist_ok=True)
    sums = read_sums(folder)
    for spec in entry.files:
        dest = folder / spec["name"]
        expected = spec.get("sha256") or sums.get(spec["name"], "")
        if dest.is_file() and expected and sha256_file(dest) == expected:
            continue
        sums[spec["name"]] = download(spec["url"], dest, expected, progress)
        if not spec.get("sha256"):
            log.warning("weights: %s has no published SHA-256; recorded %s on first download", dest.name,
                        sums[spec["name"]])
        write_sums(folder, sums)
    return import_weights(name, folder, registry)


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from an authors' .pth file, loaded with weights_only=True on the CPU."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt, truncated or pickled-code files
        if "weights_only" in str(exc):
            raise BundleError(f"{path}: not a plain state dict of tensors (it holds pickled Python objects, which "
                              "loading could execute); refused for safety") from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise BundleError(f"{path}: not a loadable PyTorch checkpoint ({type(exc).__name__}: {first[:200]})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BundleError(f"{path}: not a state dict of tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def _kind_hint(state: dict[str, torch.Tensor]) -> str:
    if any(".GRU_layer." in k for k in state):
        return " (it looks like a CNN-RNN checkpoint)"
    if any(k.startswith("backbone.model.") for k in state):
        return " (it looks like a CNN checkpoint)"
    return ""


def import_weights(name: str, folder: str | os.PathLike, registry: Registry | None = None) -> Bundle:
    """Convert the authors' .pth files in `folder` into the cached bundle for registry entry `name`.

    Uses the registry's file names when all are present, else every *.pth in the folder (sorted).
    Each file must match the network exactly (strict keys and shapes).
    """
    registry = registry or load_registry()
    entry = registry.get(name)
    if entry.network is None or entry.input is None:
        raise BundleError(f"weights {name} cannot be imported: the registry gives no network/input for it")
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleError(f"{folder}: folder not found")
    named = [folder / f["name"] for f in entry.files]
    files = named if named and all(p.is_file() for p in named) else sorted(folder.glob("*.pth"))
    if not files:
        expected = ", ".join(f["name"] for f in entry.files) or "*.pth"
        raise BundleError(f"{folder}: no checkpoints for {name} (expected {expected})")
    network = NetworkSpec(**entry.network)
    temporal = TemporalSpec(**entry.temporal)
    states = []
    for path in files:
        state = read_checkpoint(path)
        try:
            check_state_dict(network, temporal.kind, state, str(path))
        except BundleError as exc:
            raise BundleError(f"{exc}; not a {name} checkpoint{_kind_hint(state)}") from None
        states.append(state)
    provenance = {
        **entry.provenance,
        "source": entry.source,
        "licence": entry.licence,
        "imported_from": [{"file": p.name, "sha256": sha256_file(p)} for p in files],
        "command": f"fer-annotate weights import {name} {folder}",
    }
    return save_bundle(
        registry.location(name),
        states,
        name=name,
        network=network,
        input=InputSpec(**entry.input),
        au_names=entry.au_names or None,
        expr_names=entry.expr_names,
        va_bins=entry.va_bins,
        au_thresholds=entry.au_thresholds or None,
        temporal=temporal,
        provenance=provenance,
        overwrite=True,
    )


@dataclass
class Listing:
    """One row of `weights list`."""

    name: str
    kind: str  # shipped | download | local
    status: str  # available | not cached | missing
    path: Path
    description: str
    figures: dict = field(default_factory=dict)  # the manifest's measured accuracy, speed and size


def _figures(folder: Path) -> dict:
    """The `figures` of a bundle folder's manifest (empty when absent or unreadable)."""
    try:
        data = json.loads((folder / "bundle.json").read_text())
    except (OSError, ValueError):
        return {}
    return data.get("figures", {}) if isinstance(data, dict) and isinstance(data.get("figures"), dict) else {}


def list_weights(registry: Registry | None = None) -> list[Listing]:
    """Known bundles (registry) with their state, plus any other bundle folders found in the cache."""
    registry = registry or load_registry()
    rows = []
    for name, entry in registry.entries.items():
        where = registry.location(name)
        present = (where / "bundle.json").is_file()
        status = "available" if present else ("missing" if entry.shipped else "not cached")
        rows.append(Listing(name, "shipped" if entry.shipped else "download", status, where, entry.description,
                            _figures(where) if present else {}))
    cached = cache_dir() / "bundles"
    if cached.is_dir():
        for folder in sorted(cached.iterdir()):
            if folder.name not in registry.entries and (folder / "bundle.json").is_file():
                rows.append(Listing(folder.name, "local", "available", folder, "in the cache, not in the registry",
                                    _figures(folder)))
    return rows


def verify(name_or_path: str | os.PathLike, registry: Registry | None = None) -> Bundle:
    """Check a bundle completely: manifest, every member's SHA-256, and that each member loads strictly."""
    from fer_annotate.models.bundle import load_members

    bundle = resolve_bundle(name_or_path, registry)
    load_members(bundle, "cpu")
    return bundle
