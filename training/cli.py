"""fer-train: teacher, students, export and evaluation from the command line.

    fer-train teacher --folders DATA/train --val-folders DATA/val --out RUN
    fer-train student --teacher RUN --students 5 --out RUN2
    fer-train export RUN2 -o BUNDLE
    fer-train evaluate BUNDLE [BUNDLE...] --folders DATA/val

Settings come from the defaults, then a TOML file (--config), then the options given. A rerun of the
same command resumes an interrupted run.
"""

import json
import os
import shlex
import sys
from pathlib import Path

import click

from fer_annotate import __version__
from fer_annotate.cli.help import Group, option_panel
from fer_annotate.cli.params import DEVICE, NON_NEGATIVE, POSITIVE, POSITIVE_INT
from fer_annotate.media.display import visible
from training.config import TrainConfig, apply, load_toml, read_run_config, to_dict
from training.data import DataError

# Options that train a network (shared by teacher and student); value None = not given.
TRAIN_OPTIONS = [
    click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
                 help="TOML file of settings (TrainConfig fields, [augment], [loss]); options override it."),
    click.option("--abaw", multiple=True, help="Aff-Wild2/ABAW root (training split). Repeatable."),
    click.option("--manifest", multiple=True, metavar="CSV[@IMAGES]",
                 help="CSV manifest: path + AU / expression or votes / valence,arousal / bs_*, pose_*; image paths "
                      "relative to IMAGES (default: the CSV's folder). Repeatable."),
    click.option("--folders", multiple=True, help="Expression folders: DIR/<class>/*.jpg. Repeatable."),
    click.option("--val-abaw", multiple=True, help="ABAW root for validation (its Validation_Set)."),
    click.option("--val-manifest", multiple=True, metavar="CSV[@IMAGES]", help="CSV manifest for validation."),
    click.option("--val-folders", multiple=True, help="Expression folders for validation."),
    click.option("--cache", help="Folder for the decoded-image cache (default RUN/cache, students: the teacher's)."),
    click.option("--backbone", help="resnet18 | mobilenet_v3_small | small_cnn | caffe_resnet50."),
    click.option("--backbone-kwargs", help='JSON, e.g. \'{"width": 32, "depths": [2, 2, 2, 2]}\'.'),
    click.option("--init", help="scratch | imagenet | PATH of a bundle whose backbone to start from."),
    click.option("--size", type=POSITIVE_INT, help="Input size in pixels (square)."),
    click.option("--colour", type=click.Choice(["rgb", "gray"]), help="Input colour."),
    click.option("--scale", type=POSITIVE, help="Input scale: network sees uint8/255*scale (255 for 0-255)."),
    click.option("--mean", help="JSON list: per-channel mean subtracted after scaling."),
    click.option("--std", help="JSON list: per-channel std divided by."),
    click.option("--template", help="JSON [[x,y] x4]: crop template recorded in the bundle (eyes, nose, mouth)."),
    click.option("--box-scale", type=POSITIVE, help="Crop side / detector box side, recorded in the bundle."),
    click.option("--epochs", type=POSITIVE_INT, help="Epochs (paper: teacher 8, students 3)."),
    click.option("--batch-size", type=POSITIVE_INT, help="Images per task per step (paper: 20)."),
    click.option("--lr", type=POSITIVE, help="Learning rate (paper: 1e-4)."),
    click.option("--betas", help="JSON [b1, b2] of Adam (paper: [0.5, 0.999])."),
    click.option("--weight-decay", type=NON_NEGATIVE, help="Decoupled weight decay (AdamW; 0 = Adam)."),
    click.option("--schedule", type=click.Choice(["constant", "cosine", "onecycle"]), help="Learning-rate schedule."),
    click.option("--steps-per-epoch", type=POSITIVE_INT, help="Steps per epoch (default: largest task / batch size)."),
    click.option("--expr-labels", type=click.Choice(["votes", "majority"]),
                 help="Expression target where the data has votes: their distribution (default) or the majority."),
    click.option("--balance", help="Tasks to balance, comma separated, or 'none' (default AU,EXPR,VA)."),
    click.option("--zoom", callback=lambda ctx, param, value: _zoom(value),
                 help="Random crop zoom range MIN,MAX (default 1,1.196 = 112 of 134)."),
    click.option("--rotate", type=NON_NEGATIVE, help="Random rotation, degrees (default 0)."),
    click.option("--flip/--no-flip", default=None, help="Random horizontal flip (default on)."),
    click.option("--colour-jitter", type=NON_NEGATIVE, help="Brightness/contrast jitter amplitude (default 0 = off)."),
    click.option("--erase", type=click.FloatRange(0, 1), help="Probability of random erasing per image (default 0)."),
    click.option("--temperature", type=POSITIVE, help="Distillation temperature (paper: 1.5)."),
    click.option("--metrics", type=click.Choice(["2020", "2022"]), help="ABAW metric definitions (default 2020)."),
    click.option("--seed", type=int, help="Random seed (default 0)."),
    click.option("--device", type=DEVICE, help="auto | cpu | cuda | cuda:N."),
    click.option("--amp/--no-amp", default=None, help="bfloat16 autocast + channels_last on CUDA (default on)."),
    click.option("--threads", type=POSITIVE_INT, help="CPU threads for torch and image decoding."),
    click.option("--overwrite", is_flag=True, help="Start over in an existing --out folder."),
]


