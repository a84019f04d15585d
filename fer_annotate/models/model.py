"""The model stage of the pipeline: a bundle's ensemble on face crops, per-face temporal filters, and the
table columns the bundle provides.

Everything about the model comes from the bundle: the crop template and size, the tasks and their label
names, the AU thresholds, the temporal model. Decisions (AU 0/1, expression label) are made after the
temporal filter, from the smoothed probabilities.
"""

import hashlib
import json
from functools import cached_property

import numpy as np

from fer_annotate.faces.align import CropTemplate
from fer_annotate.models.bundle import Bundle, InputSpec
from fer_annotate.models.columns import TableSchema, au_column
from fer_annotate.models.ensemble import Ensemble, EnsembleOutput, decide
from fer_annotate.models.temporal import SmoothSpec, TrackFilter

# Blendshapes also written unsmoothed (`bs_<name>_raw`) when the temporal filter is on: a blink lasts
# 100-400 ms, and the default Gaussian (sigma 0.1 s) halves its peak (0.40 -> 0.28 on a real clip).
RAW_BLENDSHAPES = ("eyeBlinkLeft", "eyeBlinkRight")


def crop_template(spec: InputSpec) -> CropTemplate:
    """The alignment target of an input spec: template points, crop size, box-crop scale."""
    return CropTemplate(spec.template, size=spec.size, box_scale=spec.box_scale)


def bundle_summary(b: Bundle, smoothing: str) -> str:
    """One console line about a bundle (also for a driver whose workers load the models)."""
    temporal = f"{b.temporal.kind} (seq {b.temporal.seq_len})" if b.temporal.kind != "none" else "none"
    return (
        f"{b.name} ({len(b.members)} members, {b.network.backbone}, tasks {'/'.join(b.tasks)}, "
        f"temporal {temporal}, smoothing {smoothing}) from {b.path}"
    )


class _RowFilter:
    """A TrackFilter that carries each row's identity columns along with its model output."""

    def __init__(self, stage: "ModelStage"):
        self.stage = stage
        self.filter = TrackFilter(stage.ensemble, stage.smooth)
        self.rows: dict[int, dict] = {}

    def push(self, frame: int, time_s: float, item: tuple[dict, EnsembleOutput]) -> list[tuple[int, dict]]:
        row, out = item
        self.rows[frame] = {**row, **self.stage.raw_columns(out)}
        return self._finish(self.filter.push(frame, time_s, out))

    def flush(self) -> list[tuple[int, dict]]:
        return self._finish(self.filter.flush())

    def _finish(self, done: list[tuple[int, EnsembleOutput]]) -> list[tuple[int, dict]]:
        return [(frame, {**self.rows.pop(frame), **self.stage.columns(out)}) for frame, out in done]


