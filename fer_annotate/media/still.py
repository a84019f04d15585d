"""Still images (JPEG, PNG, WebP, BMP, TIFF) as one-frame inputs, decoded with Pillow (torchvision's own
dependency; torchvision's libpng decoder fails on some PNGs once decord's libraries are loaded).

A photo is annotated like a video of one frame at time 0: same table, same sidecar. Its EXIF orientation is
applied, as photo viewers do, so that a phone's portrait shot is upright for the detector. Every mode Pillow
opens becomes 8-bit RGB as a viewer shows it (`rgb8`): 16-bit, 32-bit and float greyscale scaled from their
range (Pillow's own conversion clips them, so a 16-bit PNG would read as all white), transparency over white.
Same contract as the PyAV fallback as `video.Video` uses it: frame count, timestamps, rate (0: none), RGB
frames by index.
"""

import re
import warnings
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
            with warnings.catch_warnings():  # a large image is fine up to the limit below, no library warning
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as image:
                    image = ImageOps.exif_transpose(image)
                    self.frame = np.ascontiguousarray(rgb8(image))
        except UnidentifiedImageError:
            raise StillError("not a readable image (unknown format or corrupt data)") from None
        except Image.DecompressionBombError as exc:
            size = re.search(r"\((\d+) pixels\)", str(exc))
            found = f"{int(size.group(1)) / 1e6:.0f} megapixels, " if size else ""
            raise StillError(f"image too large ({found}over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f}, the most "
                             "Pillow decodes: a guard against decompression bombs)") from None
        except (OSError, ValueError, SyntaxError) as exc:  # truncated data, bad headers, decoder errors
            raise StillError(f"not a readable image ({_first_line(exc)})") from None
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


def rgb8(image) -> np.ndarray:
    """A Pillow image of any mode as 8-bit RGB [H, W, 3]."""
    from PIL import Image

    mode = image.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        grey = _grey8(np.asarray(image).astype(np.float64), mode)
        return np.repeat(grey[..., None], 3, axis=2)
    if "A" in mode or "a" in mode or "transparency" in image.info:  # LA, La, RGBA, RGBa, PA, P/L/RGB with a key
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(image.convert("RGB"))


def _grey8(grey: np.ndarray, mode: str) -> np.ndarray:
    """Wide greyscale to 0-255: 16-bit modes by their full scale; 32-bit integers and floats by the scale
    their values fit (0-1, 0-255, 0-65535 for integers), else stretched from their minimum to maximum."""
    grey = np.nan_to_num(grey, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = (float(grey.min()), float(grey.max())) if grey.size else (0.0, 0.0)
    if mode.startswith("I;16") or (mode == "I" and low >= 0 and 255 < high <= 65535):
        scale, offset = 255 / 65535, 0.0
    elif mode == "F" and low >= 0 and high <= 1:
        scale, offset = 255.0, 0.0
    elif low >= 0 and high <= 255:
        scale, offset = 1.0, 0.0
    else:
        scale, offset = 255 / max(high - low, 1e-12), low
    return np.clip(np.rint((grey - offset) * scale), 0, 255).astype(np.uint8)


def is_image(path: str | Path) -> bool:
    """Whether a path names a still image by its extension."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:120] if text else type(exc).__name__