# How `fer-train teacher|student|temporal --help` groups them.
TRAIN_PANELS = {
    "Data": ["--config", "--abaw", "--manifest", "--folders", "--val-abaw", "--val-manifest", "--val-folders",
             "--cache", "--expr-labels", "--balance"],
    "Network and input": ["--backbone", "--backbone-kwargs", "--init", "--size", "--colour", "--scale", "--mean",
                          "--std", "--template", "--box-scale"],
    "Optimisation": ["--epochs", "--batch-size", "--lr", "--betas", "--weight-decay", "--schedule",
                     "--steps-per-epoch", "--temperature", "--metrics", "--seed"],
    "Augmentation": ["--zoom", "--rotate", "--flip", "--colour-jitter", "--erase"],
    "Run": ["--out", "--device", "--amp", "--threads", "--overwrite"],
}


def train_options(f):
    for option in reversed(TRAIN_OPTIONS):
        f = option(f)
    for name, options in reversed(TRAIN_PANELS.items()):
        f = option_panel(name, options=options)(f)
    return f


def _json(text: str | None, name: str):
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise click.BadParameter(f"not JSON ({e})", param_hint=f"--{name}") from None


def _source_path(text: str) -> str:
    """An absolute source path; a manifest's CSV@IMAGE_ROOT keeps both parts."""
    return "@".join(str(Path(part).resolve()) for part in text.split("@", 1))


def _zoom(text: str | None) -> tuple[float, float] | None:
    """--zoom MIN,MAX: two finite positive numbers, MIN <= MAX."""
    if text is None:
        return None
    try:
        lo, hi = (POSITIVE.convert(v.strip(), None, None) for v in text.split(","))
    except (ValueError, click.BadParameter):
        raise click.BadParameter(f"{text!r} is not MIN,MAX (two positive numbers)", param_hint="--zoom") from None
    if lo > hi:
        raise click.BadParameter(f"{text!r}: MIN is larger than MAX", param_hint="--zoom")
    return lo, hi


def _sources(kw: dict, prefix: str) -> list[dict] | None:
    sources = [{"kind": kind, "path": _source_path(p)}
               for kind in ("abaw", "manifest", "folders") for p in kw.get(prefix + kind) or ()]
    return sources or None


