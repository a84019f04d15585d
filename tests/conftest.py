"""Shared fixtures: the ../shared media, skipped with a reason where it is absent."""

import os
from pathlib import Path

import cv2  # noqa: F401  before decord: decord's bundled libraries, loaded first, break cv2.imread of PNGs
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The workplace's ../shared folder (fixture videos, images, detector weights)."""
    if not (SHARED / "fixtures").is_dir():
        pytest.skip(f"needs {SHARED} (fixture media and detector weights); absent on this machine")
    return SHARED


@pytest.fixture(scope="session")
def torch_home(shared_dir: Path) -> Path:
    """TORCH_HOME holding face-alignment's BlazeFace weights, so detectors load offline."""
    home = shared_dir / "torch-home"
    if not (home / "hub" / "checkpoints" / "blazeface.pth").is_file():
        pytest.skip(f"needs BlazeFace weights in {home}/hub/checkpoints")
    os.environ["TORCH_HOME"] = str(home)
    return home
