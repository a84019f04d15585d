"""Whether a video is the one a table annotates: the sidecar records its source's size and the SHA-256 of
its first MiB (`output.source_record`); a copy or a rename of the video still matches, another video of
the same length and size does not."""

from pathlib import Path

from fer_annotate.outputs.output import source_record


def source_mismatch(video: Path, table: Path, meta: dict) -> str:
    """'' when `video` is the source recorded in `table`'s sidecar `meta` (or the sidecar records none),
    else one line saying that the table annotates another video."""
    recorded = meta.get("source")
    if not isinstance(recorded, dict) or not recorded.get("sha256_head"):
        return ""
    try:
        now = source_record(Path(video))
    except OSError:
        return ""  # a missing or unreadable video: the decoder names that problem
    if all(recorded.get(k) == now[k] for k in ("size", "sha256_head")):
        return ""
    return (f"{table}: annotates {recorded.get('path', 'another video')}, not {video} (their contents differ: "
            f"size {recorded.get('size')} vs {now['size']} bytes or another SHA-256 of the first MiB)")
