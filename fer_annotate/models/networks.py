"""Multitask networks shared by inference and training.

The paper's CNN is a Caffe-style ResNet-50 (converted from MatConvNet, pre-trained on FER+) with one
head per task; its parameter names follow the authors' checkpoints exactly so that their `.pth`
files load with strict key matching. Lighter backbones (torchvision ResNet-18, MobileNetV3-small,
and a small VGG-style CNN for low-resolution grey faces) carry the same heads. The CNN-RNN puts one
bidirectional GRU per task on the frozen CNN's 128-d head features.
"""

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TASKS = ("EXPR", "AU", "VA", "BS", "POSE")
HIDDEN = 128
# POSE heads output (yaw, pitch, roll) / POSE_SCALE: angles in degrees of about +-45 map to about +-1.
POSE_SCALE = 45.0
RNN_HIDDEN = 64
BACKBONES = ("caffe_resnet50", "resnet18", "mobilenet_v3_small", "small_cnn")


@dataclass
class NetworkSpec:
    """Architecture of one ensemble member: backbone name, heads {task: outputs} and input channels."""

    backbone: str
    heads: dict[str, int]
    in_channels: int = 3
    backbone_kwargs: dict = field(default_factory=dict)


def ordered_heads(heads: dict[str, int]) -> dict[str, int]:
    """The heads in the canonical task order EXPR, AU, VA (the authors' `classifier.{i}` order), then the
    distilled geometry heads BS (blendshape scores) and POSE (head pose angles)."""
    unknown = sorted(set(heads) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; known: {list(TASKS)}")
    if not heads:
        raise ValueError("a network needs at least one head")
    return {task: int(heads[task]) for task in TASKS if task in heads}


class CaffeResNet50(nn.Module):
    """ResNet-50 as converted from Caffe/MatConvNet (`resnet50_ferplus_dag`), flat layer names.

    Differences from torchvision: the stride of a downsampling block sits on its first 1x1 conv (and
    on the projection), the stem's max pool uses ceil_mode, and every conv is bias-free with its own
    `<name>_bn`. The final pooling is adaptive, so any input size works (the paper uses 112).
    """

    out_dim = 2048

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.conv1_7x7_s2 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.conv1_7x7_s2_bn = nn.BatchNorm2d(64)
        self.blocks: list[tuple[str, bool]] = []
        channels = 64
        stages = zip((2, 3, 4, 5), (3, 4, 6, 3), (64, 128, 256, 512), strict=True)
        for stage, n_blocks, width in stages:
            for b in range(1, n_blocks + 1):
                name = f"conv{stage}_{b}"
                stride = 2 if (b == 1 and stage > 2) else 1
                self._conv(f"{name}_1x1_reduce", channels, width, 1, stride)
                self._conv(f"{name}_3x3", width, width, 3, 1)
                self._conv(f"{name}_1x1_increase", width, width * 4, 1, 1)
                if b == 1:
                    self._conv(f"{name}_1x1_proj", channels, width * 4, 1, stride)
                self.blocks.append((name, b == 1))
                channels = width * 4

    def _conv(self, name: str, cin: int, cout: int, k: int, stride: int) -> None:
        setattr(self, name, nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False))
        setattr(self, f"{name}_bn", nn.BatchNorm2d(cout))

    def _bn_conv(self, name: str, x: Tensor) -> Tensor:
        return getattr(self, f"{name}_bn")(getattr(self, name)(x))

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self._bn_conv("conv1_7x7_s2", x))
        x = F.max_pool2d(x, 3, stride=2, padding=0, ceil_mode=True)
        for name, proj in self.blocks:
            y = F.relu(self._bn_conv(f"{name}_1x1_reduce", x))
            y = F.relu(self._bn_conv(f"{name}_3x3", y))
            y = self._bn_conv(f"{name}_1x1_increase", y)
            x = F.relu(y + (self._bn_conv(f"{name}_1x1_proj", x) if proj else x))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


class SmallCNN(nn.Module):
    """Compact VGG-style CNN for low-resolution faces (e.g. 48x48 grey FER2013).

    Stages of 3x3 conv + BatchNorm + ReLU, 2x2 max pool between stages, global average pool.
    Widths `width * (1, 2, 4, 8)`; with the defaults (width 24, depths 1, 1, 2, 2) about 85 MFLOPs
    (42 M multiply-adds) and 0.65 M parameters at 48x48, cheap enough to train on a CPU.
    """

    def __init__(self, in_channels: int = 1, width: int = 24, depths: tuple[int, ...] = (1, 1, 2, 2)):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for i, depth in enumerate(depths):
            if i > 0:
                layers.append(nn.MaxPool2d(2))
            cout = width * 2**i
            for _ in range(depth):
                conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
                layers += [conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
                cin = cout
        self.features = nn.Sequential(*layers)
        self.out_dim = cin

    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1)


