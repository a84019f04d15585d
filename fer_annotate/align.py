"""Align faces: a similarity transform from detector keypoints onto the bundle's crop template, warped in
batches on the device.

Keypoints are four points in frame pixels: right eye (image left), left eye, nose tip, mouth centre. The
template holds the same four points in unit crop coordinates. Where a detector gives no keypoints, the
crop is a square around the box centre, `box_scale` times the box side. Large faces are sampled from an
average-pooled pyramid level so that shrinking them does not alias.
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

POINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_centre")


@dataclass
class CropTemplate:
    """Where the face lands in the crop: unit coordinates of the four points, and the box-crop scale."""

    points: np.ndarray
    size: int = 112
    box_scale: float = 1.0

    def __post_init__(self) -> None:
        self.points = np.asarray(self.points, dtype=np.float64).reshape(len(POINT_NAMES), 2)


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation) taking src to dst; 2x3."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    fix = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        fix[1, 1] = -1
    rot = u @ fix @ vt
    var = (s**2).sum() / len(src)
    scale = (sig * np.diag(fix)).sum() / var if var > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


def box_transform(box: np.ndarray, template: CropTemplate) -> np.ndarray:
    """Frame -> crop transform for a square around the box centre, box_scale times its longer side."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = max(box[2] - box[0], box[3] - box[1], 1.0) * template.box_scale
    k = template.size / side
    return np.array([[k, 0, template.size / 2 - k * cx], [0, k, template.size / 2 - k * cy]])


def face_transforms(boxes: np.ndarray, keypoints: np.ndarray | None, template: CropTemplate) -> np.ndarray:
    """Frame -> crop similarity transforms [M,2,3]: from keypoints where given, else from boxes."""
    dst = template.points * template.size
    out = np.zeros((len(boxes), 2, 3))
    for i, box in enumerate(boxes):
        if keypoints is not None and np.all(np.isfinite(keypoints[i])):
            out[i] = umeyama(np.asarray(keypoints[i], dtype=np.float64), dst)
        else:
            out[i] = box_transform(np.asarray(box, dtype=np.float64), template)
    return out


def _invert(m: np.ndarray) -> np.ndarray:
    """Inverse of 2x3 affine maps [M,2,3]."""
    a = m[:, :, :2]
    inv = np.linalg.inv(a)
    t = -np.einsum("mij,mj->mi", inv, m[:, :, 2])
    return np.concatenate([inv, t[:, :, None]], axis=2)


def warp_crops(
    frames: torch.Tensor, frame_idx: np.ndarray, transforms: np.ndarray, size: int, chunk: int = 32
) -> torch.Tensor:
    """Warp faces out of frames [B,H,W,3] uint8 (any device) into crops [M,3,size,size] uint8."""
    m = len(frame_idx)
    device = frames.device
    if m == 0:
        return torch.zeros((0, 3, size, size), dtype=torch.uint8, device=device)
    inv = _invert(np.asarray(transforms, dtype=np.float64))
    scale = np.sqrt(np.abs(np.linalg.det(inv[:, :, :2])))
    level = np.clip(np.floor(np.log2(np.maximum(scale, 1.0))), 0, 4).astype(int)
    axis = torch.arange(size, dtype=torch.float64)
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    base = torch.stack([xs + 0.5, ys + 0.5, torch.ones_like(xs)], dim=-1).reshape(-1, 3)
    out = torch.empty((m, 3, size, size), dtype=torch.uint8, device=device)
    for s in range(0, m, chunk):
        sl = slice(s, s + chunk)
        fi = torch.as_tensor(frame_idx[sl], device=device, dtype=torch.long)
        images = frames[fi].permute(0, 3, 1, 2).float()
        src = torch.einsum("pk,mjk->mpj", base, torch.from_numpy(inv[sl]))
        crops = torch.empty((len(fi), 3, size, size), device=device)
        for lv in np.unique(level[sl]):
            pick = np.flatnonzero(level[sl] == lv)
            img = images[pick]
            if lv > 0:
                img = F.avg_pool2d(img, kernel_size=2**lv, stride=2**lv, ceil_mode=True)
            lh, lw = img.shape[2:]
            g = src[pick].clone()
            g[..., 0] = g[..., 0] / (lw * 2**lv) * 2 - 1
            g[..., 1] = g[..., 1] / (lh * 2**lv) * 2 - 1
            grid = g.reshape(len(pick), size, size, 2).to(device=device, dtype=torch.float32)
            crops[torch.as_tensor(pick, device=device)] = F.grid_sample(
                img, grid, mode="bilinear", padding_mode="border", align_corners=False
            )
        out[sl] = crops.round().clamp(0, 255).to(torch.uint8)
    return out
