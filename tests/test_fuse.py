"""BatchNorm folding: every backbone gives the same outputs after folding, and no BN2d is left behind convs."""

import pytest
import torch
from torch import nn

from fer_annotate.models.fuse import Traced, fold_batchnorm, fuse_for_cpu
from fer_annotate.models.networks import BACKBONES, NetworkSpec, build_network


def _randomised(spec: NetworkSpec) -> nn.Module:
    torch.manual_seed(0)
    net = build_network(spec)
    for m in net.modules():  # non-trivial statistics, so a wrong fold shows
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


@pytest.mark.parametrize("backbone", BACKBONES)
def test_folding_keeps_outputs(backbone: str) -> None:
    channels = 1 if backbone == "small_cnn" else 3
    net = _randomised(NetworkSpec(backbone, {"EXPR": 7, "AU": 8}, in_channels=channels))
    x = torch.randn(2, channels, 64, 64)
    with torch.inference_mode():
        before = net(x)
    n_bn2d = sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    folded = fold_batchnorm(net)
    with torch.inference_mode():
        after = net(x)
    assert folded == n_bn2d  # in these networks every BatchNorm2d follows a convolution
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    for task in before:
        torch.testing.assert_close(after[task], before[task], atol=2e-4, rtol=1e-4)


def test_folding_refuses_training_mode() -> None:
    net = build_network(NetworkSpec("small_cnn", {"EXPR": 7}, in_channels=1))
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(net)


def test_a_batchnorm_not_fed_by_a_conv_is_kept() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4)).eval()
    assert fold_batchnorm(net) == 0 and isinstance(net[2], nn.BatchNorm2d)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_traced_member_matches_eager_at_other_batch_sizes(backbone: str) -> None:
    channels = 1 if backbone == "small_cnn" else 3
    net = _randomised(NetworkSpec(backbone, {"EXPR": 7, "AU": 8, "POSE": 3}, in_channels=channels))
    fold_batchnorm(net)
    net = net.to(memory_format=torch.channels_last)
    fused = fuse_for_cpu(net, torch.randn(4, channels, 48, 48).contiguous(memory_format=torch.channels_last))
    assert isinstance(fused, Traced)
    for batch in (1, 3, 9):  # traced once at 4: other batch sizes must give the same answers
        x = torch.randn(batch, channels, 48, 48).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            (want, want_hidden), (got, got_hidden) = net.forward_hidden(x), fused.forward_hidden(x)
        assert list(got) == list(want) and list(got_hidden) == list(want_hidden)
        for task in want:
            torch.testing.assert_close(got[task], want[task], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(got_hidden[task], want_hidden[task], atol=1e-4, rtol=1e-4)


class _Untraceable(nn.Module):
    def forward_hidden(self, x: torch.Tensor) -> tuple[dict, dict]:
        return {"EXPR": x.flatten(1)[:, :7]}, {"note": "not a tensor"}


class _Wrong(nn.Module):
    """Outputs that depend on a Python-side branch: the trace freezes the branch the example took."""

    def forward_hidden(self, x: torch.Tensor) -> tuple[dict, dict]:
        y = x.flatten(1)[:, :7]
        return {"EXPR": y * 2 if float(y.sum()) > 0 else -y}, {}


def test_untraceable_member_stays_eager() -> None:
    net = _Untraceable()
    assert fuse_for_cpu(net, torch.randn(2, 1, 8, 8)) is net


def test_traced_member_is_checked_against_eager(monkeypatch) -> None:
    net = _Wrong()
    calls = iter([torch.ones(2, 1, 8, 8), -torch.ones(2, 1, 8, 8)])
    real = net.forward_hidden
    # the eager reference sees the other branch than the trace took: the swap must be refused
    monkeypatch.setattr(net, "forward_hidden", lambda x: real(next(calls, x)))
    assert fuse_for_cpu(net, torch.ones(2, 1, 8, 8)) is net
