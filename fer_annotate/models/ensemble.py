"""Running a bundle's members on face crops and combining them into one ensemble output.

The ensemble is the mean of the members' probabilities (AU sigmoid, EXPR softmax) and of their VA
expectations, as in the paper (and of the distilled blendshape scores and pose angles); the standard
deviation across members is kept as an uncertainty.
Decisions (AU 1 where probability > the bundle's threshold, expression = argmax) are made last,
by `decide`, so that they can be recomputed after temporal smoothing.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from fer_annotate.models.bundle import Bundle, load_members
from fer_annotate.models.fuse import Traced, fold_batchnorm, fuse_for_cpu
from fer_annotate.models.networks import POSE_SCALE, MultitaskCNNRNN, va_expectation
from fer_annotate.models.tta import flipped_logits, mirror_permutation

GRAY_WEIGHTS = (0.299, 0.587, 0.114)


@dataclass
class EnsembleOutput:
    """Per-face ensemble results (numpy float32, one row per face); None for tasks the bundle lacks.

    bs_prob [M, 52] are blendshape scores in [0, 1]; pose [M, 3] is (yaw, pitch, roll) in degrees,
    roll relative to the crop (the pipeline adds the crop's own rotation).

    hidden [M, members, tasks, 128] is the CNN heads' hidden features, present only for cnn_rnn
    bundles (the input of the temporal heads).
    """

    au_prob: np.ndarray | None = None
    au_std: np.ndarray | None = None
    expr_prob: np.ndarray | None = None
    expr_std: np.ndarray | None = None
    valence: np.ndarray | None = None
    arousal: np.ndarray | None = None
    valence_std: np.ndarray | None = None
    arousal_std: np.ndarray | None = None
    bs_prob: np.ndarray | None = None
    bs_std: np.ndarray | None = None
    pose: np.ndarray | None = None
    pose_std: np.ndarray | None = None
    hidden: np.ndarray | None = None

    def present(self) -> list[str]:
        """Names of the fields that hold data."""
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def __len__(self) -> int:
        return len(getattr(self, self.present()[0])) if self.present() else 0

    def __getitem__(self, index) -> "EnsembleOutput":
        """Rows by numpy index; an integer keeps a leading axis of 1 so a row is still an EnsembleOutput."""
        index = [index] if isinstance(index, int | np.integer) else index
        return replace(self, **{name: getattr(self, name)[index] for name in self.present()})

    @staticmethod
    def concat(parts: list["EnsembleOutput"]) -> "EnsembleOutput":
        """Rows of several outputs (same fields) stacked in order."""
        names = parts[0].present()
        return EnsembleOutput(**{n: np.concatenate([getattr(p, n) for p in parts]) for n in names})


@dataclass
class Decisions:
    """Per-face decisions: AU 0/1 [M, A] by the bundle's thresholds, expression index [M] (argmax)."""

    au: np.ndarray | None
    expression: np.ndarray | None


def decide(out: EnsembleOutput, bundle: Bundle) -> Decisions:
    """AU decisions (probability > threshold, as the authors) and expression labels (argmax) from probabilities."""
    au = None
    if out.au_prob is not None:
        au = (out.au_prob > np.asarray(bundle.au_thresholds, dtype=np.float32)).astype(np.int8)
    expression = None if out.expr_prob is None else out.expr_prob.argmax(-1)
    return Decisions(au, expression)


def _mean_std(x: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (population) standard deviation over the member axis 0, as float32 numpy."""
    x = x.float()
    return x.mean(0).cpu().numpy(), x.std(0, correction=0).cpu().numpy()


def combine(logits: list[dict[str, Tensor]], va_bins: int = 20) -> EnsembleOutput:
    """Ensemble mean and spread from each member's logits {task: [..., n]} (leading axes kept)."""
    out = EnsembleOutput()
    tasks = logits[0].keys()
    if "AU" in tasks:
        out.au_prob, out.au_std = _mean_std(torch.stack([torch.sigmoid(m["AU"].float()) for m in logits]))
    if "EXPR" in tasks:
        out.expr_prob, out.expr_std = _mean_std(torch.stack([F.softmax(m["EXPR"].float(), -1) for m in logits]))
    if "VA" in tasks:
        mean, std = _mean_std(torch.stack([va_expectation(m["VA"], va_bins) for m in logits]))
        out.valence, out.arousal = mean[..., 0], mean[..., 1]
        out.valence_std, out.arousal_std = std[..., 0], std[..., 1]
    if "BS" in tasks:
        out.bs_prob, out.bs_std = _mean_std(torch.stack([torch.sigmoid(m["BS"].float()) for m in logits]))
    if "POSE" in tasks:
        out.pose, out.pose_std = _mean_std(torch.stack([m["POSE"].float() * POSE_SCALE for m in logits]))
    return out


class Ensemble:
    """A bundle's members on a device: `ensemble(crops)` -> EnsembleOutput.

    A bundle with tta "flip" runs every member on the crop and on its mirror image (twice the model time)
    and averages both (tta.unmirror maps the mirrored outputs back: blendshape sides swap, yaw and roll
    change sign).

    At load every BatchNorm that follows a convolution is folded into it and the CNNs are put in
    channels_last (both devices: on CPU it makes max-pooling and the convolutions ~20 % faster). On CUDA
    the members run with bfloat16 autocast; on CPU in float32 (see README, "Speed and memory", for the
    measured bfloat16/int8 deltas). On CPU every member is traced and fused for oneDNN at load (same outputs
    to 1e-4, else that member stays eager). The execution form is decided here, from the bundle and the
    device alone, and never changes afterwards: a video's numbers do not depend on what the process ran
    before it (alone, in a folder, in a worker or on Ray give the same bytes).

    With `threads` > 1 on CPU the members run on that many threads at once, each member's operators on one
    thread (torch's intra-op pool is one thread in a run): on two cores the members of a batch then share
    both cores with the detection stage instead of queueing behind each other. Every member computes
    exactly as it would alone, and the outputs are combined in member order, so the numbers are the same
    bytes with any `threads`.
    """

    def __init__(self, bundle: Bundle, device: str | torch.device = "cpu", max_batch: int = 256, threads: int = 1):
        self.bundle = bundle
        self.device = torch.device(device)
        self.max_batch = max_batch
        self.members = load_members(bundle, self.device)
        self.temporal = isinstance(self.members[0], MultitaskCNNRNN)
        self.cnns = [m.backbone if self.temporal else m for m in self.members]
        self.cuda = self.device.type == "cuda"
        for cnn in self.cnns:
            fold_batchnorm(cnn)
        self.cnns = [m.to(memory_format=torch.channels_last) for m in self.cnns]
        spec = bundle.input
        self.mean = torch.tensor(spec.mean, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(spec.std, device=self.device).view(1, -1, 1, 1)
        self.gray = torch.tensor(GRAY_WEIGHTS, device=self.device).view(1, 3, 1, 1)
        self.fused = False
        if self.device.type == "cpu":
            self._fuse()
        self.mirror = mirror_permutation(bundle.bs_names)
        parallel = self.device.type == "cpu" and threads > 1 and len(self.cnns) > 1
        self.pool = ThreadPoolExecutor(min(threads, len(self.cnns)), "fer-member") if parallel else None

    def preprocess(self, crops: Tensor) -> Tensor:
        """uint8 RGB crops [M, 3, S, S] -> normalised float input per the bundle's InputSpec."""
        spec = self.bundle.input
        if crops.dtype != torch.uint8 or crops.ndim != 4 or crops.shape[1] != 3:
            raise ValueError(f"crops must be uint8 [M, 3, S, S], got {crops.dtype} {list(crops.shape)}")
        if crops.shape[-2:] != (spec.size, spec.size):
            raise ValueError(f"crops are {list(crops.shape[-2:])}, bundle {self.bundle.name} needs {spec.size}")
        x = crops.to(self.device, non_blocking=True).float()
        if spec.colour == "gray":
            x = (x * self.gray).sum(1, keepdim=True)
        x = (x * (spec.scale / 255.0) - self.mean) / self.std
        if x.shape[1] != self.bundle.network.in_channels:
            x = x.expand(-1, self.bundle.network.in_channels, -1, -1)
        return x.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, crops: Tensor) -> EnsembleOutput:
        """Ensemble probabilities, VA values and spreads for uint8 RGB crops [M, 3, S, S]."""
        if len(crops) == 0:
            raise ValueError("no crops")
        parts = [self._run(crops[i : i + self.max_batch]) for i in range(0, len(crops), self.max_batch)]
        return parts[0] if len(parts) == 1 else EnsembleOutput.concat(parts)

    def _fuse(self) -> None:
        """Swap the CPU members for their traced, oneDNN-fused versions (traced on 16 seeded random crops,
        so the choice per member is the same in every process)."""
        size, channels = self.bundle.input.size, self.bundle.network.in_channels
        generator = torch.Generator().manual_seed(0)
        example = torch.randn(16, channels, size, size, generator=generator)
        example = example.contiguous(memory_format=torch.channels_last)
        self.cnns = [fuse_for_cpu(net, example) for net in self.cnns]
        if not self.temporal:  # the eager members are no longer needed: free their weights
            self.members = self.cnns
        self.fused = any(isinstance(net, Traced) for net in self.cnns)

    def _member(self, net: torch.nn.Module, x: Tensor) -> tuple[list[dict], dict]:
        """One member's logits (and, with flip TTA, those of the mirrored crop mapped back) and hidden features;
        on any thread (inference mode and autocast are per thread, so they are entered here)."""
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda):
            member_logits, member_hidden = net.forward_hidden(x)
            logits = [member_logits]
            if self.bundle.tta == "flip":  # the mirrored crop, its outputs mapped back to this face
                logits.append(flipped_logits(net, x, self.mirror))
        return logits, member_hidden

    def _run(self, crops: Tensor) -> EnsembleOutput:
        x = self.preprocess(crops)
        if self.pool is not None:
            per_member = list(self.pool.map(lambda net: self._member(net, x), self.cnns))
        else:
            per_member = [self._member(net, x) for net in self.cnns]
        logits = [m for member_logits, _ in per_member for m in member_logits]
        hidden = [member_hidden for _, member_hidden in per_member]
        out = combine(logits, self.bundle.va_bins)
        if self.temporal:
            per_member = [torch.stack([h[t].float() for t in self.bundle.tasks], 1) for h in hidden]
            out.hidden = torch.stack(per_member, 1).cpu().numpy()
        return out

    @torch.inference_mode()
    def sequence(self, hidden: np.ndarray) -> EnsembleOutput:
        """CNN-RNN ensemble over sequences: hidden [B, T, members, tasks, 128] -> outputs [B, T] per row.

        Each member's GRU heads see that member's own CNN features; the members are then combined
        as for single frames. Returned fields have leading axes [B, T]. Runs in float32 (small).
        """
        if not self.temporal:
            raise ValueError(f"bundle {self.bundle.name} has no temporal model")
        h = torch.from_numpy(np.ascontiguousarray(hidden)).to(self.device)
        tasks = self.bundle.tasks
        logits = [net({t: h[:, :, k, j] for j, t in enumerate(tasks)}) for k, net in enumerate(self.members)]
        return combine(logits, self.bundle.va_bins)
