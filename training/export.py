"""A finished run as a weights bundle: members, AU thresholds tuned on validation, provenance."""

import json
import platform
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

import fer_annotate
from fer_annotate.models.bundle import Bundle, InputSpec, TemporalSpec, load_bundle, save_bundle
from training.augment import Normalise
from training.config import read_run_config, to_dict
from training.data import Dataset, align_au, load_images, merge, read_source
from training.evaluation import predict, score
from training.loop import RunError, image_cache, is_bundle, load_member, member_dirs, network_spec
from training.metrics import tune_thresholds


def _ensure_finished(run: Path) -> None:
    for m in member_dirs(run):
        if not (m / "summary.json").is_file():
            raise RunError(f"{m}: not finished (no summary.json); rerun its command to complete it")


def _val_dataset(run: Path, cfg) -> Dataset | None:
    if not cfg.val:
        return None
    run_meta = json.loads((run / "run.json").read_text())
    table = align_au(merge([read_source(s.kind, s.path, "val") for s in cfg.val]), run_meta["au_names"])
    cache = image_cache(cfg, run)
    return Dataset(table, load_images(table.paths, cfg.size, cfg.colour, cache, cfg.threads or 2))


def _validation_outputs(run: Path, cfg, heads: dict, val: Dataset, device: torch.device):
    """Ensemble and member outputs on validation: per image for CNN runs, per window for CNN-RNN runs."""
    if cfg.cnn:
        from training.loop import setup_env
        from training.temporal import features, load_temporal, predict_sequences

        models, dirs = load_temporal(run, device)
        env = setup_env(cfg)
        feats = [features(d, "val", m.backbone, val, cfg, env) for m, d in zip(models, dirs, strict=True)]
        return predict_sequences(models, feats, val.labels, cfg.seq_len, device)
    nets = [load_member(cfg, heads, d / "best.safetensors", device) for d in member_dirs(run)]
    preds = predict(nets, val, Normalise(cfg.scale, cfg.mean, cfg.std), device, cfg.eval_batch)
    return preds.ensemble, preds.members


def _cnn_provenance(run: Path) -> dict:
    cfg = read_run_config(run)
    out = {"commands": {"student" if cfg.teacher else "teacher": cfg.command}}
    if cfg.teacher:
        out["commands"]["teacher"] = read_run_config(Path(cfg.teacher)).command
    return out


def _teacher_provenance(run: Path) -> dict:
    cfg = read_run_config(run)
    summary = json.loads((run / "summary.json").read_text())
    meta = json.loads((run / "run.json").read_text())
    return {"command": cfg.command, "config": to_dict(cfg), "best_epoch": summary["best_epoch"],
            "val": summary["val"], "train_counts": meta["train_counts"], "val_counts": meta["val_counts"]}


def _teacher_bs_names(cfg) -> list[str] | None:
    """The blendshape names of a bundle teacher: a student whose data has no blendshapes learns its BS head
    from the teacher alone."""
    return load_bundle(cfg.teacher).bs_names or None if cfg.teacher and is_bundle(cfg.teacher) else None