class ModelStage:
    """A bundle's ensemble on a device, with the smoothing the user chose; `threads`: how many of its members
    may run at once on CPU (`Ensemble`)."""

    def __init__(self, bundle: Bundle, device: str, smooth: str = "gauss", note: str = "", threads: int = 1):
        self.bundle = bundle
        self.note = note
        self.smooth = SmoothSpec.parse(smooth)
        self.max_gap_s = self.smooth.max_gap_s
        self.ensemble = Ensemble(bundle, device, threads=threads)
        self.template = crop_template(bundle.input)
        # False when the geometry stage measures blendshapes and pose itself: its columns replace the
        # bundle's distilled estimates of them.
        self.geometry_columns = True

    @cached_property
    def manifest_sha256(self) -> str:
        """SHA-256 of the bundle's manifest as JSON (its identity in a table's settings), computed once: a
        manifest with its training provenance is hundreds of KB, 30 ms to serialise, and a run asks for it
        for every video it checks or writes."""
        manifest = json.dumps(self.bundle.to_manifest(), sort_keys=True, default=str)
        return hashlib.sha256(manifest.encode()).hexdigest()

    def schema(self) -> TableSchema:
        """The table columns of this bundle's tasks."""
        tasks = self.bundle.tasks
        return TableSchema(
            au_names=list(self.bundle.au_names) if "AU" in tasks else [],
            expr_names=list(self.bundle.expr_names) if "EXPR" in tasks else [],
            has_va="VA" in tasks,
            bs_names=list(self.bundle.bs_names) if "BS" in tasks and self.geometry_columns else [],
            has_pose="POSE" in tasks and self.geometry_columns,
            bs_raw_names=self._raw_names(),
        )

    def _raw_names(self) -> list[str]:
        """The blendshapes written unsmoothed too: RAW_BLENDSHAPES the bundle has, when a filter changes them."""
        if "BS" not in self.bundle.tasks or not self.geometry_columns:
            return []
        if self.smooth.kind == "none" and not self.ensemble.temporal:
            return []
        return [name for name in RAW_BLENDSHAPES if name in self.bundle.bs_names]

    def raw_columns(self, out: EnsembleOutput) -> dict:
        """Cells of the unsmoothed blendshapes of one row (before any temporal filter)."""
        index = {name: k for k, name in enumerate(self.bundle.bs_names)}
        return {f"bs_{name}_raw": round(float(out.bs_prob[0, index[name]]), 5) for name in self._raw_names()}

    def summary(self) -> str:
        """One line for the console: which bundle, how many members, which tasks, temporal model."""
        return bundle_summary(self.bundle, self.smooth.kind)

    def describe(self) -> dict:
        """What the sidecar records about the model: the manifest (checksums, thresholds) and the smoothing."""
        return {
            "bundle": self.bundle.name,
            "path": str(self.bundle.path),
            "manifest": self.bundle.to_manifest(),
            "smoothing": {"kind": self.smooth.kind, "sigma_s": self.smooth.sigma_s, "max_gap_s": self.max_gap_s},
            "note": self.note,
        }

    def predict(self, crops, rotation_deg: np.ndarray | None = None) -> list[EnsembleOutput]:
        """One-row ensemble outputs for crops [M,3,S,S] uint8, in order.

        rotation_deg [M]: how far alignment turned each face (clockwise as seen, degrees); the network
        sees upright crops, so the head's roll in the frame is its roll in the crop plus this angle.
        """
        out = self.ensemble(crops)
        if out.pose is not None and rotation_deg is not None:
            out.pose[:, 2] = (out.pose[:, 2] + rotation_deg + 180.0) % 360.0 - 180.0
        return [out[i] for i in range(len(out))]

    def new_filter(self) -> _RowFilter:
        """A temporal filter for one face track."""
        return _RowFilter(self)

    def columns(self, out: EnsembleOutput) -> dict:
        """Table cells of one (smoothed) row: probabilities, decisions, VA and spreads."""
        cells: dict = {}
        decision = decide(out, self.bundle)
        if out.au_prob is not None:
            for k, au in enumerate(self.bundle.au_names):
                cells[f"{au_column(au)}_prob"] = round(float(out.au_prob[0, k]), 5)
                cells[au_column(au)] = int(decision.au[0, k])
            cells["au_std"] = round(float(out.au_std[0].mean()), 5)
        if out.expr_prob is not None:
            names = self.bundle.expr_names
            cells["expression"] = names[int(decision.expression[0])]
            for k, name in enumerate(names):
                cells[f"expr_{name}"] = round(float(out.expr_prob[0, k]), 5)
            cells["expr_std"] = round(float(out.expr_std[0].mean()), 5)
        if out.valence is not None:
            cells["valence"] = round(float(out.valence[0]), 5)
            cells["arousal"] = round(float(out.arousal[0]), 5)
            cells["valence_std"] = round(float(out.valence_std[0]), 5)
            cells["arousal_std"] = round(float(out.arousal_std[0]), 5)
        if out.bs_prob is not None and self.geometry_columns:
            for k, name in enumerate(self.bundle.bs_names):
                cells[f"bs_{name}"] = round(float(out.bs_prob[0, k]), 5)
            cells["bs_std"] = round(float(out.bs_std[0].mean()), 5)
        if out.pose is not None and self.geometry_columns:
            for k, angle in enumerate(("yaw", "pitch", "roll")):
                cells[f"pose_{angle}"] = round(float(out.pose[0, k]), 3)
            cells["pose_std"] = round(float(out.pose_std[0].mean()), 3)
        return cells
