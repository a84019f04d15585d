"""Alignment: known points land on the template; the warp samples where the transform says."""

import numpy as np
import torch

from fer_annotate.faces.align import CropTemplate, face_transforms, umeyama, warp_crops

TEMPLATE = CropTemplate([[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.5, 0.75]], size=64, box_scale=1.5)


def apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def test_umeyama_recovers_a_similarity():
    angle, scale, shift = 0.4, 2.5, np.array([30.0, -12.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = np.random.default_rng(0).uniform(0, 100, (4, 2))
    dst = scale * src @ rot.T + shift
    m = umeyama(src, dst)
    np.testing.assert_allclose(apply(m, src), dst, atol=1e-9)


def test_keypoints_map_onto_template():
    # A face rotated by 20 degrees, 3x the template size, somewhere in a frame.
    angle = np.deg2rad(20)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    pts = (TEMPLATE.points * 64 * 3) @ rot.T + np.array([200.0, 120.0])
    m = face_transforms(np.array([[0, 0, 1, 1]]), pts[None], TEMPLATE)[0]
    np.testing.assert_allclose(apply(m, pts), TEMPLATE.points * 64, atol=1e-6)


def test_box_crop_without_keypoints_is_centred_and_scaled():
    m = face_transforms(np.array([[100.0, 50.0, 140.0, 90.0]]), None, TEMPLATE)[0]
    np.testing.assert_allclose(apply(m, np.array([[120.0, 70.0]])), [[32.0, 32.0]])
    side = 40 * 1.5
    np.testing.assert_allclose(apply(m, np.array([[120 - side / 2, 70 - side / 2]])), [[0.0, 0.0]], atol=1e-9)


def test_warp_samples_the_right_place():
    # A frame whose pixel value encodes x and y; the crop of a box must reproduce those coordinates.
    h, w = 240, 320
    ys, xs = np.mgrid[0:h, 0:w]
    frame = np.stack([xs % 256, ys % 256, np.zeros_like(xs)], -1).astype(np.uint8)[None]
    template = CropTemplate(TEMPLATE.points, size=32, box_scale=1.0)
    m = face_transforms(np.array([[100.0, 60.0, 132.0, 92.0]]), None, template)
    crop = warp_crops(torch.from_numpy(frame), np.array([0]), m, 32)[0].numpy()
    assert crop.shape == (3, 32, 32)
    np.testing.assert_allclose(crop[0, 5, :], np.arange(100, 132), atol=1)
    np.testing.assert_allclose(crop[1, :, 5], np.arange(60, 92), atol=1)


def test_large_faces_are_downsampled_without_aliasing():
    # A fine checkerboard shrunk 8x must come out as its mean grey, not as moire.
    board = ((np.indices((512, 512)).sum(0) % 2) * 255).astype(np.uint8)
    frame = np.repeat(board[..., None], 3, -1)[None]
    template = CropTemplate(TEMPLATE.points, size=64, box_scale=1.0)
    m = face_transforms(np.array([[0.0, 0.0, 512.0, 512.0]]), None, template)
    crop = warp_crops(torch.from_numpy(frame), np.array([0]), m, 64)[0].float()
    assert abs(crop.mean().item() - 127.5) < 3
    assert crop.std().item() < 10


def test_no_faces_gives_empty_batch():
    out = warp_crops(torch.zeros((2, 10, 10, 3), dtype=torch.uint8), np.array([], dtype=int), np.zeros((0, 2, 3)), 16)
    assert out.shape == (0, 3, 16, 16)


def test_region_warp_matches_a_whole_frame_warp():
    """Reading only the face's region gives the same crop as sampling the whole frame, also at the border."""
    import torch.nn.functional as F

    rng = np.random.default_rng(1)
    frame = torch.from_numpy(rng.integers(0, 255, (1, 120, 160, 3), dtype=np.uint8))
    angle = np.deg2rad(25)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    template = CropTemplate(TEMPLATE.points, size=48)
    boxes = np.zeros((2, 4))
    kps = np.stack([(template.points * 48 * 1.3) @ rot.T + np.array(shift) for shift in ([40.0, 30.0], [130.0, 90.0])])
    m = face_transforms(boxes, kps, template)
    crops = warp_crops(frame, np.array([0, 0]), m, 48).float()
    inv = np.linalg.inv(np.concatenate([m, np.tile([[[0, 0, 1]]], (2, 1, 1))], 1))[:, :2]
    ys, xs = np.mgrid[0:48, 0:48] + 0.5
    for i in range(2):
        src = np.stack([xs, ys, np.ones_like(xs)], -1) @ inv[i].T
        grid = torch.from_numpy(np.stack([src[..., 0] / 160 * 2 - 1, src[..., 1] / 120 * 2 - 1], -1))[None].float()
        image = frame.permute(0, 3, 1, 2).float()
        ref = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
        assert (crops[i] - ref.round()).abs().max() <= 1
