"""Still images in every mode Pillow opens read as the 8-bit RGB picture a viewer shows, and the face in
them is found: a real fixture face saved as 16-bit, 32-bit and float greyscale, with alpha, with a palette,
as CMYK and as bilevel."""

from pathlib import Path

import numpy as np
import pytest
from cli_run import invoke, read_table
from PIL import Image

from fer_annotate.media.still import StillImage

# mode -> how the face is saved in it, and how close its reading must be: mean |grey difference| of 8x8
# block means (palette and bilevel images are dithered: right on average over a few pixels)
MODES = {
    "I;16": ("png", 1.0),
    "I": ("tiff", 1.0),
    "F": ("tiff", 1.0),
    "LA": ("png", 1.0),
    "P": ("png", 2.0),
    "CMYK": ("jpg", 2.0),
    "RGBA": ("png", 1.0),
    "1": ("png", 6.0),
}


def blocks(grey: np.ndarray, size: int = 8) -> np.ndarray:
    h, w = (n // size * size for n in grey.shape)
    return grey[:h, :w].reshape(h // size, size, w // size, size).mean(axis=(1, 3))


def face_in(mode: str, face: Image.Image, folder: Path) -> Path:
    """`face` saved in `mode`; the alpha modes are transparent outside a frame around the face's middle,
    the wide greyscale modes hold the 8-bit levels at their full scale (16-bit: 0-65535, float: 0-1)."""
    grey = np.asarray(face.convert("L"))
    if mode in ("I;16", "I"):
        image = Image.fromarray((grey.astype(np.int32) * 257).astype(np.uint16 if mode == "I;16" else np.int32))
    elif mode == "F":
        image = Image.fromarray((grey / 255).astype(np.float32))
    else:
        image = face.convert(mode)
    if "A" in mode:
        alpha = np.zeros(grey.shape, np.uint8)
        alpha[40:-40, 40:-40] = 255
        image.putalpha(Image.fromarray(alpha))
    assert image.mode == mode, f"built {image.mode}, not {mode}"
    path = folder / f"face_{mode.replace(';', '')}.{MODES[mode][0]}"
    image.save(path)
    return path


def expected_grey(mode: str, face: Image.Image) -> np.ndarray:
    grey = np.asarray(face.convert("L")).astype(np.float64)
    if "A" in mode:
        shown = np.full_like(grey, 255.0)  # transparent: white, as viewers show it
        shown[40:-40, 40:-40] = grey[40:-40, 40:-40]
        return shown
    return grey


@pytest.fixture(scope="module")
def face(shared_dir: Path) -> Image.Image:
    return Image.open(shared_dir / "fixtures" / "images" / "grace_hopper.jpg").convert("RGB")


@pytest.mark.parametrize("mode", list(MODES))
def test_every_mode_reads_as_the_picture(mode: str, face: Image.Image, tmp_path: Path) -> None:
    path = face_in(mode, face, tmp_path)
    assert Image.open(path).mode == mode or mode == "CMYK", f"{path.name} opens as {Image.open(path).mode}"
    frame = StillImage(path).frame
    assert frame.dtype == np.uint8 and frame.shape == (face.height, face.width, 3)
    grey = frame.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    error = float(np.abs(blocks(grey) - blocks(expected_grey(mode, face))).mean())
    assert error < MODES[mode][1], f"{mode}: mean grey error {error:.1f} (read mean {grey.mean():.0f})"


@pytest.mark.slow
def test_the_face_is_found_in_every_mode(face: Image.Image, torch_home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    paths = [face_in(mode, face, folder) for mode in MODES]
    result = invoke([folder, "-o", tmp_path / "out", "--weights", "none"])
    assert result.exit_code == 0, result.describe()
    for path in paths:
        table = read_table(tmp_path / "out" / (path.name + ".csv"))
        assert (table["status"] == "ok").sum() == 1, f"{path.name}: {list(table['status'])}"
