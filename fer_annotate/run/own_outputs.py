"""What this tool wrote is never taken for input: a folder run skips its own outputs.

With `--render DIR` or `--save-crops DIR` inside the input folder, the next run would otherwise annotate
the overlays (`clip.mp4.overlay.mp4.overlay.mp4`) and the face crops. Two rules:

- this run: nothing inside its output, overlay or crop folder is an input (when that folder lies inside
  an input folder; a folder that is the input folder itself, or above it, excludes nothing);
- any run: files named as this tool names its overlays (`*.overlay.mp4`) and crops (`NNNNNN_faceK.png`
  in a folder per video) are not inputs when found in a folder; given by name, they are.
"""

import re
from collections.abc import Iterable
from pathlib import Path

OVERLAY_SUFFIX = ".overlay.mp4"
CROP_NAME = re.compile(r"\d{6}_face\d+\.png")


def looks_like_ours(path: Path) -> bool:
    """Whether a file found in a folder is named as our overlays or face crops are."""
    name = path.name.lower()
    return name.endswith(OVERLAY_SUFFIX) or bool(CROP_NAME.fullmatch(name))


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def excluded_folders(root: Path, folders: Iterable[Path | None]) -> list[Path]:
    """The folders of this run (output, overlays, crops) strictly inside the input folder `root`."""
    base = root.resolve()
    found = []
    for folder in folders:
        if folder is None:
            continue
        resolved = Path(folder).resolve()
        if resolved != base and _inside(resolved, base):
            found.append(resolved)
    return found


def drop_own_outputs(videos: list[Path], root: Path, folders: Iterable[Path | None]) -> list[Path]:
    """The videos found under `root` less this run's output folders and files named as our outputs."""
    skip = excluded_folders(root, folders)
    return [v for v in videos
            if not looks_like_ours(v) and not any(_inside(v.resolve(), folder) for folder in skip)]
