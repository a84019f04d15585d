"""Run configuration: dataclasses, read from a TOML file and overridden by command-line options.

Every run writes its resolved configuration to RUN/config.json; a rerun with the same output folder
resumes when the configuration matches.
"""

import json
import tomllib
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path

from training.augment import AugmentSpec
from training.losses import LossSpec

DENG_MEAN = [131.0912, 103.8827, 91.4953]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
DEFAULT_TEMPLATE = [[0.25, 0.25], [0.75, 0.25], [0.5, 0.55], [0.5, 0.75]]
SOURCE_KINDS = ("abaw", "manifest", "folders")


@dataclass
class Source:
    """One data source: kind abaw (root; training split for train, Validation_Set for val), manifest, folders."""

    kind: str
    path: str


@dataclass
class TrainConfig:
    """Everything a teacher or student run depends on (the resolved form goes to RUN/config.json)."""

    train: list[Source] = field(default_factory=list)
    val: list[Source] = field(default_factory=list)
    cache: str | None = None  # decoded-image cache folder; default RUN/cache (students: the teacher's)
    # network
    backbone: str = "resnet18"
    backbone_kwargs: dict = field(default_factory=dict)
    init: str = "scratch"  # scratch | imagenet | path of a bundle whose backbone to start from
    init_members: bool = False  # student i starts from the whole of the init bundle's member i
    # input (recorded in the exported bundle's InputSpec)
    size: int = 112
    colour: str = "rgb"
    scale: float | None = None  # None: from init (bundle), else 1.0 (255 for caffe_resnet50)
    mean: list[float] | None = None
    std: list[float] | None = None
    template: list[list[float]] = field(default_factory=lambda: [list(p) for p in DEFAULT_TEMPLATE])
    box_scale: float = 1.0
    # optimisation (paper: Adam 1e-4, betas (0.5, 0.999), 20 per task, teacher 8 epochs, students 3)
    epochs: int = 8
    batch_size: int = 20
    lr: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | cosine | onecycle
    steps_per_epoch: int | None = None  # default: the largest task's epoch / batch size
    balance: list[str] = field(default_factory=lambda: ["AU", "EXPR", "VA"])
    expr_labels: str = "votes"  # votes: the raters' vote distribution where the data has one | majority
    augment: AugmentSpec = field(default_factory=AugmentSpec)
    loss: LossSpec = field(default_factory=LossSpec)
    metrics: str = "2020"  # ABAW edition of the metrics: 2020 (= 2021) | 2022
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bfloat16 autocast + channels_last on CUDA
    threads: int | None = None
    eval_batch: int = 256
    # students
    teacher: str | None = None
    students: int = 5
    rounds: int = 1
    # CNN-RNN (fer-train temporal): the frozen CNN run, window length and training stride
    cnn: str | None = None
    seq_len: int = 32
    seq_stride: int = 16
    command: str = ""

    def check(self) -> None:
        """Raise ValueError for settings that cannot work, with the option to fix."""
        for s in self.train + self.val:
            if s.kind not in SOURCE_KINDS:
                raise ValueError(f"data source kind {s.kind!r}; known: {SOURCE_KINDS}")
        if not self.train:
            raise ValueError("no training data: give --abaw, --manifest or --folders")
        if self.colour not in ("rgb", "gray"):
            raise ValueError(f"--colour must be rgb or gray, not {self.colour!r}")
        if self.batch_size < 2:
            raise ValueError("--batch-size must be >= 2 (BatchNorm)")
        if self.schedule not in ("constant", "cosine", "onecycle"):
            raise ValueError(f"--schedule must be constant, cosine or onecycle, not {self.schedule!r}")
        if self.metrics not in ("2020", "2022"):
            raise ValueError(f"--metrics must be 2020 or 2022, not {self.metrics!r}")
        if self.expr_labels not in ("votes", "majority"):
            raise ValueError(f"--expr-labels must be votes or majority, not {self.expr_labels!r}")
        unknown = sorted(set(self.balance) - {"AU", "EXPR", "VA"})
        if unknown:
            raise ValueError(f"--balance: unknown task(s) {unknown}")
        n = self.channels
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"--{name} needs {n} values for colour {self.colour}")

    @property
    def channels(self) -> int:
        return 1 if self.colour == "gray" else 3


def resolve_normalisation(cfg: TrainConfig, init_input=None) -> None:
    """Fill scale / mean / std: from the init bundle's InputSpec, the paper's for caffe_resnet50,
    ImageNet's for ImageNet init, else 0-1 input centred at 0.5 with std 0.25."""
    if cfg.scale is not None and cfg.mean is not None and cfg.std is not None:
        return
    n = cfg.channels
    if init_input is not None:
        scale, mean, std = init_input.scale, list(init_input.mean), list(init_input.std)
        if len(mean) != n:
            mean, std = [sum(mean) / len(mean)] * n, [sum(std) / len(std)] * n
    elif cfg.backbone == "caffe_resnet50":
        scale, mean, std = 255.0, DENG_MEAN if n == 3 else [sum(DENG_MEAN) / 3], [1.0] * n
    elif cfg.init == "imagenet":
        scale = 1.0
        mean = IMAGENET_MEAN if n == 3 else [sum(IMAGENET_MEAN) / 3]
        std = IMAGENET_STD if n == 3 else [sum(IMAGENET_STD) / 3]
    else:
        scale, mean, std = 1.0, [0.5] * n, [0.25] * n
    cfg.scale = scale if cfg.scale is None else cfg.scale
    cfg.mean = list(mean) if cfg.mean is None else cfg.mean
    cfg.std = list(std) if cfg.std is None else cfg.std


def _build(cls, data: dict, where: str):
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown setting(s) {unknown}")
    out = {}
    for name, value in data.items():
        if name in ("train", "val"):
            value = [Source(**s) if isinstance(s, dict) else s for s in value]
        elif name == "augment" and isinstance(value, dict):
            value = _build(AugmentSpec, value, f"{where} [augment]")
        elif name == "loss" and isinstance(value, dict):
            value = _build(LossSpec, value, f"{where} [loss]")
        out[name] = value
    return cls(**out)


def apply(cfg: TrainConfig, data: dict, where: str = "options") -> TrainConfig:
    """A copy of cfg with the settings in data (TOML tables or option values; None = unchanged)."""
    merged = to_dict(cfg)
    for key, value in data.items():
        if value is None:
            continue
        if key in ("augment", "loss") and isinstance(value, dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return _build(TrainConfig, merged, where)


def load_toml(path: str | Path) -> dict:
    """The settings of a TOML config file (top-level keys = TrainConfig fields, [augment], [loss])."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML ({exc})") from None
    _build(TrainConfig, data, str(path))  # validates the names
    return data


def to_dict(cfg) -> dict:
    """JSON-ready dict of a config dataclass."""
    return asdict(cfg) if is_dataclass(cfg) else dict(cfg)


def from_dict(data: dict) -> TrainConfig:
    """TrainConfig from its to_dict form (e.g. RUN/config.json)."""
    return _build(TrainConfig, data, "config.json")


def read_run_config(run: str | Path) -> TrainConfig:
    """The resolved configuration of a run folder."""
    path = Path(run) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run}: not a fer-train run (no config.json)")
    return from_dict(json.loads(path.read_text()))
