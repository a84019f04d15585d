"""File names beside an output that must fit the file system's limit on one name (255 bytes on most).

An output may have any legal name, but its temporary files (`.NAME.<pid>-<random>.partial`), its lock
(`.NAME.lock`) and its sidecar (`NAME.json`) are longer. Temporary and lock names use a short stem for a
long NAME (a prefix and a hash of the whole name, so still one per output); the sidecar's name is part of
the output format, so an output whose sidecar name would not fit is refused before any work.
"""

import hashlib
import os
from pathlib import Path

NAME_MAX = 255  # bytes, when the file system does not say
SIDECAR_SUFFIX = ".json"
STEM_ROOM = 200  # bytes of a name kept as is in temporary and lock names (room for the pid, random, suffix)
HASH_CHARS = 16


class OutputNameError(Exception):
    """An output (or its sidecar) whose name this file system cannot hold; the message names the file."""


def name_max(folder: Path) -> int:
    """The longest file name (bytes) in `folder`, or in its nearest existing ancestor."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return NAME_MAX


def _fs_bytes(name: str) -> bytes:
    return os.fsencode(name)


def short_stem(name: str) -> str:
    """`name` itself when it is short, else a prefix of it, `~` and a hash of the whole name (same for the
    same name, so that locks and stale temporary files are found again)."""
    raw = _fs_bytes(name)
    if len(raw) <= STEM_ROOM:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:HASH_CHARS]
    prefix = raw[: STEM_ROOM - HASH_CHARS - 1]
    try:
        text = prefix.decode("utf-8", "ignore") if raw.decode("utf-8") else ""  # no character cut in two
    except UnicodeDecodeError:
        text = os.fsdecode(prefix)  # a name that is not UTF-8: its bytes as they are
    return f"{text}~{digest}"


def check_names(output: Path) -> None:
    """Raise OutputNameError when the output or its sidecar cannot be created for the length of its name."""
    output = Path(output)
    limit = name_max(output.parent)
    longest = len(_fs_bytes(output.name + SIDECAR_SUFFIX))
    if longest > limit:
        raise OutputNameError(
            f"{output}: file name too long for this file system ({longest - len(SIDECAR_SUFFIX)} bytes; with "
            f"its sidecar's {SIDECAR_SUFFIX} it needs {longest}, at most {limit} fit); give a shorter -o or "
            "rename the video")
