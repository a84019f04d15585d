"""Option values checked the same way on the command line and in the Python API: click types (the CLI
uses them when it parses) and `check_options`, which the API runs before any work, with the same messages."""

import math

import click


class Finite(click.FloatRange):
    """A float that is finite (no nan or inf), optionally within a range."""

    name = "finite float"

    def convert(self, value, param, ctx):  # noqa: ANN001 (click's signature)
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)

    def _describe_range(self) -> str:
        """No range in the help of an unbounded one (click would print `x<=None`)."""
        return "" if self.min is None and self.max is None else super()._describe_range()


POSITIVE_INT = click.IntRange(min=1)
COUNT = click.IntRange(min=0)
PROBABILITY = Finite(0.0, 1.0)
NON_NEGATIVE = Finite(min=0.0)
POSITIVE = Finite(min=0.0, min_open=True)
FINITE = Finite()

# the API's option name -> the type of the CLI option of that name
OPTION_TYPES: dict[str, click.ParamType] = {
    "score_threshold": PROBABILITY,
    "min_face": NON_NEGATIVE,
    "start": FINITE,
    "end": FINITE,
    "every": POSITIVE_INT,
    "fps": POSITIVE,
    "batch_size": POSITIVE_INT,
    "min_hits": POSITIVE_INT,
    "confirm_score": PROBABILITY,
    "max_misses": COUNT,
    "detect_every": POSITIVE_INT,
    "threads": POSITIVE_INT,
}


def check_options(options: dict[str, object]) -> dict[str, object]:
    """The options with their values converted as the CLI converts them (`every="2"` -> 2); ValueError
    naming the option (`every: 'x' is not a valid integer.`) for a value the CLI would refuse."""
    checked = dict(options)
    for name, value in options.items():
        kind = OPTION_TYPES.get(name)
        if kind is None or value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"{name}: {value!r} is not a number")
        try:
            checked[name] = kind.convert(value, None, None)
        except click.BadParameter as exc:
            raise ValueError(f"{name}: {exc.message}") from None
    return checked
