"""What a run does with an output that exists: keep it, redo it, or refuse to touch it.

- complete for this video and these settings: kept (the run skips the video);
- ours, but of another video or a changed one (the sidecar's source differs): redone, as resuming a
  folder whose videos were replaced should;
- ours, complete, but made with other settings: refused, naming the settings (`--overwrite` redoes it);
- anything else (no sidecar, a sidecar not ours or not complete): refused, since it may be a file the
  user cares about (`--overwrite` replaces it).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from fer_annotate.outputs.output import sidecar_path, source_record
from fer_annotate.run.settings import SIDECAR_KEY, differing

TOOL = "fer-annotate"


@dataclass
class Existing:
    """The state of an output before a run: `absent`, `complete`, `stale` (redo), `settings` or `foreign`."""

    state: str
    fields: list[str] = field(default_factory=list)  # the differing settings, for `settings`

    def refusal(self, output: Path) -> str:
        """The one-line reason a run without --overwrite leaves this output alone ('' when it may go on)."""
        if self.state == "settings":
            return f"{output}: exists with other settings: {', '.join(self.fields)}; --overwrite to redo"
        if self.state == "foreign":
            return (f"{output}: exists without a complete fer-annotate sidecar ({sidecar_path(output).name}), "
                    "so it is not ours or was left by an interrupted run; --overwrite to replace it")
        return ""


def _read_meta(output: Path) -> dict | None:
    try:
        meta = json.loads(sidecar_path(output).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def examine(output: Path, video: Path, settings: dict) -> Existing:
    """Classify an existing `output` against the run about to annotate `video` with `settings`."""
    output = Path(output)
    if not output.exists() and not output.is_symlink():
        return Existing("absent")
    meta = _read_meta(output)
    if meta is None or meta.get("tool") != TOOL or meta.get("complete") is not True:
        return Existing("foreign")
    source = meta.get("source") if isinstance(meta.get("source"), dict) else {}
    try:
        now = source_record(Path(video))
    except OSError:
        return Existing("stale")  # the video is unreadable: the run reports that
    if any(source.get(k) != now[k] for k in ("size", "mtime_ns", "sha256_head")):
        return Existing("stale")
    differ = differing(meta.get(SIDECAR_KEY), settings)
    return Existing("settings", differ) if differ else Existing("complete")
