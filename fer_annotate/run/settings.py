"""The annotation settings that decide a table's content, as the sidecar records them.

A rerun finds an output complete only when the video and these settings are the same: another bundle,
`--every 3` or `--end 1` make another table. Settings that change only how the work is done (device,
threads, workers, batch size) or what else is written (`--save-crops`) are left out, so that a rerun on
a GPU or with more workers still resumes. Names are the CLI's options (`every`, `detect-every`, `weights`);
settings without an option keep their config path (`tracker.iou-threshold`).
"""

import json
from dataclasses import fields, is_dataclass
from typing import TYPE_CHECKING

from fer_annotate.faces.geometry import GeometryConfig

if TYPE_CHECKING:
    from fer_annotate.models.model import ModelStage

SIDECAR_KEY = "settings"

# config path -> the CLI option a user knows it by
OPTION_NAMES = {
    "fmt": "format",
    "detector.name": "detector",
    "detector.score_threshold": "score-threshold",
    "detector.min_face": "min-face",
    "sampling.start_s": "start",
    "sampling.end_s": "end",
    "sampling.every": "every",
    "sampling.fps": "fps",
    "tracker.min_hits": "min-hits",
    "tracker.confirm_score": "confirm-score",
    "tracker.max_misses": "max-misses",
    "sparse.every": "detect-every",
    "geometry.model": "geometry-model",
    "geometry.landmarks": "landmarks",
}
# how the work is done, not what it gives
COSMETIC = {"batch_size", "max_frame_bytes", "device", "decode_threads", "parallel_stages", "save_crops",
            "detector.device"}


def _name(path: str) -> str:
    return OPTION_NAMES.get(path, path.replace("_", "-"))


def _flatten(prefix: str, value: object, into: dict[str, object]) -> None:
    for f in fields(value):
        path = f"{prefix}{f.name}"
        if path in COSMETIC:
            continue
        item = getattr(value, f.name)
        if is_dataclass(item):
            _flatten(f"{path}.", item, into)
        else:
            into[_name(path)] = item


def weights_identity(model: "ModelStage | None") -> str:
    """`none`, or the bundle's name and a hash of its manifest (member checksums, thresholds, input spec)."""
    if model is None:
        return "none"
    return f"{model.bundle.name} (manifest sha256 {model.manifest_sha256[:16]})"


def content_settings(config: object, model: "ModelStage | None" = None, geometry_sha256: str | None = None) -> dict:
    """The settings of an AnnotateConfig and model that decide the table, JSON-ready, keyed by option name."""
    flat: dict[str, object] = {}
    geometry = getattr(config, "geometry", None)
    _flatten("", config, flat)  # a GeometryConfig is flattened here when the stage is on
    if geometry is None:
        _flatten("geometry.", GeometryConfig(), flat)
    flat["geometry"] = "none" if geometry is None else "mediapipe"
    if geometry is not None and geometry_sha256 is not None:
        flat["geometry-model"] = f"sha256 {geometry_sha256[:16]}"  # the file's content, not its path
    flat["weights"] = weights_identity(model)
    smooth = model.smooth if model is not None else None
    flat["smooth"] = "none" if smooth is None or smooth.kind == "none" else \
        f"{smooth.kind}:{smooth.sigma_s:g}:{smooth.max_gap_s:g}"
    return json.loads(json.dumps(flat, default=str))


def differing(recorded: object, current: dict) -> list[str]:
    """The names of the settings that differ; ["settings"] when the sidecar records none (an older output)."""
    if not isinstance(recorded, dict):
        return ["settings (not recorded: an output of an older version)"]
    return sorted(k for k in set(recorded) | set(current) if recorded.get(k) != current.get(k))
