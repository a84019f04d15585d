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


def warp_crops(frames: torch.Tensor, frame_idx: np.ndarray, transforms: np.ndarray, size: int) -> torch.Tensor:
    """Warp faces out of frames [B,H,W,3] uint8 (any device) into crops [M,3,size,size] uint8.

    Each face reads only the frame region its crop covers, so the cost follows the face count and crop
    size, not the frame resolution; that region is average-pooled by 2^k first when the face is 2^k or
    more times larger than the crop.
    """
    m = len(frame_idx)
    device = frames.device
    out = torch.empty((m, 3, size, size), dtype=torch.uint8, device=device)
    if m == 0:
        return out
    inv = _invert(np.asarray(transforms, dtype=np.float64))
    scale = np.sqrt(np.abs(np.linalg.det(inv[:, :, :2])))
    level = np.clip(np.floor(np.log2(np.maximum(scale, 1.0))), 0, 4).astype(int)
    axis = torch.arange(size, dtype=torch.float64)
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    base = torch.stack([xs + 0.5, ys + 0.5, torch.ones_like(xs)], dim=-1).reshape(-1, 3)
    src = torch.einsum("pk,mjk->mpj", base, torch.from_numpy(inv)).reshape(m, size, size, 2)
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], dtype=np.float64)
    h, w = frames.shape[1:3]
    for i in range(m):
        step = 2 ** int(level[i])
        pts = corners @ inv[i].T
        x0 = int(np.clip(np.floor(pts[:, 0].min()) - step, 0, w - 1)) // step * step
        y0 = int(np.clip(np.floor(pts[:, 1].min()) - step, 0, h - 1)) // step * step
        x1 = int(np.clip(np.ceil(pts[:, 0].max()) + step, x0 + 1, w))
        y1 = int(np.clip(np.ceil(pts[:, 1].max()) + step, y0 + 1, h))
        region = frames[int(frame_idx[i]), y0:y1, x0:x1].permute(2, 0, 1)[None].float()
        if step > 1:
            region = F.avg_pool2d(region, kernel_size=step, stride=step, ceil_mode=True)
        grid = src[i].clone()
        grid[..., 0] = (grid[..., 0] - x0) / (region.shape[3] * step) * 2 - 1
        grid[..., 1] = (grid[..., 1] - y0) / (region.shape[2] * step) * 2 - 1
        grid = grid[None].to(device=device, dtype=torch.float32)
        crop = F.grid_sample(region, grid, mode="bilinear", padding_mode="border", align_corners=False)
        out[i] = crop[0].round().clamp(0, 255).to(torch.uint8)
    return out
