"""Build the awkward inputs a user meets: images renamed as videos, raw streams, tiny videos, odd names."""

from pathlib import Path

import av
import numpy as np
from PIL import Image


def make_video(path: Path, width: int = 96, height: int = 64, frames: int = 10, fps: int = 10,
               container: str | None = None) -> Path:
    """A valid H.264 video of flat grey frames (no face), written with PyAV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            pixels = np.full((height, width, 3), (30 + 15 * i) % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def make_image_as(path: Path, kind: str) -> Path:
    """A JPEG or PNG image saved under a video name (e.g. `photo.mp4`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8)
    Image.fromarray(pixels).save(path, format=kind)
    return path


def make_raw_h264(path: Path) -> Path:
    """An H.264 elementary stream without a container (no timestamps, no index)."""
    return make_video(path, frames=6, container="h264")