def _settings(kw: dict) -> dict:
    """TrainConfig settings from the option values given (None for those not given)."""
    balance = kw["balance"]
    if balance is not None:
        balance = [] if balance.strip().lower() == "none" else [t.strip().upper() for t in balance.split(",") if t]
    augment = {"rotate": kw["rotate"], "flip": kw["flip"], "colour": kw["colour_jitter"], "erase": kw["erase"]}
    if kw["zoom"]:
        lo, hi = kw["zoom"]
        augment |= {"zoom_min": lo, "zoom_max": hi}
    return {
        "train": _sources(kw, ""), "val": _sources(kw, "val_"), "cache": kw["cache"],
        "backbone": kw["backbone"], "backbone_kwargs": _json(kw["backbone_kwargs"], "backbone-kwargs"),
        "init": kw["init"] if kw["init"] in (None, "scratch", "imagenet") else str(Path(kw["init"]).resolve()),
        "size": kw["size"], "colour": kw["colour"], "scale": kw["scale"], "mean": _json(kw["mean"], "mean"),
        "std": _json(kw["std"], "std"), "template": _json(kw["template"], "template"), "box_scale": kw["box_scale"],
        "epochs": kw["epochs"], "batch_size": kw["batch_size"], "lr": kw["lr"], "betas": _json(kw["betas"], "betas"),
        "weight_decay": kw["weight_decay"], "schedule": kw["schedule"], "steps_per_epoch": kw["steps_per_epoch"],
        "balance": balance, "expr_labels": kw["expr_labels"],
        "augment": {k: v for k, v in augment.items() if v is not None},
        "loss": {"temperature": kw["temperature"]} if kw["temperature"] is not None else None,
        "metrics": kw["metrics"], "seed": kw["seed"], "device": kw["device"], "amp": kw["amp"],
        "threads": kw["threads"],
    }


def _command() -> str:
    """The exact command line of this invocation (recorded in the run and the bundle)."""
    return shlex.join(["fer-train", *click.get_current_context().meta.get("argv", sys.argv[1:])])


def _main_rank() -> bool:
    """False on the other ranks of a torchrun launch (rank 0 reports)."""
    return os.environ.get("RANK", "0") == "0"


def _fail(e: Exception) -> None:
    raise click.ClickException(visible(str(e))) from None


class _Group(Group):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["argv"] = list(args)
        return super().parse_args(ctx, args)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fer-train")
def main() -> None:
    """Train the multitask teacher-student models of Deng, Chen and Shi (2020) and export bundles."""


@main.command()
@train_options
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder.")
def teacher(out: str, config_file: str | None, overwrite: bool, **kw) -> None:
    """Train a teacher on partially labelled data (each batch: ground truth of its own task only)."""
    from training.loop import RunError, run_teacher

    try:
        cfg = TrainConfig()
        if config_file:
            cfg = apply(cfg, load_toml(config_file), config_file)
        cfg = apply(cfg, _settings(kw) | {"command": _command()})
        summary = run_teacher(cfg, out, overwrite, log=lambda s: click.echo(s, err=True))
    except (ValueError, DataError, RunError, FileNotFoundError) as e:
        _fail(e)
    if _main_rank():
        if summary["val"] is None:
            click.echo(f"teacher: no validation data, the last epoch ({summary['best_epoch']}) is kept, in {out}")
        else:
            click.echo(f"teacher: best epoch {summary['best_epoch']} (score {summary['best_score']:.4f}) in {out}")


@main.command()
@click.option("--teacher", "teacher_run", required=True, type=click.Path(exists=True, file_okay=False),
              help="Teacher run folder (or a student run: its last round's ensemble teaches), or a bundle "
                   "folder (its members teach; give the data).")
@click.option("--students", type=POSITIVE_INT, help="Students per round (paper: 5).")
@click.option("--rounds", type=POSITIVE_INT,
              help="Rounds; each later round distils from the previous round's ensemble.")
@train_options
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder.")
def student(out: str, teacher_run: str, students: int | None, rounds: int | None, config_file: str | None,
            overwrite: bool, **kw) -> None:
    """Distil students from a teacher run: soft labels on every head + ground truth on the batch's task.

    Data, network and input settings default to the teacher run's (a bundle gives only the network and
    input); epochs default to 3 (paper)."""
    from fer_annotate.models.bundle import BundleError
    from training.loop import RunError, bundle_config, is_bundle, run_students

    try:
        base = bundle_config(teacher_run) if is_bundle(teacher_run) else read_run_config(teacher_run)
        data = to_dict(base) | {"epochs": 3, "students": 5, "rounds": 1, "teacher": str(Path(teacher_run).resolve())}
        cfg = apply(TrainConfig(), data)
        if config_file:
            cfg = apply(cfg, load_toml(config_file), config_file)
        cfg = apply(cfg, _settings(kw) | {"students": students, "rounds": rounds, "command": _command()})
        for name in ("size", "colour", "scale", "mean", "std"):
            if getattr(cfg, name) != getattr(base, name):
                raise ValueError(f"--{name} must match the teacher's ({getattr(base, name)}): it sees the same images")
        summary = run_students(cfg, out, overwrite, log=lambda s: click.echo(s, err=True))
    except (ValueError, DataError, RunError, BundleError, FileNotFoundError) as e:
        _fail(e)
    last = summary["rounds"][-1]
    text = f" ensemble score {last['ensemble_val']['score']:.4f}" if "ensemble_val" in last else ""
    if _main_rank():
        click.echo(f"students: {len(last['members'])} in {out}{text}")