def export_run(
    run: str | Path,
    out: str | Path,
    name: str | None = None,
    template: list[list[float]] | None = None,
    box_scale: float | None = None,
    threshold_rule: str = "break_even",
    extra_provenance: dict | None = None,
    command: str = "",
    overwrite: bool = False,
    device: str = "cpu",
) -> tuple[Bundle, dict]:
    """Write the bundle of a teacher run (one member) or a student run (its last round's students).

    AU thresholds are tuned on the run's validation data with the ensemble (precision = recall per AU by
    default); validation metrics of the teacher, each member and the ensemble go into the provenance.
    Returns the bundle and the metrics.
    """
    run, out = Path(run), Path(out)
    _ensure_finished(run)
    cfg = read_run_config(run)
    meta = json.loads((run / "run.json").read_text())
    dirs = member_dirs(run)
    heads = json.loads((dirs[0] / "summary.json").read_text())["heads"]
    states = [load_file(str(d / "best.safetensors")) for d in dirs]
    val = _val_dataset(run, cfg)
    thresholds = [0.5] * heads.get("AU", 0)
    metrics: dict = {}
    if val is not None:
        ensemble, members = _validation_outputs(run, cfg, heads, val, torch.device(device))
        if "AU" in heads and val.labels.has("AU").any():
            m = val.labels.has("AU")
            thresholds = tune_thresholds(ensemble.au_prob[m], val.labels.au[m], threshold_rule)
        metrics["ensemble"] = score(ensemble, val.labels, thresholds, cfg.metrics)
        metrics["ensemble_threshold_0.5"] = score(ensemble, val.labels, 0.5, cfg.metrics)
        metrics["members"] = [score(p, val.labels, 0.5, cfg.metrics) for p in members]
    provenance = {
        "made_by": f"fer-train (fer-annotate {getattr(fer_annotate, '__version__', '?')}, torch {torch.__version__}, "
                   f"python {platform.python_version()})",
        "method": "Deng, Chen, Shi 2020: multitask teacher on partial labels, students distilled from it",
        "data": {"train": [to_dict(s) for s in cfg.train], "val": [to_dict(s) for s in cfg.val],
                 "train_counts": meta["train_counts"], "val_counts": meta["val_counts"]},
        "commands": {"export": command},
        "val_metrics": metrics,
        "au_threshold_rule": threshold_rule if "AU" in heads else None,
        "metrics_edition": f"ABAW {cfg.metrics}",
    }
    if cfg.cnn:
        provenance["commands"]["temporal"] = cfg.command
        provenance["temporal"] = {"seq_len": cfg.seq_len, "train_stride": cfg.seq_stride, "epochs": cfg.epochs,
                                  "cnn_run": cfg.cnn, "cnn_bundle_provenance": _cnn_provenance(Path(cfg.cnn))}
    elif cfg.teacher and is_bundle(cfg.teacher):
        provenance["commands"]["student"] = cfg.command
        provenance["teacher"] = {"bundle": str(cfg.teacher), "provenance": load_bundle(cfg.teacher).provenance}
        provenance["students"] = {"count": cfg.students, "epochs": cfg.epochs, "config": to_dict(cfg),
                                  "init": ("each student from the matching member of the teacher bundle"
                                           if cfg.init_members else cfg.init)}
    elif cfg.teacher:
        provenance["commands"]["teacher"] = read_run_config(Path(cfg.teacher)).command
        provenance["commands"]["student"] = cfg.command
        provenance["teacher"] = _teacher_provenance(Path(cfg.teacher))
        provenance["students"] = {"count": cfg.students, "rounds": cfg.rounds, "epochs": cfg.epochs,
                                  "config": to_dict(cfg),
                                  "best_epochs": [json.loads((d / "summary.json").read_text())["best_epoch"]
                                                  for d in dirs]}
    else:
        provenance["commands"]["teacher"] = cfg.command
        provenance["teacher"] = _teacher_provenance(run)
    provenance.update(extra_provenance or {})
    input_spec = InputSpec(
        size=cfg.size, colour=cfg.colour, scale=float(cfg.scale), mean=list(cfg.mean), std=list(cfg.std),
        template=template or cfg.template, box_scale=float(box_scale or cfg.box_scale),
    )
    bundle = save_bundle(
        out, states, name=name or out.name, network=network_spec(cfg, heads), input=input_spec,
        au_names=meta["au_names"] or None, expr_names=meta["expr_names"], va_bins=cfg.loss.va_bins,
        au_thresholds=[float(np.round(t, 6)) for t in thresholds] or None, provenance=provenance,
        temporal=TemporalSpec("cnn_rnn", cfg.seq_len) if cfg.cnn else None, overwrite=overwrite,
        bs_names=meta.get("bs_names") or _teacher_bs_names(cfg),
        tta=load_bundle(cfg.init).tta if cfg.init_members else "none",  # adapted members keep their bundle's TTA
    )
    return bundle, metrics
