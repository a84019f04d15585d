"""Horizontal-flip test-time augmentation: a network's outputs on the mirrored crop, mapped back to the
original face (blendshapes swap ...Left <-> ...Right, head yaw and roll change sign; expressions, AUs and
valence/arousal are unchanged by a mirror), so they can be averaged with the outputs on the crop itself.
"""

import torch
from torch import Tensor, nn


def mirror_permutation(names: list[str]) -> list[int]:
    """For each output, the output it becomes in a mirrored face (...Left <-> ...Right; others stay)."""
    index = {n: i for i, n in enumerate(names)}
    swap = {"Left": "Right", "Right": "Left"}
    out = []
    for n in names:
        side = next((s for s in swap if n.endswith(s)), None)
        out.append(index.get(n[: -len(side)] + swap[side], index[n]) if side else index[n])
    return out


def unmirror(logits: dict[str, Tensor], mirror: list[int]) -> dict[str, Tensor]:
    """Logits computed on mirrored crops, expressed for the unmirrored faces."""
    out = dict(logits)
    if "BS" in out:
        out["BS"] = out["BS"][..., mirror]
    if "POSE" in out:
        sign = torch.tensor([-1.0, 1.0, -1.0], dtype=out["POSE"].dtype, device=out["POSE"].device)
        out["POSE"] = out["POSE"] * sign
    return out


def flipped_logits(net: nn.Module, x: Tensor, mirror: list[int]) -> dict[str, Tensor]:
    """A member's logits (`forward_hidden`, eager or fused) on the horizontally mirrored input x [N, C, H, W],
    mapped back (unmirror)."""
    return unmirror(net.forward_hidden(x.flip(-1))[0], mirror)