@main.command()
@click.option("--cnn", "cnn_run", required=True, type=click.Path(exists=True, file_okay=False),
              help="Finished CNN run (teacher or students): one CNN-RNN per member, on its frozen CNN.")
@click.option("--seq-len", type=POSITIVE_INT, help="Frames per window (paper: 32).")
@click.option("--seq-stride", type=POSITIVE_INT, help="Training window stride (paper: 16).")
@train_options
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder.")
def temporal(out: str, cnn_run: str, seq_len: int | None, seq_stride: int | None, config_file: str | None,
             overwrite: bool, **kw) -> None:
    """Train the CNN-RNN: per-task bidirectional GRU heads on the frozen CNN, over video windows (--abaw data).

    Settings default to the CNN run's; epochs default to 3 (paper)."""
    from training.loop import RunError
    from training.temporal import run_temporal

    try:
        base = read_run_config(cnn_run)
        data = to_dict(base) | {"epochs": 3, "teacher": None, "cnn": str(Path(cnn_run).resolve())}
        cfg = apply(TrainConfig(), data)
        if config_file:
            cfg = apply(cfg, load_toml(config_file), config_file)
        cfg = apply(cfg, _settings(kw) | {"seq_len": seq_len, "seq_stride": seq_stride, "command": _command()})
        for name in ("size", "colour", "scale", "mean", "std", "backbone", "backbone_kwargs"):
            if getattr(cfg, name) != getattr(base, name):
                raise ValueError(f"--{name.replace('_', '-')} must match the CNN run's ({getattr(base, name)})")
        summary = run_temporal(cfg, out, overwrite, log=lambda s: click.echo(s, err=True))
    except (ValueError, DataError, RunError, FileNotFoundError) as e:
        _fail(e)
    click.echo(f"CNN-RNN: {len(summary['members'])} member(s) in {out}")


@main.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Bundle folder to write.")
@click.option("--name", help="Bundle name (default: the folder name).")
@click.option("--template", help="JSON [[x,y] x4]: crop template (overrides the run's).")
@click.option("--box-scale", type=POSITIVE, help="Crop side / detector box side (overrides the run's).")
@click.option("--threshold-rule", type=click.Choice(["break_even", "f1"]), default="break_even",
              help="Per-AU threshold tuning on validation: precision = recall (paper) or best F1.")
@click.option("--provenance", "provenance_file", type=click.Path(exists=True, dir_okay=False),
              help="JSON object merged into the bundle's provenance.")
@click.option("--device", type=DEVICE, default="cpu", help="Device for the validation pass.")
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle folder.")
def export(run: str, out: str, name: str | None, template: str | None, box_scale: float | None,
           threshold_rule: str, provenance_file: str | None, device: str, overwrite: bool) -> None:
    """Write a weights bundle from a teacher run (1 member), a student run (its last round's students) or a
    CNN-RNN run (fer-train temporal)."""
    from fer_annotate.models.bundle import BundleError
    from training.export import export_run
    from training.loop import RunError

    try:
        extra = json.loads(Path(provenance_file).read_text()) if provenance_file else None
        bundle, metrics = export_run(run, out, name, _json(template, "template"), box_scale, threshold_rule, extra,
                                     _command(), overwrite, device)
    except (ValueError, DataError, RunError, BundleError, FileNotFoundError) as e:
        _fail(e)
    click.echo(f"bundle {bundle.name}: {len(bundle.members)} member(s), tasks {bundle.tasks} -> {out}")
    if "ensemble" in metrics:
        from training.evaluation import summary_line

        click.echo(f"validation ensemble: {summary_line(metrics['ensemble'])}")


