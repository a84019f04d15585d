"""One run per output at a time: an O_EXCL lock file beside the output, holding the owner's pid and host.

Two runs on one output folder (or the workers of a distributed run) split the videos instead of doing
each twice: whoever creates `.NAME.lock` first annotates NAME, the others skip it. The lock is removed
when the run ends; one left by a killed run is stale once its pid is gone (checked on the same host only:
a lock from another host is respected until removed by hand).
"""

import os
import socket
from pathlib import Path

from fer_annotate.outputs.names import short_stem
from fer_annotate.outputs.output import remove_path, stale_temps


def lock_path(output: Path) -> Path:
    """Where the lock of an output lives (`.NAME.lock`, NAME shortened when long: names.short_stem)."""
    return output.with_name(f".{short_stem(output.name)}.lock")


class Locked(Exception):
    """Another live run holds the output; the message says who."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner(path: Path) -> tuple[int, str] | None:
    """(pid, host) written in a lock file, or None when it cannot be read (being written, or removed)."""
    try:
        pid, host = path.read_text().split()[:2]
        return int(pid), host
    except (OSError, ValueError):
        return None


class OutputLock:
    """Context manager: take the output's lock or raise Locked; on entry, remove the output's stale temporary
    files (no other run can be writing them while we hold the lock); on exit, release the lock."""

    def __init__(self, output: Path):
        self.output = Path(output)
        self.path = lock_path(self.output)
        self.host = socket.gethostname()

    def __enter__(self) -> "OutputLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                owner = _owner(self.path)
                stale = owner is not None and owner[1] == self.host and not _alive(owner[0])
                if attempt == 0 and stale:
                    self.path.unlink(missing_ok=True)
                    continue
                who = f"pid {owner[0]} on {owner[1]}" if owner else "another run"
                raise Locked(f"being annotated by {who} (lock {self.path})") from None
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()} {self.host}\n")
            break
        for temp in stale_temps(self.output):
            remove_path(temp)
        return self

    def __exit__(self, *exc: object) -> None:
        owner = _owner(self.path)
        if owner == (os.getpid(), self.host):
            self.path.unlink(missing_ok=True)
