"""Inference-time simplification of member networks: BatchNorm folded into the convolution before it.

In eval mode a BatchNorm2d right after a convolution is an affine map per channel, so it can be
multiplied into that convolution's weights and bias once at load; the network then runs one op fewer
per layer (~8-10 % of a small CNN's time on CPU) with the same outputs up to float rounding.

A pair is folded only where the network's structure says the convolution feeds the BatchNorm
directly: consecutive children of an `nn.Sequential` (SmallCNN, torchvision's Conv-BN-activation
blocks and projections), `X` and `X_bn` (the Caffe ResNet-50), `convN` and `bnN` (torchvision ResNet
blocks and stem). `tests/test_fuse.py` checks every backbone's outputs before and after.

On CPU a member can further be traced and frozen for oneDNN (`fuse_for_cpu`): convolutions then carry
their ReLU and residual additions as post-ops and weights are pre-packed, which made a Caffe ResNet-50
member 33 % faster and the small CNN 12 % (batch 16, one thread). Tracing costs about 0.1 s per small
member and 1-2 s per ResNet-50; the ensemble does it at load on every CPU run, so that the execution form
is fixed before the first frame.
"""

import warnings

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _pairs(parent: nn.Module) -> list[tuple[str, str]]:
    """Names of (conv, batchnorm) children of `parent` where the conv's output goes straight into the BN."""
    children = dict(parent.named_children())
    pairs = []
    if isinstance(parent, nn.Sequential):
        names = list(children)
        pairs += [(a, b) for a, b in zip(names, names[1:], strict=False)]
    for name in children:
        pairs.append((name, f"{name}_bn"))
        if name.startswith("conv") and name[4:].isdigit():
            pairs.append((name, f"bn{name[4:]}"))
    return [
        (a, b) for a, b in pairs
        if type(children.get(a)) is nn.Conv2d and type(children.get(b)) is nn.BatchNorm2d
    ]


def fold_batchnorm(net: nn.Module) -> int:
    """Fold every directly following BatchNorm2d into its Conv2d, in place (net must be in eval mode).

    The BatchNorm is replaced by `nn.Identity`; returns the number of folded pairs.
    """
    if net.training:
        raise ValueError("fold_batchnorm needs a network in eval mode (its BatchNorm statistics are frozen)")
    folded = 0
    for parent in list(net.modules()):
        for conv_name, bn_name in _pairs(parent):
            conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
            if not bn.track_running_stats or bn.running_mean is None:
                continue
            setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
            setattr(parent, bn_name, nn.Identity())
            folded += 1
    return folded


class _Hidden(nn.Module):
    """A member's `forward_hidden` as its forward, so that tracing records both outputs."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        return self.net.forward_hidden(x)


class Traced(nn.Module):
    """A traced, frozen member with the eager member's `forward_hidden` interface."""

    def __init__(self, module: torch.jit.ScriptModule):
        super().__init__()
        self.module = module

    def forward_hidden(self, x: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        # The frozen graph runs as built: no profiling runs and no graph specialised per input shape, so
        # the first batch of a shape runs the same code as every later one (and no memory per shape).
        with torch.jit.optimized_execution(False):
            logits, hidden = self.module(x)
        return dict(logits), dict(hidden)


def fuse_for_cpu(net: nn.Module, example: Tensor, atol: float = 1e-4) -> nn.Module:
    """The member traced with `example` (a CPU input batch), frozen and optimised for oneDNN inference.

    Returns the eager member unchanged where tracing fails or the traced outputs differ from the eager
    ones by more than atol on the example (the check keeps a network that tracing cannot express exactly
    from being swapped in).
    """
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # TorchScript's deprecation and tracer notes
            example = example.clone()
            traced = torch.jit.trace(_Hidden(net), example, strict=False, check_trace=False)
            module = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
            fused = Traced(module)
            want, got = net.forward_hidden(example), fused.forward_hidden(example)
        for a, b in zip((*want[0].values(), *want[1].values()), (*got[0].values(), *got[1].values()), strict=True):
            if a.shape != b.shape or not torch.allclose(a.float(), b.float(), atol=atol, rtol=0):
                return net
    except Exception:  # any tracing failure keeps the eager network, which is correct
        return net
    return fused
