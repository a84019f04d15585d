"""Bundles made from other bundles' members: the bundle family (one network, a network with flip
test-time augmentation, a teacher with its students) without retraining anything, and the figures
(accuracy, speed, size) that `fer-annotate weights list` prints, written into a bundle's manifest.
"""

import json
import os
from pathlib import Path

from fer_annotate.models.bundle import MANIFEST, Bundle, BundleError, load_bundle, load_state, save_bundle


def pack_bundle(sources: list[str | Path], out: str | Path, name: str, tta: str = "none",
                members: list[int] | None = None, overwrite: bool = False) -> Bundle:
    """A bundle of the members of `sources` (all of them in order, or those at the `members` positions of
    that list), with test-time augmentation `tta`. The sources must see the same crops and have the same
    heads; their provenance is kept under provenance.packed_from."""
    bundles = [load_bundle(s) for s in sources]
    first = bundles[0]
    for other in bundles[1:]:
        same = (other.network, other.input, other.tasks, other.bs_names, other.expr_names, other.au_names)
        if same != (first.network, first.input, first.tasks, first.bs_names, first.expr_names, first.au_names):
            raise BundleError(f"{other.path}: network, input or labels differ from {first.path}; cannot pack them")
    pool = [(b, m) for b in bundles for m in b.members]
    chosen = list(range(len(pool))) if members is None else members
    bad = [i for i in chosen if not 0 <= i < len(pool)]
    if bad or not chosen:
        raise BundleError(f"--members {chosen}: the sources have members 0..{len(pool) - 1}")
    states = [load_state(*pool[i]) for i in chosen]
    provenance = {"packed_from": [{"bundle": b.name, "path": str(b.path), "member": m.file, "sha256": m.sha256,
                                   "provenance": b.provenance} for b, m in (pool[i] for i in chosen)]}
    return save_bundle(out, states, name=name, network=first.network, input=first.input, version="1",
                       au_names=first.au_names, expr_names=first.expr_names, va_bins=first.va_bins,
                       au_thresholds=first.au_thresholds, temporal=first.temporal, provenance=provenance,
                       overwrite=overwrite, bs_names=first.bs_names, tta=tta)


def bundle_size_mb(bundle: Bundle) -> float:
    """Megabytes of the bundle's member files (what inference loads)."""
    return sum(p.stat().st_size for p in bundle.member_paths()) / 1e6


def write_figures(bundle_path: str | Path, figures: dict) -> dict:
    """Merge figures into the manifest's `figures` (atomically; the members are untouched); returns them."""
    manifest = Path(bundle_path) / MANIFEST
    load_bundle(bundle_path, verify=False)  # a valid bundle before and after
    data = json.loads(manifest.read_text())
    data["figures"] = {**data.get("figures", {}), **figures}
    tmp = manifest.with_name(f".{MANIFEST}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, manifest)
    return data["figures"]
