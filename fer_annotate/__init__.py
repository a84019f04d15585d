"""fer-annotate: per-frame facial action units, expressions and valence/arousal for videos."""

__version__ = "0.1.0"
