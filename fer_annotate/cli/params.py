"""Option types shared by `fer-annotate` and `fer-train`: values checked when the command line is parsed,
so a bad value is a usage error (exit 2, one line) before anything is read or written. The value types
shared with the Python API live in run.values."""

import re

import click

from fer_annotate.run.values import COUNT, FINITE, NON_NEGATIVE, POSITIVE, POSITIVE_INT, PROBABILITY, Finite


class Device(click.ParamType):
    """`auto`, `cpu`, `cuda` or `cuda:N`; a CUDA device must exist (unless `local` is False: with `--ray` the
    GPUs that count are the cluster's, so the command checks with `check_cuda` only without it).
    `auto` stays `auto` (resolved later)."""

    name = "device"
    PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")

    def __init__(self, local: bool = True):
        self.local = local

    def convert(self, value, param, ctx):  # noqa: ANN001 (click's signature)
        text = str(value).strip().lower()
        if not self.PATTERN.fullmatch(text):
            self.fail(f"{value!r} is not one of auto, cpu, cuda, cuda:N.", param, ctx)
        if self.local:
            problem = cuda_problem(text)
            if problem:
                self.fail(problem, param, ctx)
        return text


def cuda_problem(device: str) -> str:
    """Why `device` cannot be used on this machine ('' when it can: not CUDA, or that CUDA device exists)."""
    if not device.startswith("cuda"):
        return ""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(device.split(":")[1]) if ":" in device else 0
    if count == 0:
        return f"{device!r}: no CUDA device is available."
    if index >= count:
        return f"{device!r}: there are {count} CUDA device(s) (cuda:0 to cuda:{count - 1})."
    return ""


def check_cuda(device: str, option: str = "--device") -> None:
    """A usage error, worded as a bad option value, when `device` is a CUDA device this machine lacks."""
    problem = cuda_problem(device)
    if problem:
        raise click.BadParameter(problem, param_hint=f"'{option}'")


def smooth_spec(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """`--smooth`: checked as a SmoothSpec when parsed."""
    from fer_annotate.models.temporal import SmoothSpec

    try:
        SmoothSpec.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def workers_count(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """`--workers N|auto`: checked when parsed (N >= 1), passed on as given."""
    from fer_annotate.run.workers import parse_workers

    try:
        parse_workers(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


DEVICE = Device()
DEVICE_ANYWHERE = Device(local=False)

__all__ = ["COUNT", "DEVICE", "DEVICE_ANYWHERE", "FINITE", "NON_NEGATIVE", "POSITIVE", "POSITIVE_INT", "PROBABILITY",
           "Device", "Finite", "check_cuda", "cuda_problem", "smooth_spec", "workers_count"]
