"""Networks: the authors' checkpoint layouts load strictly; heads, VA maths, light backbones."""

import pytest
import torch
from bundle_factory import authors_cnn_rnn_shapes, authors_cnn_shapes, random_state

from fer_annotate.models.networks import (
    MultitaskCNNRNN,
    MultitaskNet,
    NetworkSpec,
    build_network,
    va_expectation,
    va_to_bins,
)

HEADS = {"EXPR": 7, "AU": 8, "VA": 40}


@pytest.fixture(scope="module")
def resnet50() -> MultitaskNet:
    return build_network(NetworkSpec("caffe_resnet50", HEADS)).eval()


def test_authors_cnn_checkpoint_loads_strictly(resnet50):
    expected = authors_cnn_shapes()
    ours = {k: tuple(v.shape) for k, v in resnet50.state_dict().items()}
    assert ours == expected
    resnet50.load_state_dict(random_state(expected), strict=True)
    out = resnet50(torch.randn(2, 3, 112, 112) * 50)
    assert {k: tuple(v.shape) for k, v in out.items()} == {"EXPR": (2, 7), "AU": (2, 8), "VA": (2, 40)}


def test_checkpoint_without_num_batches_tracked_loads(resnet50):
    state = {k: v for k, v in random_state(authors_cnn_shapes()).items() if "num_batches" not in k}
    resnet50.load_state_dict(state, strict=True)


def test_caffe_resnet50_strides_and_ceil_pool(resnet50):
    model = resnet50.backbone.model
    assert model.conv3_1_1x1_reduce.stride == (2, 2) and model.conv3_1_3x3.stride == (1, 1)
    assert model.conv3_1_1x1_proj.stride == (2, 2) and model.conv2_1_1x1_proj.stride == (1, 1)
    assert model.conv5_1_1x1_reduce.stride == (2, 2)
    # 112 -> 56 -> ceil pool 28 -> 28, 14, 7, 4: ceil_mode keeps odd sizes rounding up
    stem = torch.nn.functional.max_pool2d(torch.zeros(1, 1, 7, 7), 3, 2, ceil_mode=True)
    assert stem.shape[-1] == 3


def test_authors_cnn_rnn_checkpoint_loads_strictly():
    net = build_network(NetworkSpec("caffe_resnet50", HEADS), temporal="cnn_rnn")
    assert isinstance(net, MultitaskCNNRNN)
    expected = authors_cnn_rnn_shapes()
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == expected
    net.load_state_dict(random_state(expected), strict=True)
    assert not any(p.requires_grad for p in net.backbone.parameters())
    net.train()
    assert not net.backbone.training and net.classifier.training
    hidden = {t: torch.randn(2, 5, 128) for t in HEADS}
    out = net(hidden)
    assert out["VA"].shape == (2, 5, 40) and out["AU"].shape == (2, 5, 8)


def test_forward_hidden_is_after_second_batchnorm():
    net = build_network(NetworkSpec("small_cnn", HEADS, in_channels=1)).eval()
    x = torch.randn(3, 1, 48, 48)
    logits, hidden = net.forward_hidden(x)
    head = net.classifier[1]
    feat = net.backbone(x)
    expected = head.bn1(torch.relu(head.fc_0(head.bn0(feat))))
    torch.testing.assert_close(hidden["AU"], expected)
    torch.testing.assert_close(logits["AU"], head.fc_1(expected))


def test_head_order_is_canonical_and_subsets_keep_it():
    net = build_network(NetworkSpec("small_cnn", {"VA": 40, "EXPR": 7}, in_channels=1))
    assert net.tasks == ["EXPR", "VA"]
    assert net.classifier[0].fc_1.out_features == 7
    with pytest.raises(ValueError, match="unknown task"):
        build_network(NetworkSpec("small_cnn", {"GAZE": 2}))
    geometry = build_network(NetworkSpec("small_cnn", {"POSE": 3, "EXPR": 7, "BS": 52}, in_channels=1))
    assert geometry.tasks == ["EXPR", "BS", "POSE"]  # the paper's tasks keep their classifier.{i} positions


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenet_v3_small", "small_cnn"])
@pytest.mark.parametrize("channels", [1, 3])
def test_light_backbones(backbone, channels):
    net = build_network(NetworkSpec(backbone, {"EXPR": 7, "AU": 12}, in_channels=channels)).eval()
    out = net(torch.randn(2, channels, 64, 64))
    assert out["EXPR"].shape == (2, 7) and out["AU"].shape == (2, 12)


def test_small_cnn_is_cheap():
    from torch.utils.flop_counter import FlopCounterMode

    net = build_network(NetworkSpec("small_cnn", {"EXPR": 7}, in_channels=1)).eval()
    with FlopCounterMode(display=False) as counter:
        net(torch.randn(1, 1, 48, 48))
    assert 20e6 < counter.get_total_flops() < 100e6
    wide = build_network(NetworkSpec("small_cnn", {"EXPR": 7}, 1, {"width": 8, "depths": [1, 1]}))
    assert wide.backbone.out_dim == 16


def test_unknown_backbone_and_temporal():
    with pytest.raises(ValueError, match="unknown backbone"):
        build_network(NetworkSpec("vgg99", HEADS))
    with pytest.raises(ValueError, match="unknown temporal"):
        build_network(NetworkSpec("small_cnn", HEADS), temporal="lstm")


def test_va_expectation():
    logits = torch.full((2, 40), -1e4)
    logits[0, 0] = logits[0, 39] = 0  # valence -1, arousal +1
    logits[1, :20] = 0  # uniform valence -> 0; arousal one-hot at bin 10
    logits[1, 30] = 0
    va = va_expectation(logits)
    centres = torch.linspace(-1, 1, 20)
    torch.testing.assert_close(va, torch.tensor([[-1.0, 1.0], [0.0, centres[10].item()]]))
    assert va_expectation(torch.zeros(4, 3, 10), bins=5).shape == (4, 3, 2)


def test_va_to_bins_edges():
    values = torch.tensor([-1.0, -0.95, -0.9, 0.0, 0.99, 1.0])
    assert va_to_bins(values).tolist() == [0, 0, 1, 10, 19, 19]
