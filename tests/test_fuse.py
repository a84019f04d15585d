"""BatchNorm folding: every backbone gives the same outputs after folding, and no BN2d is left behind convs."""

import pytest
import torch
from torch import nn

from fer_annotate.fuse import fold_batchnorm
from fer_annotate.networks import BACKBONES, NetworkSpec, build_network


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
