"""Still images (JPEG, PNG, WebP, BMP, TIFF) as one-frame inputs, decoded with Pillow (torchvision's own
dependency; torchvision's libpng decoder fails on some PNGs once decord's libraries are loaded).

A photo is annotated like a video of one frame at time 0: same table, same sidecar. Its EXIF orientation is
applied, as photo viewers do, so that a phone's portrait shot is upright for the detector. Same contract as
the PyAV fallback as `video.Video` uses it: frame count, timestamps, rate (0: none), RGB frames by index.
"""

from pathlib import Path

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


class StillError(Exception):
    """An image file that cannot be decoded; the message says why (without the path)."""


class StillImage:
    """One decoded RGB image, served as frame 0."""

    def __init__(self, path: str | Path):
        from PIL import Image, ImageOps, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                image = ImageOps.exif_transpose(image)
                self.frame = np.ascontiguousarray(np.asarray(image.convert("RGB")))
        except UnidentifiedImageError:
            raise StillError("not a readable image (unknown format or corrupt data)") from None
        except (OSError, ValueError, SyntaxError) as exc:  # truncated data, bad headers, decoder errors
            raise StillError(f"not a readable image ({_first_line(exc)})") from None
        except Image.DecompressionBombError as exc:
            raise StillError(f"image too large ({_first_line(exc)})") from None
        self.height, self.width = self.frame.shape[:2]
        if self.height == 0 or self.width == 0:
            raise StillError("not a readable image (no pixels)")
        self.stamps = np.zeros((1, 2))
        self.avg_fps = 0.0

    def __len__(self) -> int:
        return 1

    def read(self, indices: list[int]) -> np.ndarray:
        """RGB frames [B, H, W, 3]: the image for index 0."""
        if any(i != 0 for i in indices):
            raise IndexError("an image has only frame 0")
        return np.stack([self.frame] * len(indices)) if indices else self.frame[None][:0]


def is_image(path: str | Path) -> bool:
    """Whether a path names a still image by its extension."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:120] if text else type(exc).__name__
