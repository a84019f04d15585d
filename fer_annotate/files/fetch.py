"""The cache folder, file checksums and verified atomic downloads, shared by every stage that fetches a file.

Bundles (models/) and the face landmarker's model (faces/) are both fetched into the cache on first use;
this module is the one place that knows where the cache is and how a download is checked and kept.
"""

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path


class DownloadError(Exception):
    """A download that failed or did not match its checksum; the message is one line naming the URL."""


def cache_dir() -> Path:
    """The cache folder: $FER_ANNOTATE_CACHE, else ~/.cache/fer-annotate."""
    return Path(os.environ.get("FER_ANNOTATE_CACHE") or Path.home() / ".cache" / "fer-annotate").expanduser()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, dest: Path, sha256: str = "", progress: bool = True) -> str:
    """Fetch url to dest atomically (temporary file, then rename); verify sha256 if given. Returns the SHA-256.

    Nothing is left at dest or beside it when the download fails or the checksum differs.
    """
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part-{os.getpid()}")
    digest = hashlib.sha256()
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as f:
            total = int(response.headers.get("Content-Length") or 0) or None
            with Progress(*columns, disable=not progress) as bar:
                task = bar.add_task(dest.name, total=total)
                while chunk := response.read(1 << 20):
                    f.write(chunk)
                    digest.update(chunk)
                    bar.advance(task, len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"{url}: download failed ({reason})") from None
    got = digest.hexdigest()
    if sha256 and got != sha256:
        tmp.unlink(missing_ok=True)
        raise DownloadError(f"{url}: SHA-256 mismatch (expected {sha256[:12]}..., got {got[:12]}...); file not kept")
    os.replace(tmp, dest)
    return got