@main.command()
@click.argument("bundles", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--abaw", multiple=True, help="ABAW root (see --split).")
@click.option("--split", type=click.Choice(["train", "val"]), default="val", help="ABAW split (default val).")
@click.option("--manifest", multiple=True, help="CSV manifest.")
@click.option("--folders", multiple=True, help="Expression folders.")
@click.option("--tuning", is_flag=True,
              help="Score only the FER+ tuning split of the data (FER+ train images no training run sees).")
@click.option("--tta", type=click.Choice(["none", "flip"]),
              help="Test-time augmentation: flip also runs every member on the mirrored crops (twice the cost); "
                   "default: the (first) bundle's own.")
@click.option("--average", type=click.Choice(["probs", "logits"]), default="probs", show_default=True,
              help="Ensemble mean of probabilities (as fer-annotate) or of logits.")
@click.option("--metrics", type=click.Choice(["2020", "2022"]), default="2020", help="ABAW metric definitions.")
@click.option("--device", type=DEVICE, default="cpu")
@click.option("--threads", type=POSITIVE_INT, default=2)
@click.option("--cache", help="Folder to cache the decoded images in.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Also write the metrics as JSON here.")
def evaluate(bundles, abaw, split, manifest, folders, tuning, tta, average, metrics, device, threads, cache,
             json_out) -> None:
    """ABAW metrics of a bundle (ensemble and each member) on labelled images; several bundles are scored
    as one ensemble of all their members."""
    import torch

    from fer_annotate.models.bundle import BundleError
    from training.data import merge, read_source
    from training.evaluation import evaluate_bundle, summary_line
    from training.tuning import only_tuning

    sources = [("abaw", p) for p in abaw] + [("manifest", p) for p in manifest] + [("folders", p) for p in folders]
    if not sources:
        raise click.UsageError("give data: --abaw, --manifest or --folders")
    try:
        torch.set_num_threads(threads)
        table = merge([read_source(kind, path, split) for kind, path in sources])
        if tuning:
            table = only_tuning(table)
        result = evaluate_bundle(list(bundles), table, device, metrics, threads, cache, tta=tta, average=average)
    except (ValueError, DataError, BundleError) as e:
        _fail(e)
    for note in table.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"{result['bundle']} on {result['images']} images ({metrics} metrics)")
    click.echo(f"  ensemble  {summary_line(result['ensemble'])}")
    for k, m in enumerate(result["members"]):
        click.echo(f"  member {k}  {summary_line(m)}")
    expr = result["ensemble"]["tasks"].get("EXPR")
    if expr and table.expr_soft is not None:
        click.echo(f"  ensemble on the raters' votes: majority-vote accuracy {expr['acc']:.4f}, macro-F1 "
                   f"{expr['f1']:.4f}, expression score (0.67 F1 + 0.33 acc) {expr['score']:.4f}")
    if expr:
        click.echo("  ensemble confusion (rows true, columns predicted):")
        for row in expr["confusion"]:
            click.echo("    " + " ".join(f"{v:6d}" for v in row))
    if json_out:
        Path(json_out).write_text(json.dumps(result, indent=2) + "\n")


@main.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Bundle folder to write.")
@click.option("--name", help="Bundle name (default: the folder name).")
@click.option("--members", help="Comma-separated positions among all the sources' members (default: all).")
@click.option("--tta", type=click.Choice(["none", "flip"]), default="none", show_default=True,
              help="Test-time augmentation the bundle asks for: flip runs each member on the mirrored crop too.")
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle folder.")
def pack(sources, out: str, name: str | None, members: str | None, tta: str, overwrite: bool) -> None:
    """Write a bundle of the members of other bundles (e.g. a teacher with its students, or one network
    with flip test-time augmentation); their provenance is kept."""
    from fer_annotate.models.bundle import BundleError
    from training.pack import pack_bundle

    try:
        chosen = [int(v) for v in members.split(",")] if members else None
        bundle = pack_bundle(list(sources), out, name or Path(out).name, tta, chosen, overwrite)
    except ValueError:
        raise click.BadParameter(f"{members!r} is not a comma-separated list of integers",
                                 param_hint="--members") from None
    except BundleError as e:
        _fail(e)
    click.echo(f"bundle {bundle.name}: {len(bundle.members)} member(s), tta {bundle.tta} -> {out}")