class TorchvisionBackbone(nn.Module):
    """A torchvision classifier without its last layer (random init: weights come from bundles)."""

    def __init__(self, name: str, in_channels: int = 3, **kwargs):
        super().__init__()
        import torchvision

        if name == "resnet18":
            net = torchvision.models.resnet18(weights=None, **kwargs)
            if in_channels != 3:
                net.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
            self.out_dim = net.fc.in_features
            net.fc = nn.Identity()
        elif name == "mobilenet_v3_small":
            net = torchvision.models.mobilenet_v3_small(weights=None, **kwargs)
            if in_channels != 3:
                width = net.features[0][0].out_channels
                net.features[0][0] = nn.Conv2d(in_channels, width, 3, stride=2, padding=1, bias=False)
            self.out_dim = net.classifier[0].in_features
            net.classifier = nn.Identity()
        else:
            raise ValueError(f"unknown torchvision backbone {name!r}")
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Backbone(nn.Module):
    """Holds the feature extractor as `model`, giving the authors' `backbone.model.*` key prefix."""

    def __init__(self, name: str, in_channels: int = 3, **kwargs):
        super().__init__()
        if name == "caffe_resnet50":
            self.model = CaffeResNet50(in_channels, **kwargs)
        elif name == "small_cnn":
            self.model = SmallCNN(in_channels, **kwargs)
        elif name in ("resnet18", "mobilenet_v3_small"):
            self.model = TorchvisionBackbone(name, in_channels, **kwargs)
        else:
            raise ValueError(f"unknown backbone {name!r}; known: {list(BACKBONES)}")
        self.out_dim = self.model.out_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class Head(nn.Module):
    """BatchNorm1d -> Linear(D,128) -> ReLU -> BatchNorm1d(128) -> Linear(128,n), as the authors'."""

    def __init__(self, in_dim: int, n_out: int, hidden: int = HIDDEN):
        super().__init__()
        self.bn0 = nn.BatchNorm1d(in_dim)
        self.fc_0 = nn.Linear(in_dim, hidden)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.fc_1 = nn.Linear(hidden, n_out)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Logits and the 128-d hidden feature (after the second BatchNorm)."""
        hidden = self.bn1(F.relu(self.fc_0(self.bn0(x))))
        return self.fc_1(hidden), hidden


class MultitaskNet(nn.Module):
    """Backbone + one head per task (`classifier.{i}` in EXPR, AU, VA, BS, POSE order). Input: normalised images."""

    def __init__(self, spec: NetworkSpec):
        super().__init__()
        self.spec = spec
        self.heads = ordered_heads(spec.heads)
        self.tasks = list(self.heads)
        self.backbone = Backbone(spec.backbone, spec.in_channels, **spec.backbone_kwargs)
        self.classifier = nn.ModuleList(Head(self.backbone.out_dim, n) for n in self.heads.values())

    def forward_hidden(self, x: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Logits per task [N, n] and hidden features per task [N, 128]."""
        feature = self.backbone(x)
        logits, hidden = {}, {}
        for task, head in zip(self.tasks, self.classifier, strict=True):
            logits[task], hidden[task] = head(feature)
        return logits, hidden

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Logits per task [N, n] for images [N, C, H, W]."""
        return self.forward_hidden(x)[0]


class GRUHead(nn.Module):
    """One task's temporal head: bidirectional GRU (hidden 64) -> ReLU -> Linear(128, n)."""

    def __init__(self, n_out: int, in_dim: int = HIDDEN, hidden: int = RNN_HIDDEN):
        super().__init__()
        self.GRU_layer = nn.GRU(in_dim, hidden, batch_first=True, bidirectional=True)
        self.fc_1 = nn.Linear(2 * hidden, n_out)

    def forward(self, x: Tensor) -> Tensor:
        """Logits [B, T, n] for hidden-feature sequences [B, T, 128]."""
        return self.fc_1(F.relu(self.GRU_layer(x)[0]))


class MultitaskCNNRNN(nn.Module):
    """The frozen CNN (`backbone`, a MultitaskNet) + one GRU head per task (`classifier.{i}`)."""

    def __init__(self, spec: NetworkSpec):
        super().__init__()
        self.backbone = MultitaskNet(spec)
        self.backbone.requires_grad_(False)
        self.tasks = self.backbone.tasks
        self.classifier = nn.ModuleList(GRUHead(n) for n in self.backbone.heads.values())

    def train(self, mode: bool = True) -> "MultitaskCNNRNN":
        """Train the GRU heads only; the CNN stays in eval mode (frozen BatchNorm statistics)."""
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, hidden: dict[str, Tensor]) -> dict[str, Tensor]:
        """Logits per task [B, T, n] from each task's CNN hidden features [B, T, 128]."""
        return {task: head(hidden[task]) for task, head in zip(self.tasks, self.classifier, strict=True)}

    def forward_frames(self, x: Tensor) -> dict[str, Tensor]:
        """Logits per task [B, T, n] from image sequences [B, T, C, H, W] (runs the frozen CNN)."""
        b, t = x.shape[:2]
        _, hidden = self.backbone.forward_hidden(x.flatten(0, 1))
        return self({task: h.view(b, t, -1) for task, h in hidden.items()})


def build_network(spec: NetworkSpec, temporal: str = "none") -> nn.Module:
    """The member network for a spec: MultitaskNet, or MultitaskCNNRNN when temporal is "cnn_rnn"."""
    if temporal == "cnn_rnn":
        return MultitaskCNNRNN(spec)
    if temporal != "none":
        raise ValueError(f"unknown temporal model {temporal!r}; known: none, cnn_rnn")
    return MultitaskNet(spec)


def va_bin_centres(bins: int = 20, device: torch.device | str | None = None) -> Tensor:
    """The values the VA bins stand for: linspace(-1, 1, bins)."""
    return torch.linspace(-1.0, 1.0, bins, device=device)


def va_expectation(logits: Tensor, bins: int = 20) -> Tensor:
    """Valence and arousal [..., 2] as softmax expectations over the bin centres of logits [..., 2*bins]."""
    probs = F.softmax(logits.float().unflatten(-1, (2, bins)), dim=-1)
    return (probs * va_bin_centres(bins, logits.device)).sum(-1)


def va_to_bins(values: Tensor, bins: int = 20) -> Tensor:
    """Bin index of values in [-1, 1] with edges linspace(-1, 1, bins+1); 1.0 falls in the last bin."""
    edges = torch.linspace(-1.0, 1.0, bins + 1, device=values.device)
    return (torch.bucketize(values.float(), edges[1:-1], right=True)).clamp(0, bins - 1)
