"""fer-annotate: per-frame facial action units, expressions and valence/arousal for videos.

    from fer_annotate import Annotator, annotate, read_table

The API is imported on first use, so `import fer_annotate` stays cheap (no torch, no pandas).
"""

__version__ = "0.1.0"
__all__ = ["Annotator", "annotate", "read_table", "__version__"]

_API = {"Annotator": "fer_annotate.api", "annotate": "fer_annotate.api", "read_table": "fer_annotate.outputs.table"}


def __getattr__(name: str) -> object:
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fer_annotate' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
