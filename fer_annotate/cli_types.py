"""Option types shared by `fer-annotate` and `fer-train`: values checked when the command line is parsed,
so a bad value is a usage error (exit 2, one line) before anything is read or written."""

import math
import re

import click


class Finite(click.FloatRange):
    """A float that is finite (no nan or inf), optionally within a range."""

    name = "finite float"

    def convert(self, value, param, ctx):  # noqa: ANN001 (click's signature)
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


class Device(click.ParamType):
    """`auto`, `cpu`, `cuda` or `cuda:N`; a CUDA device must exist. `auto` stays `auto` (resolved later)."""

    name = "device"
    PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")

    def convert(self, value, param, ctx):  # noqa: ANN001 (click's signature)
        text = str(value).strip().lower()
        if not self.PATTERN.fullmatch(text):
            self.fail(f"{value!r} is not one of auto, cpu, cuda, cuda:N.", param, ctx)
        if text.startswith("cuda"):
            import torch

            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            index = int(text.split(":")[1]) if ":" in text else 0
            if count == 0:
                self.fail(f"{value!r}: no CUDA device is available.", param, ctx)
            if index >= count:
                self.fail(f"{value!r}: there are {count} CUDA device(s) (cuda:0 to cuda:{count - 1}).", param, ctx)
        return text


POSITIVE_INT = click.IntRange(min=1)
COUNT = click.IntRange(min=0)
PROBABILITY = Finite(0.0, 1.0)
NON_NEGATIVE = Finite(min=0.0)
POSITIVE = Finite(min=0.0, min_open=True)
FINITE = Finite()
DEVICE = Device()
