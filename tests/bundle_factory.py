"""Test helpers: small random-weight bundles, and state dicts in the authors' checkpoint layout."""

from pathlib import Path

import torch

from fer_annotate.faces.geometry import BLENDSHAPES
from fer_annotate.models.bundle import InputSpec, TemporalSpec, save_bundle
from fer_annotate.models.networks import NetworkSpec, build_network

N_OUT = {"EXPR": 7, "AU": 8, "VA": 40, "BS": 52, "POSE": 3}
DENG_MEAN = [131.0912, 103.8827, 91.4953]


def make_random_bundle(
    path: Path,
    backbone: str = "resnet18",
    tasks: tuple[str, ...] = ("EXPR", "AU", "VA"),
    members: int = 2,
    input_size: int = 112,
    temporal: str = "none",
    colour: str = "rgb",
    seed: int = 0,
) -> Path:
    """Write a bundle of `members` differently seeded random networks to `path`; returns the folder.

    BatchNorm statistics are randomised a little as well, so members disagree and outputs vary.
    """
    channels = 1 if colour == "gray" else 3
    spec = NetworkSpec(backbone, {t: N_OUT[t] for t in tasks}, in_channels=channels)
    if backbone == "caffe_resnet50":
        inp = InputSpec(input_size, "rgb", 255.0, DENG_MEAN, [1.0, 1.0, 1.0])
    else:
        inp = InputSpec(input_size, colour, 1.0, [0.5] * channels, [0.25] * channels)
    states = []
    for m in range(members):
        torch.manual_seed(seed * 1000 + m)
        net = build_network(spec, temporal)
        state = net.state_dict()
        for key, value in state.items():
            if key.endswith("running_mean"):
                value.normal_(0.0, 0.1)
            elif key.endswith("running_var"):
                value.uniform_(0.5, 1.5)
        states.append(state)
    save_bundle(
        path,
        states,
        name=f"random-{backbone}",
        network=spec,
        input=inp,
        au_thresholds=[0.3 + 0.05 * i for i in range(N_OUT["AU"])] if "AU" in tasks else None,
        temporal=TemporalSpec(temporal, 32),
        provenance={"data": "none (random weights for tests)", "command": "tests/bundle_factory.py"},
        overwrite=True,
        bs_names=[n.lstrip("_") for n in BLENDSHAPES] if "BS" in tasks else None,
    )
    return Path(path)


def _bn(prefix: str, n: int) -> dict[str, tuple]:
    return {f"{prefix}.{k}": (n,) for k in ("weight", "bias", "running_mean", "running_var")} | {
        f"{prefix}.num_batches_tracked": ()
    }


def authors_cnn_shapes(prefix: str = "", n_out: tuple[int, ...] = (7, 8, 40)) -> dict[str, tuple]:
    """Key -> shape of the authors' CNN checkpoints, written out from PAPER.md (not from our model)."""
    shapes = {f"{prefix}backbone.model.conv1_7x7_s2.weight": (64, 3, 7, 7)}
    shapes |= _bn(f"{prefix}backbone.model.conv1_7x7_s2_bn", 64)
    cin = 64
    for s, (blocks, w) in zip(range(2, 6), ((3, 64), (4, 128), (6, 256), (3, 512)), strict=True):
        for b in range(1, blocks + 1):
            convs = {"1x1_reduce": (w, cin, 1, 1), "3x3": (w, w, 3, 3), "1x1_increase": (4 * w, w, 1, 1)}
            if b == 1:
                convs["1x1_proj"] = (4 * w, cin, 1, 1)
            for kind, shape in convs.items():
                name = f"{prefix}backbone.model.conv{s}_{b}_{kind}"
                shapes[f"{name}.weight"] = shape
                shapes |= _bn(f"{name}_bn", shape[0])
            cin = 4 * w
    for i, n in enumerate(n_out):
        head = f"{prefix}classifier.{i}"
        shapes |= _bn(f"{head}.bn0", 2048) | _bn(f"{head}.bn1", 128)
        shapes |= {f"{head}.fc_0.weight": (128, 2048), f"{head}.fc_0.bias": (128,)}
        shapes |= {f"{head}.fc_1.weight": (n, 128), f"{head}.fc_1.bias": (n,)}
    return shapes


def authors_cnn_rnn_shapes(n_out: tuple[int, ...] = (7, 8, 40)) -> dict[str, tuple]:
    shapes = authors_cnn_shapes("backbone.", n_out)
    for i, n in enumerate(n_out):
        for suffix in ("", "_reverse"):
            gru = f"classifier.{i}.GRU_layer"
            shapes |= {f"{gru}.weight_ih_l0{suffix}": (192, 128), f"{gru}.weight_hh_l0{suffix}": (192, 64)}
            shapes |= {f"{gru}.bias_ih_l0{suffix}": (192,), f"{gru}.bias_hh_l0{suffix}": (192,)}
        shapes |= {f"classifier.{i}.fc_1.weight": (n, 128), f"classifier.{i}.fc_1.bias": (n,)}
    return shapes


def random_state(shapes: dict[str, tuple]) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out = {}
    for k, shape in shapes.items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            out[k] = torch.rand(shape, generator=g) + 0.5
        else:
            out[k] = torch.randn(shape, generator=g) * 0.05
    return out