@main.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option("--ferplus", required=True, type=click.Path(exists=True, file_okay=False),
              help="FER2013 folder with train/, val/ and ferplus_{train,val}.csv.")
@click.option("--frames-per-s", type=POSITIVE, help="Frames/s of the default run on one thread "
              "(benchmarks/pipeline_benchmark.py --threads 1), recorded as measured.")
@click.option("--saw-tuning", is_flag=True,
              help="The bundle's networks were trained on the tuning split (made before it existed).")
@click.option("--threads", type=POSITIVE_INT, default=1)
@click.option("--cache", help="Folder to cache the decoded images in.")
def figures(bundle: str, ferplus: str, frames_per_s: float | None, saw_tuning: bool, threads: int,
            cache: str | None) -> None:
    """Measure a bundle's FER+ validation accuracy and macro-F1, tuning-split accuracy, network passes per
    face and size, and record them in its manifest (`fer-annotate weights list` prints them)."""
    import torch

    from fer_annotate.models.bundle import BundleError, load_bundle
    from training.data import read_manifest
    from training.evaluation import evaluate_bundle
    from training.pack import bundle_size_mb, write_figures
    from training.tuning import only_tuning

    root = Path(ferplus)
    try:
        torch.set_num_threads(threads)
        b = load_bundle(bundle)
        val = read_manifest(root / "ferplus_val.csv", root / "val")
        tuning = only_tuning(read_manifest(root / "ferplus_train.csv", root / "train"))
        tta = b.tta
        v = evaluate_bundle(bundle, val, threads=threads, cache=cache, tta=tta)["ensemble"]["tasks"]["EXPR"]
        t = evaluate_bundle(bundle, tuning, threads=threads, cache=cache, tta=tta)["ensemble"]["tasks"]["EXPR"]
        values = {"network_passes": len(b.members) * (2 if tta == "flip" else 1),
                  "ferplus_val_acc": round(v["acc"], 4), "ferplus_val_macro_f1": round(v["f1"], 4),
                  "ferplus_val_images": len(val), "tuning_acc": round(t["acc"], 4),
                  "tuning_macro_f1": round(t["f1"], 4), "tuning_images": len(tuning),
                  "tuning_seen_in_training": saw_tuning, "size_mb": round(bundle_size_mb(b), 1)}
        if frames_per_s is not None:
            values["frames_per_s"] = frames_per_s
        recorded = write_figures(bundle, values)
    except (ValueError, DataError, BundleError) as e:
        _fail(e)
    click.echo(f"{bundle}: " + ", ".join(f"{k} {v}" for k, v in recorded.items()))


@main.command()
@click.option("--teacher", required=True, metavar="mediapipe|BUNDLE",
              help="mediapipe: MediaPipe's face landmarker (blendshapes, head pose); or a bundle folder.")
@click.option("--manifest", "manifests", multiple=True, metavar="CSV[@IMAGES]", help="Images of a CSV manifest.")
@click.option("--folders", multiple=True, help="Images of expression folders DIR/<class>/*.jpg.")
@click.option("--model", type=click.Path(dir_okay=False), help="The landmarker's .task file (default: the cache).")
@click.option("--device", default="cpu", show_default=True, help="Device of a bundle teacher.")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="The labelled manifest (CSV).")
def label(teacher: str, manifests, folders, model, device, out) -> None:
    """Label images with a teacher's soft targets into a manifest that fer-train reads (their own
    expression labels carried along), for distilling the teacher into students."""
    from rich.progress import Progress

    from fer_annotate.faces.geometry import GeometryError
    from training.data import merge, read_source
    from training.label import expression_columns, label_bundle, label_mediapipe, write_labels

    sources = [("manifest", p) for p in manifests] + [("folders", p) for p in folders]
    if not sources:
        raise click.UsageError("give images: --manifest or --folders")
    try:
        table = merge([read_source(kind, _source_path(path)) for kind, path in sources])
        with Progress(transient=True) as progress:
            task = progress.add_task(f"labelling with {teacher}", total=len(table))

            def advance(done: int, total: int) -> None:
                progress.update(task, completed=done)

            if teacher == "mediapipe":
                labels = label_mediapipe(table.paths, model, advance)
            else:
                labels = label_bundle(table.paths, teacher, device, advance)
        names = {"ferplus_name": table.ferplus_names} if table.ferplus_names else {}
        found = write_labels(out, table.paths, labels, names | expression_columns(table))
    except (GeometryError, DataError, ValueError) as e:
        _fail(e)
    click.echo(f"{out}: {len(table)} images, {found} labelled by {teacher} ({found / max(len(table), 1):.1%})")


