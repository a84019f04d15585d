"""The table's columns: identity and face columns, then those of the tasks a bundle provides.

The model stage names its cells by these and the writers (outputs/) write them in this order, so the
definition sits here, below both.
"""

from dataclasses import dataclass, field

IDENTITY_COLUMNS = ["video", "frame", "time_s", "face_id", "status", "score", "x1", "y1", "x2", "y2", "person_id"]


@dataclass
class TableSchema:
    """The columns of a run: identity and face columns, then those of the tasks the bundle provides."""

    au_names: list[str] = field(default_factory=list)
    expr_names: list[str] = field(default_factory=list)
    has_va: bool = False
    bs_names: list[str] = field(default_factory=list)
    bs_raw_names: list[str] = field(default_factory=list)  # blendshapes also written unsmoothed (bs_<name>_raw)
    has_pose: bool = False
    extra: list[str] = field(default_factory=list)  # float columns of optional stages (geometry), last

    @property
    def columns(self) -> list[str]:
        cols = list(IDENTITY_COLUMNS)
        if self.au_names:
            for au in self.au_names:
                cols += [f"{au_column(au)}_prob", au_column(au)]
            cols.append("au_std")
        if self.expr_names:
            cols.append("expression")
            cols += [f"expr_{name}" for name in self.expr_names]
            cols.append("expr_std")
        if self.has_va:
            cols += ["valence", "arousal", "valence_std", "arousal_std"]
        if self.bs_names:
            cols += [f"bs_{name}" for name in self.bs_names]
            cols.append("bs_std")
            cols += [f"bs_{name}_raw" for name in self.bs_raw_names]
        if self.has_pose:
            cols += ["pose_yaw", "pose_pitch", "pose_roll", "pose_std"]
        return cols + list(self.extra)

    @property
    def integer_columns(self) -> list[str]:
        """Columns holding integers or empty cells (nullable Int64, so 3 is never written as 3.0)."""
        return ["frame", "face_id", "person_id", *[au_column(a) for a in self.au_names]]


def au_column(name: str) -> str:
    """`AU1` -> `AU01`, as OpenFace and py-feat spell them."""
    digits = "".join(ch for ch in name if ch.isdigit())
    return f"AU{int(digits):02d}" if digits else name
