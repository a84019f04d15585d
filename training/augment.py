"""Per-sample augmentation and normalisation of uint8 image batches, as tensor ops on the device.

One affine warp per image (random zoom-in crop, shift, optional rotation, horizontal flip) done for
the whole batch with `affine_grid` / `grid_sample`: the paper's "resize to 134, random 112 crop, flip",
but drawn per sample (the authors' code drew one crop for the whole run by mistake).
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class AugmentSpec:
    """Random crop as a zoom in [zoom_min, zoom_max] (1.196 = the paper's 112 of 134) at a random
    position inside the image, horizontal flip, rotation up to `rotate` degrees, and brightness /
    contrast jitter of relative amplitude `colour` (0 = off)."""

    zoom_min: float = 1.0
    zoom_max: float = 134 / 112
    flip: bool = True
    rotate: float = 0.0
    colour: float = 0.0


@dataclass
class Normalise:
    """Network input = (uint8 / 255 * scale - mean) / std per channel (the bundle's InputSpec)."""

    scale: float
    mean: list[float]
    std: list[float]


def normalise(x: Tensor, norm: Normalise) -> Tensor:
    """Pixel values 0..255 [N, C, H, W] (uint8 or float) -> normalised float network input."""
    mean = torch.tensor(norm.mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(norm.std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return (x.float() * (norm.scale / 255.0) - mean) / std


def augment(images: Tensor, spec: AugmentSpec, generator: torch.Generator | None = None) -> Tensor:
    """Randomly warped copies of uint8 images [N, C, H, W] as float in 0..255, same size."""
    n = images.shape[0]
    x = images.float()
    dev = "cpu"

    def uniform(lo: float, hi: float) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator, device=dev)

    zoom = uniform(spec.zoom_min, spec.zoom_max)
    s = 1.0 / zoom  # side of the sampled window relative to the image
    angle = uniform(-spec.rotate, spec.rotate) * (math.pi / 180.0)
    room = (1.0 - s).clamp(min=0.0)
    tx = uniform(-1.0, 1.0) * room
    ty = uniform(-1.0, 1.0) * room
    flip = torch.where(torch.rand(n, generator=generator, device=dev) < 0.5, -1.0, 1.0)
    flip = flip if spec.flip else torch.ones(n)
    cos, sin = torch.cos(angle) * s, torch.sin(angle) * s
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1
    ).to(images.device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if spec.colour > 0:
        gain = uniform(1 - spec.colour, 1 + spec.colour).view(n, 1, 1, 1).to(images.device)
        bias = (uniform(-spec.colour, spec.colour) * 64).view(n, 1, 1, 1).to(images.device)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * gain + mean + bias).clamp(0, 255)
    return x


def prepare(
    images: Tensor,
    norm: Normalise,
    spec: AugmentSpec | None = None,
    generator: torch.Generator | None = None,
    channels_last: bool = False,
) -> Tensor:
    """uint8 [N, H, W, C] batch -> normalised network input [N, C, H, W], augmented when spec is given."""
    x = images.permute(0, 3, 1, 2)
    x = normalise(x if spec is None else augment(x, spec, generator), norm)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()