@main.command()
@click.option("--videos", "video_dirs", multiple=True, required=True, type=click.Path(exists=True),
              help="A video file or a folder of videos (searched recursively). Repeatable.")
@click.option("--bundle", type=click.Path(exists=True),
              help="The bundle whose crop geometry (template, size, box scale) the saved crops follow.")
@click.option("--size", type=click.IntRange(min=8), help="Without --bundle: crop size in pixels.")
@click.option("--template", help="Without --bundle: JSON [[x,y] x4], unit crop positions of eyes, nose, mouth.")
@click.option("--box-scale", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Without --bundle: crop side / detector box side.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True,
              help="Frames sampled per second of video.")
@click.option("--detector", default="blazeface", show_default=True, help="Face detector (as fer-annotate).")
@click.option("--model", type=click.Path(dir_okay=False), help="The landmarker's .task file (default: the cache).")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Folder for crops + labels.csv.")
def harvest(video_dirs, bundle, size, template, box_scale, fps, detector, model, out) -> None:
    """Cut the faces of videos into crops as the bundle sees them and label them with MediaPipe's face
    landmarker (blendshapes, head pose): unlabelled footage becomes distillation data."""
    from fer_annotate.faces.detect import DetectorError
    from fer_annotate.faces.geometry import GeometryError, Landmarker
    from fer_annotate.media.video import VideoError, find_videos
    from fer_annotate.models.bundle import BundleError, InputSpec, load_bundle
    from training.harvest import HarvestConfig, harvest_faces

    if (bundle is None) == (size is None):
        raise click.UsageError("give the crop geometry: --bundle, or --size (with --template, --box-scale)")
    videos = [v for d in map(Path, video_dirs) for v in (find_videos(d) if d.is_dir() else [d])]
    try:
        spec = load_bundle(bundle).input if bundle else InputSpec(size=size, box_scale=box_scale)
        if template is not None:
            spec.template = _json(template, "template")
        with Landmarker(model) as landmarker:
            labels = harvest_faces(videos, Path(out), spec, HarvestConfig(fps=fps, detector=detector), landmarker,
                                   log=lambda s: click.echo(s, err=True))
    except (BundleError, DetectorError, GeometryError, VideoError) as e:
        _fail(e)
    click.echo(f"{labels}: faces of {len(videos)} video(s)")


@main.command()
@click.option("--teacher", type=click.Choice(["mediapipe"]), required=True,
              help="The geometry teacher that labels the faces (MediaPipe's face landmarker).")
@click.option("--videos", "video_dirs", multiple=True, required=True, type=click.Path(exists=True),
              help="Your footage: video files or folders (searched recursively). Repeatable.")
@click.option("--val-videos", multiple=True, type=click.Path(exists=True),
              help="Held-out footage (other videos than --videos) to score the students on.")
@click.option("--init", "init_bundle", default=None, metavar="NAME|PATH",
              help="The bundle to adapt (default: the shipped offline bundle); it is also the expression teacher.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True,
              help="Frames sampled per second of video.")
