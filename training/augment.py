"""Per-sample augmentation and normalisation of uint8 image batches, as tensor ops on the device.

One affine warp per image (random zoom-in crop, shift, optional rotation, horizontal flip) done for
the whole batch with `affine_grid` / `grid_sample`: the paper's "resize to 134, random 112 crop, flip",
but drawn per sample (the authors' code drew one crop for the whole run by mistake); then optional
random erasing of a rectangle. The flips and rotations drawn are returned, because they change
geometric targets: a mirrored face swaps its left and right blendshapes and negates yaw and roll, and a
face turned counter-clockwise by a degrees has a degrees more roll.
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
    contrast jitter of relative amplitude `colour` (0 = off), random erasing with probability `erase`."""

    zoom_min: float = 1.0
    zoom_max: float = 134 / 112
    flip: bool = True
    rotate: float = 0.0
    colour: float = 0.0
    erase: float = 0.0  # probability of erasing one random rectangle (2-20 % of the image) per image


@dataclass
class Drawn:
    """The per-image geometry an augmentation drew: horizontal flips [N] bool and the counter-clockwise
    rotation of the content as seen [N] in degrees (applied before the flip)."""

    flip: Tensor
    rotation: Tensor


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


def augment(images: Tensor, spec: AugmentSpec, generator: torch.Generator | None = None) -> tuple[Tensor, Drawn]:
    """Randomly warped copies of uint8 images [N, C, H, W] as float in 0..255, same size, and what was drawn."""
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
    if spec.erase > 0:
        x = _erase(x, spec.erase, uniform)
    # affine_grid maps output to input coordinates (y down): the content turns by -angle, i.e.
    # counter-clockwise as seen for angle > 0, and is mirrored after that.
    return x, Drawn(flip=flip < 0, rotation=angle * (180.0 / math.pi))


def _erase(x: Tensor, p: float, uniform) -> Tensor:
    """Fill one random rectangle (2-20 % of the area, aspect 0.3-3.3) with a random grey, in a fraction p of images."""
    n, _, h, w = x.shape
    area = uniform(0.02, 0.2)
    aspect = torch.exp(uniform(math.log(0.3), math.log(3.3)))
    eh = (torch.sqrt(area * aspect) * h).clamp(1, h)
    ew = (torch.sqrt(area / aspect) * w).clamp(1, w)
    y0 = uniform(0.0, 1.0) * (h - eh)
    x0 = uniform(0.0, 1.0) * (w - ew)
    on = uniform(0.0, 1.0) < p
    ys = torch.arange(h).view(1, h, 1)
    xs = torch.arange(w).view(1, 1, w)
    inside = ((ys >= y0.view(n, 1, 1)) & (ys < (y0 + eh).view(n, 1, 1)) & (xs >= x0.view(n, 1, 1))
              & (xs < (x0 + ew).view(n, 1, 1)) & on.view(n, 1, 1))
    grey = uniform(0.0, 255.0).view(n, 1, 1, 1).expand_as(x)
    return torch.where(inside.unsqueeze(1).to(x.device), grey.to(x.device), x)


def follow_geometry(task: str, target: Tensor, flip: Tensor, rotation: Tensor, mirror: list[int]) -> Tensor:
    """Targets of augmented images: BS scores of mirrored faces swap sides; POSE roll gains the rotation,
    then mirrored faces negate yaw and roll. Other tasks are unchanged. flip, rotation: [N] per target row."""
    if task == "BS":
        return torch.where(flip.view(-1, 1), target[:, mirror], target)
    if task == "POSE":
        yaw, pitch, roll = target.unbind(1)
        roll = roll + rotation
        sign = torch.where(flip, -1.0, 1.0)
        return torch.stack([yaw * sign, pitch, roll * sign], 1)
    return target


def prepare(
    images: Tensor,
    norm: Normalise,
    spec: AugmentSpec | None = None,
    generator: torch.Generator | None = None,
    channels_last: bool = False,
) -> tuple[Tensor, Drawn | None]:
    """uint8 [N, H, W, C] batch -> normalised network input [N, C, H, W], augmented when spec is given
    (then with what the augmentation drew, else None)."""
    x = images.permute(0, 3, 1, 2)
    drawn = None
    if spec is not None:
        x, drawn = augment(x, spec, generator)
    x = normalise(x, norm)
    return (x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()), drawn
