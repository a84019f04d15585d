"""The model stage of the pipeline: a bundle's ensemble on face crops, per-face temporal filters, and the
table columns the bundle provides.

Everything about the model comes from the bundle: the crop template and size, the tasks and their label
names, the AU thresholds, the temporal model. Decisions (AU 0/1, expression label) are made after the
temporal filter, from the smoothed probabilities.
"""


from fer_annotate.align import CropTemplate
from fer_annotate.bundle import Bundle, InputSpec
from fer_annotate.ensemble import Ensemble, EnsembleOutput, decide
from fer_annotate.output import TableSchema, au_column
from fer_annotate.temporal import SmoothSpec, TrackFilter


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
        self.rows[frame] = row
        return self._finish(self.filter.push(frame, time_s, out))

    def flush(self) -> list[tuple[int, dict]]:
        return self._finish(self.filter.flush())

    def _finish(self, done: list[tuple[int, EnsembleOutput]]) -> list[tuple[int, dict]]:
        return [(frame, {**self.rows.pop(frame), **self.stage.columns(out)}) for frame, out in done]


class ModelStage:
    """A bundle's ensemble on a device, with the smoothing the user chose."""

    def __init__(self, bundle: Bundle, device: str, smooth: str = "gauss", note: str = ""):
        self.bundle = bundle
        self.note = note
        self.smooth = SmoothSpec.parse(smooth)
        self.max_gap_s = self.smooth.max_gap_s
        self.ensemble = Ensemble(bundle, device)
        self.template = crop_template(bundle.input)

    def schema(self) -> TableSchema:
        """The table columns of this bundle's tasks."""
        tasks = self.bundle.tasks
        return TableSchema(
            au_names=list(self.bundle.au_names) if "AU" in tasks else [],
            expr_names=list(self.bundle.expr_names) if "EXPR" in tasks else [],
            has_va="VA" in tasks,
        )

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

    def predict(self, crops) -> list[EnsembleOutput]:
        """One-row ensemble outputs for crops [M,3,S,S] uint8, in order."""
        out = self.ensemble(crops)
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
        return cells