@click.option("--detector", default="blazeface", show_default=True, help="Face detector (as fer-annotate).")
@click.option("--model", type=click.Path(dir_okay=False), help="The landmarker's .task file (default: the cache).")
@click.option("--epochs", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=5e-4, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=2), default=64, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for torch.")
@click.option("--device", default="auto", show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="The run folder.")
@click.option("--overwrite", is_flag=True, help="Start over in an existing --out folder.")
def distill(teacher, video_dirs, val_videos, init_bundle, fps, detector, model, epochs, lr, batch_size, threads,
            device, out, overwrite) -> None:
    """Adapt a bundle's students to your own footage: faces of your videos, labelled by MediaPipe's face
    landmarker (blendshapes, head pose), are learnt by each of the bundle's members while the bundle itself
    keeps teaching the expressions it knows. Then: fer-train export OUT -o NEW_BUNDLE."""
    from fer_annotate.faces.detect import DetectorError
    from fer_annotate.faces.geometry import GeometryError, Landmarker
    from fer_annotate.media.video import VideoError, find_videos
    from fer_annotate.models.bundle import BundleError
    from fer_annotate.models.weights import resolve_bundle
    from training.harvest import HarvestConfig, harvest_faces
    from training.loop import RunError, clear_run, run_students

    def videos(dirs) -> list[Path]:
        return [v for d in map(Path, dirs) for v in (find_videos(d) if d.is_dir() else [d])]

    log = lambda s: click.echo(s, err=True)  # noqa: E731
    try:
        bundle = resolve_bundle(init_bundle)
        out_dir = Path(out)
        if overwrite:  # start over before harvesting: the faces harvested below belong to the new run
            clear_run(out_dir, keep_cache=False)  # new faces may reuse the old ones' paths
        harvest = HarvestConfig(fps=fps, detector=detector)
        with Landmarker(model) as landmarker:
            train_csv = harvest_faces(videos(video_dirs), out_dir / "faces", bundle.input, harvest, landmarker, log)
            val_csv = (harvest_faces(videos(val_videos), out_dir / "val_faces", bundle.input, harvest, landmarker, log)
                       if val_videos else None)
        spec = bundle.input
        cfg = apply(TrainConfig(), {
            "train": [{"kind": "manifest", "path": str(train_csv.resolve())}],
            "val": [{"kind": "manifest", "path": str(val_csv.resolve())}] if val_csv else [],
            "backbone": bundle.network.backbone, "backbone_kwargs": bundle.network.backbone_kwargs,
            "init": str(bundle.path.resolve()), "init_members": True, "teacher": str(bundle.path.resolve()),
            "students": len(bundle.members), "size": spec.size, "colour": spec.colour, "scale": spec.scale,
            "mean": spec.mean, "std": spec.std, "template": spec.template, "box_scale": spec.box_scale,
            "epochs": epochs, "lr": lr, "batch_size": batch_size, "betas": [0.9, 0.999], "schedule": "cosine",
            "balance": [], "augment": {"zoom_min": 1.0, "zoom_max": 1.1, "rotate": 10.0}, "threads": threads,
            "device": device, "command": _command(),
        })
        summary = run_students(cfg, out_dir, overwrite=False, log=log)
    except (BundleError, DetectorError, GeometryError, VideoError, DataError, RunError, ValueError) as e:
        _fail(e)
    last = summary["rounds"][-1]
    text = ""
    if "ensemble_val" in last:
        before = summary.get("teacher_val")
        start = f"{before['score']:.3f}" if before and before.get("tasks") else "n/a (no head for these labels)"
        text = f"; held-out: {last['ensemble_val']['score']:.3f} adapted vs {start} for {bundle.name} before"
    click.echo(f"{len(last['members'])} students adapted from {bundle.name} in {out}{text}; "
               f"next: fer-train export {out} -o BUNDLE")


@main.command()
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--size", type=POSITIVE_INT, default=40, help="Image size.")
@click.option("--per-task", type=POSITIVE_INT, default=3000, help="Training images per single-task set.")
@click.option("--test", type=POSITIVE_INT, default=2000, help="Fully labelled validation and test images each.")
@click.option("--seed", type=int, default=0)
def synth(out: str, size: int, per_task: int, test: int, seed: int) -> None:
    """Write the procedural benchmark data: three single-task training manifests + labelled val/test."""
    from training.synthetic import write_benchmark

    paths = write_benchmark(out, size, per_task, test, seed)
    for name, path in paths.items():
        click.echo(f"{name}: {path}")


if __name__ == "__main__":
    main()
