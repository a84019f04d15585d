"""Training runs: a teacher on partially labelled data, and students distilled from it.

Each step draws one batch per task (from the rows labelled for that task, balanced per task) and runs
them through the network together. The teacher's loss on a task batch is that task's ground truth
only; a student's is distillation on every head plus ground truth on the batch's own task. After each
epoch the network is scored on validation (AU + EXPR + CCC_V + CCC_A) and checkpointed; the best epoch
is kept. Sampling and augmentation draw from generators seeded by (seed, epoch), so a run resumed from
its last completed epoch continues exactly as the uninterrupted run would have.
"""

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from fer_annotate.models.bundle import load_bundle, load_members, load_state
from fer_annotate.models.fuse import fold_batchnorm
from fer_annotate.models.networks import MultitaskNet, NetworkSpec, build_network, ordered_heads
from fer_annotate.models.tta import mirror_permutation
from fer_annotate.run.lock import Locked, OutputLock
from training.augment import Normalise, follow_geometry, prepare
from training.config import TrainConfig, from_dict, read_run_config, resolve_normalisation, to_dict
from training.data import Dataset, LabelTable, align_au, load_images, merge, read_source
from training.evaluation import predict, score, summary_line
from training.losses import soft_targets, student_loss, teacher_loss
from training.sampling import TaskSampler
from training.tuning import without_tuning

Log = Callable[[str], None]
# Settings that may change between an interrupted run and its resumption.
RESUME_FREE = ("command", "threads", "device", "cache", "eval_batch")


class RunError(RuntimeError):
    """A run that cannot start or continue; the message says why and what to do."""


@dataclass
class Env:
    """Where a run executes: device, distributed rank / world size, mixed precision."""

    device: torch.device
    rank: int = 0
    world: int = 1
    amp: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def setup_env(cfg: TrainConfig) -> Env:
    """Threads, device and (under torchrun, WORLD_SIZE > 1) the DistributedDataParallel process group."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    kind = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device, rank = torch.device(kind), 0
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if kind == "cuda" else "gloo")
        rank = dist.get_rank()
        if kind == "cuda":
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
    return Env(device, rank, world, amp=cfg.amp and device.type == "cuda")


# ------------------------------------------------------------------------------------------------- data


def load_datasets(cfg: TrainConfig, cache: Path, env: Env, log: Log) -> tuple[Dataset, Dataset | None]:
    """Read the training and validation sources (training less the FER+ tuning split) and decode their
    images (once, cached)."""
    train = without_tuning(merge([read_source(s.kind, s.path, "train") for s in cfg.train]))
    val = merge([read_source(s.kind, s.path, "val") for s in cfg.val]) if cfg.val else None
    if val is not None:
        val = align_au(val, train.au_names)
    for note in train.notes + (val.notes if val else []):
        log(f"note: {note}")
    threads = cfg.threads or min(8, os.cpu_count() or 1)
    out = []
    for name, table in (("train", train), ("val", val)):
        if table is None:
            out.append(None)
            continue
        log(f"{name}: {len(table)} images, labelled " + ", ".join(f"{t} {n}" for t, n in table.counts().items()
                                                                  if t != "images"))
        if env.main:
            images = load_images(table.paths, cfg.size, cfg.colour, cache, threads)
        env.barrier()
        if not env.main:
            images = load_images(table.paths, cfg.size, cfg.colour, cache, threads)
        out.append(Dataset(table, images))
    return out[0], out[1]


def heads_for(table: LabelTable, va_bins: int) -> dict[str, int]:
    """Network heads for the tasks the training data labels, in the order EXPR, AU, VA, BS, POSE."""
    sizes = {"EXPR": len(table.expr_names), "AU": len(table.au_names), "VA": 2 * va_bins,
             "BS": len(table.bs_names), "POSE": 3}
    return {t: sizes[t] for t in table.tasks()}


def _task_labels(table: LabelTable, task: str, rows: np.ndarray) -> np.ndarray:
    """A task's labels for sampling (balancing): AU 0/1, EXPR class index (the majority of votes), VA values."""
    return {"AU": table.au, "EXPR": table.expr, "VA": table.va, "BS": table.bs, "POSE": table.pose}[task][rows]


def task_targets(table: LabelTable, tasks: list[str], votes: bool) -> dict[str, tuple[np.ndarray, torch.Tensor]]:
    """Per task: which rows are labelled [N] bool and the loss targets of all rows (EXPR: class distributions,
    the raters' votes where the data has them and `votes`, else one-hot)."""
    values = {"AU": table.au, "VA": table.va, "BS": table.bs, "POSE": table.pose}
    out = {}
    for task in tasks:
        target = table.expr_targets(votes) if task == "EXPR" else values[task]
        out[task] = (table.has(task), torch.from_numpy(np.nan_to_num(target) if task != "AU" else target))
    return out


def _batch_labels(targets: dict, idx: np.ndarray, device: torch.device) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The labelled rows of a batch (positions within it) and their targets, per task it has labels for."""
    out = {}
    for task, (has, target) in targets.items():
        pos = np.flatnonzero(has[idx])
        if len(pos):
            out[task] = (torch.from_numpy(pos).to(device), target[idx[pos]].to(device))
    return out


def sampling_plan(table: LabelTable, tasks: list[str], batch_size: int) -> list[tuple[str, np.ndarray, int]]:
    """Which tasks get their own batch each step, from which rows, and how large: (task, rows, batch size).

    With the paper's single-task datasets every task gets its own batch of `batch_size`. A task labelled
    on rows that an earlier task's batches already draw from rides along in those batches (e.g.
    blendshapes labelled on the expression images), so fully labelled data costs one batch per step;
    its remaining rows (e.g. video faces with blendshapes only) get a batch of proportional size.
    """
    plan: list[tuple[str, np.ndarray, int]] = []
    covered = np.zeros(len(table), bool)
    for task in tasks:
        has = table.has(task)
        rest = has & ~covered
        if not rest.any():
            continue
        size = batch_size
        if (has & covered).any():
            size = max(2, round(batch_size * rest.sum() / len(plan[0][1])))
        plan.append((task, np.flatnonzero(rest), size))
        covered |= has
    return plan


# ---------------------------------------------------------------------------------------------- network


def network_spec(cfg: TrainConfig, heads: dict[str, int]) -> NetworkSpec:
    return NetworkSpec(cfg.backbone, dict(heads), cfg.channels, dict(cfg.backbone_kwargs))


def _fit_channels(value: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """A first-layer conv weight converted between 3 (RGB) and 1 (gray) input channels."""
    if value.ndim == 4 and value.shape[0] == shape[0] and value.shape[2:] == shape[2:]:
        if value.shape[1] == 3 and shape[1] == 1:
            return value.sum(1, keepdim=True)
        if value.shape[1] == 1 and shape[1] == 3:
            return value.repeat(1, 3, 1, 1) / 3
    raise RunError(f"cannot fit a weight of shape {list(value.shape)} to {list(shape)}")


def _load_backbone(net: MultitaskNet, state: dict[str, torch.Tensor], where: str) -> None:
    own = net.backbone.state_dict()
    missing = sorted(set(own) - set(state))
    if missing:
        raise RunError(f"{where}: backbone weights do not fit {net.spec.backbone} (missing {missing[0]}, ...)")
    fitted = {k: (v if v.shape == own[k].shape else _fit_channels(v, own[k].shape)) for k, v in state.items()
              if k in own}
    net.backbone.load_state_dict(fitted)


def init_backbone(net: MultitaskNet, init: str, member: int = 0, heads: bool = False) -> None:
    """Start from scratch, torchvision ImageNet weights (downloaded on first use), or the backbone of a
    bundle's member (and, with `heads`, its heads of the tasks the network shares with it)."""
    if init == "scratch":
        return
    if init == "imagenet":
        import torchvision

        name = net.spec.backbone
        if name not in ("resnet18", "mobilenet_v3_small"):
            raise RunError(f"--init imagenet needs backbone resnet18 or mobilenet_v3_small, not {name}")
        model = getattr(torchvision.models, name)(weights="DEFAULT")
        state = {f"model.net.{k}": v for k, v in model.state_dict().items()
                 if not k.startswith(("fc.", "classifier."))}
        _load_backbone(net, state, f"torchvision {name}")
        return
    bundle = load_bundle(init)
    if (bundle.network.backbone, bundle.network.backbone_kwargs) != (net.spec.backbone, net.spec.backbone_kwargs):
        raise RunError(f"{init}: bundle backbone {bundle.network.backbone} {bundle.network.backbone_kwargs} "
                       f"differs from --backbone {net.spec.backbone} {net.spec.backbone_kwargs}")
    state = load_state(bundle, bundle.members[member % len(bundle.members)])
    prefix = "backbone.backbone." if bundle.temporal.kind == "cnn_rnn" else "backbone."
    _load_backbone(net, {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, init)
    if heads:
        _load_heads(net, bundle.tasks, {k.removeprefix("backbone."): v for k, v in state.items()})


def _load_heads(net: MultitaskNet, tasks: list[str], state: dict[str, torch.Tensor]) -> None:
    """Copy the heads of the tasks a bundle member shares with the network (same sizes) into it."""
    for j, task in enumerate(net.tasks):
        if task not in tasks:
            continue
        i = tasks.index(task)
        head = {k.removeprefix(f"classifier.{i}."): v for k, v in state.items() if k.startswith(f"classifier.{i}.")}
        own = net.classifier[j].state_dict()
        if head.keys() == own.keys() and all(head[k].shape == own[k].shape for k in own):
            net.classifier[j].load_state_dict(head)


def build_member(cfg: TrainConfig, heads: dict[str, int], seed: int, member: int = 0) -> MultitaskNet:
    """A freshly initialised network (seeded), its backbone per cfg.init; with cfg.init_members, student i
    starts from the whole of the init bundle's member i (backbone and shared heads)."""
    torch.manual_seed(seed)
    net = build_network(network_spec(cfg, heads))
    init_backbone(net, cfg.init, member, heads=cfg.init_members)
    return net


def load_member(cfg: TrainConfig, heads: dict[str, int], weights: Path, device: torch.device) -> MultitaskNet:
    """A trained network from a run's safetensors weights, in eval mode."""
    net = build_network(network_spec(cfg, heads))
    net.load_state_dict(load_file(str(weights), device="cpu"))
    return net.to(device).eval()


def _lr_lambda(schedule: str, total: int) -> Callable[[int], float]:
    if schedule == "cosine":
        return lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    if schedule == "onecycle":
        warm = max(1, int(0.3 * total))
        return lambda step: (0.04 + 0.96 * step / warm if step < warm else
                             0.5 * (1 + math.cos(math.pi * min(step - warm, total - warm) / max(1, total - warm))))
    return lambda step: 1.0


# ----------------------------------------------------------------------------------------------- member


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _save_weights(state: dict[str, torch.Tensor], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp))
    os.replace(tmp, path)


def _truncate_jsonl(path: Path, last_epoch: int) -> None:
    if path.is_file():
        lines = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["epoch"] <= last_epoch]
        path.write_text("".join(ln + "\n" for ln in lines))


class SoftTeacher:
    """Frozen network(s) whose soft labels a student learns from: one teacher, or the mean of an ensemble."""

    def __init__(self, nets: list[nn.Module], cfg: TrainConfig):
        self.nets, self.spec = nets, cfg.loss
        for net in nets:  # frozen: BatchNorm folds into the convolutions, as at inference
            fold_batchnorm(net.eval().requires_grad_(False))
            net.to(memory_format=torch.channels_last)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        outs = [net(x) for net in self.nets]
        return {t: torch.stack([soft_targets(t, o[t], self.spec) for o in outs]).mean(0) for t in outs[0]}


def train_member(
    cfg: TrainConfig,
    out: Path,
    heads: dict[str, int],
    train: Dataset,
    val: Dataset | None,
    env: Env,
    seed: int,
    teacher: SoftTeacher | None = None,
    log: Log = print,
    member: int = 0,
) -> dict:
    """Train one network into out/ (metrics.jsonl, checkpoints/, last.pt, best.safetensors, summary.json).

    Resumes from out/last.pt when present; returns the member summary (best epoch and its metrics).
    """
    summary_path = out / "summary.json"
    if summary_path.is_file():
        log(f"{out}: already trained, skipped")
        return json.loads(summary_path.read_text())
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    device, bsz = env.device, cfg.batch_size
    net = build_member(cfg, heads, seed, member).to(device)
    channels_last = env.amp or device.type == "cpu"  # CPU: +20-35 % images/s (benchmarks/train_throughput.py)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    norm = Normalise(cfg.scale, cfg.mean, cfg.std)
    labels = train.labels
    rows = {t: np.flatnonzero(labels.has(t)) for t in heads}
    plan = sampling_plan(labels, [t for t in heads if len(rows[t])], bsz)
    samplers = {t: TaskSampler(t, _task_labels(labels, t, r), t in cfg.balance, seed) for t, r, _ in plan}
    targets = task_targets(labels, [t for t in heads if len(rows[t])], cfg.expr_labels == "votes")
    steps = cfg.steps_per_epoch or max(1, max(samplers[t].epoch_size() // b for t, _, b in plan))
    mirror = mirror_permutation(labels.bs_names)
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg.schedule, cfg.epochs * steps))
    start, best = 1, {"epoch": None, "score": -math.inf, "val": None}
    last, jsonl = out / "last.pt", out / "metrics.jsonl"
    if last.is_file():
        state = torch.load(last, map_location=device, weights_only=True)
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start, best = state["epoch"] + 1, json.loads(state["best"])
        if env.main:
            _truncate_jsonl(jsonl, state["epoch"])
        log(f"{out}: resuming after epoch {state['epoch']}")
    model = net
    if env.world > 1:
        ids = [device.index] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(net, device_ids=ids)
    counts = {t: len(rows[t]) for t in heads if len(rows[t])}
    sizes = {t: b for t, _, b in plan}
    log(f"{out}: {cfg.epochs} epochs x {steps} steps, batches {sizes}, labelled {counts}, "
        f"{'student' if teacher else 'teacher'}, device {device}")
    for epoch in range(start, cfg.epochs + 1):
        t0 = time.time()
        rng = np.random.default_rng([seed, epoch])
        gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
        draws = {t: r[samplers[t].draw(steps * b, rng)] for t, r, b in plan}
        net.train()
        total, seen = 0.0, 0
        for step in range(env.rank, steps, env.world):
            parts = [draws[t][step * b : (step + 1) * b] for t, _, b in plan]
            idx = np.concatenate(parts)
            x, drawn = prepare(torch.from_numpy(train.images[idx]).to(device), norm, cfg.augment, gen,
                               channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=env.amp):
                logits = model(x)
                soft = teacher(x) if teacher else None
            loss = x.new_zeros(())
            offset = 0
            for part_idx in parts:
                sl = slice(offset, offset + len(part_idx))
                offset += len(part_idx)
                part = {h: v[sl] for h, v in logits.items()}
                batch_labels = _batch_labels(targets, part_idx, device)
                for task, (pos, target) in batch_labels.items():
                    flip, rotation = (v[sl][pos.cpu()].to(device) for v in (drawn.flip, drawn.rotation))
                    batch_labels[task] = (pos, follow_geometry(task, target, flip, rotation, mirror))
                if soft is None:
                    loss = loss + teacher_loss(part, batch_labels, cfg.loss)
                else:
                    loss = loss + student_loss(part, {h: v[sl] for h, v in soft.items()}, batch_labels, cfg.loss)
            loss = loss / len(plan)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total, seen = total + float(loss.detach()), seen + 1
        record = {"epoch": epoch, "train_loss": total / max(seen, 1), "lr": scheduler.get_last_lr()[0]}
        if env.main:
            if val is not None:
                metrics = score(predict([net], val, norm, device, cfg.eval_batch, env.amp).ensemble, val.labels,
                                edition=cfg.metrics)
                record["val"] = metrics
                record["score"] = metrics["score"]
            else:
                record["score"] = float(epoch)  # no validation data: the last epoch is kept
            record["seconds"] = round(time.time() - t0, 1)
            weights = out / "checkpoints" / f"epoch_{epoch:03d}.safetensors"
            _save_weights(net.state_dict(), weights)
            if record["score"] > best["score"]:
                best = {"epoch": epoch, "score": record["score"], "val": record.get("val")}
                shutil.copyfile(weights, out / "best.safetensors")
            with open(jsonl, "a") as f:
                f.write(json.dumps(record) + "\n")
            _save_atomic({"epoch": epoch, "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                          "scheduler": scheduler.state_dict(), "best": json.dumps(best)}, last)
            val_text = summary_line(record["val"]) if "val" in record else "no validation"
            log(f"{out.name} epoch {epoch}/{cfg.epochs}: loss {record['train_loss']:.4f}  {val_text}  "
                f"({record['seconds']:.0f} s)")
        env.barrier()
    summary = {"best_epoch": best["epoch"], "best_score": best["score"], "val": best["val"], "heads": heads,
               "seed": seed, "steps_per_epoch": steps, "train_counts": counts}
    if env.main:
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    env.barrier()
    return json.loads(summary_path.read_text())


# ------------------------------------------------------------------------------------------------- runs


def _quiet(message: str) -> None:
    """The log of non-main ranks under torchrun: rank 0 speaks for all."""


def clear_run(out: Path, keep_cache: bool = True) -> None:
    """Start over in a run folder: remove everything in it, the decoded-image cache only if not `keep_cache`
    (it is keyed by image paths: keep it only where the images under those paths stay the same)."""
    if out.is_dir():
        for child in out.iterdir():
            if child.name != "cache" or not keep_cache:
                shutil.rmtree(child) if child.is_dir() else child.unlink()


def started(out: Path) -> bool:
    """Whether a run folder holds anything of a run beyond its config.json and image cache (a run that
    failed before training, on unreadable data say, holds only those and is not resumed but restarted)."""
    return out.is_dir() and any(child.name not in ("config.json", "cache") for child in out.iterdir())


def prepare_run(out: Path, cfg: TrainConfig, overwrite: bool) -> None:
    """Create the run folder with config.json, or check that an existing one matches (resume)."""
    path = out / "config.json"
    new = to_dict(cfg)
    if path.is_file() and not overwrite and started(out):
        old = to_dict(from_dict(json.loads(path.read_text())))  # settings added since: their defaults
        differ = sorted(k for k in set(old) | set(new) if k not in RESUME_FREE and old.get(k) != new.get(k))
        if differ:
            raise RunError(f"{out} holds a run with a different configuration (differs in: {', '.join(differ)}); "
                           "rerun with the same settings to resume, or pass --overwrite or another --out")
        return
    if overwrite:
        clear_run(out)
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(new, indent=2) + "\n")


def resolve(cfg: TrainConfig) -> TrainConfig:
    """Fill the settings that depend on others (input normalisation from the init) and check them."""
    cfg.check()
    init_input = None
    if cfg.init not in ("scratch", "imagenet"):
        init_input = load_bundle(cfg.init).input
    resolve_normalisation(cfg, init_input)
    return cfg


def start_run(cfg: TrainConfig, out: Path, overwrite: bool, log: Log) -> tuple[TrainConfig, Env, Log]:
    """Resolve the config, set up the process group, prepare out/ on the main rank; quiet logs elsewhere."""
    cfg = resolve(cfg)
    env = setup_env(cfg)
    if env.main:
        prepare_run(out, cfg, overwrite)
    env.barrier()
    return cfg, env, log if env.main else _quiet


def write_run_meta(out: Path, kind: str, train: Dataset, val: Dataset | None) -> None:
    """out/run.json: the run's kind, label names, data counts and reader notes."""
    meta = {"kind": kind, "au_names": train.labels.au_names, "expr_names": train.labels.expr_names,
            "bs_names": train.labels.bs_names, "train_counts": train.labels.counts(),
            "val_counts": val.labels.counts() if val else None,
            "notes": train.labels.notes + (val.labels.notes if val else [])}
    (out / "run.json").write_text(json.dumps(meta, indent=2) + "\n")


def run_teacher(cfg: TrainConfig, out: str | Path, overwrite: bool = False, log: Log = print) -> dict:
    """Train the teacher into out/ (resuming an interrupted run); returns its summary."""
    out = Path(out)
    cfg, env, log = start_run(cfg, out, overwrite, log)
    train, val = load_datasets(cfg, image_cache(cfg, out), env, log)
    heads = heads_for(train.labels, cfg.loss.va_bins)
    summary = train_member(cfg, out, heads, train, val, env, cfg.seed, log=log)
    if env.main:
        write_run_meta(out, "teacher", train, val)
    return summary


def is_bundle(path: str | Path) -> bool:
    """Whether a teacher path is a weights bundle (else a run folder)."""
    return (Path(path) / "bundle.json").is_file()


def bundle_config(path: str | Path) -> TrainConfig:
    """The network and input settings of a bundle as a run configuration (students of a shipped bundle;
    the data and optimisation settings are the caller's)."""
    bundle = load_bundle(path)
    spec = bundle.input
    return TrainConfig(backbone=bundle.network.backbone, backbone_kwargs=dict(bundle.network.backbone_kwargs),
                       size=spec.size, colour=spec.colour, scale=spec.scale, mean=list(spec.mean),
                       std=list(spec.std), template=[list(p) for p in spec.template], box_scale=spec.box_scale)


def teacher_networks(run: Path, device: torch.device) -> tuple[dict, list[nn.Module]]:
    """A finished teacher or student run's summary and best network(s) (the last round's students), or a
    bundle's members (a shipped ensemble as the teacher, e.g. to adapt it to new footage)."""
    if is_bundle(run):
        bundle = load_bundle(run)
        return {"heads": ordered_heads(bundle.network.heads), "val": None}, load_members(bundle, device)
    cfg = read_run_config(run)
    members = member_dirs(run)
    for m in members:
        if not (m / "summary.json").is_file():
            raise RunError(f"{m}: not finished (no summary.json); rerun its command to complete it")
    summary = json.loads((members[0] / "summary.json").read_text())
    nets = [load_member(cfg, summary["heads"], m / "best.safetensors", device) for m in members]
    return summary, nets


def image_cache(cfg: TrainConfig, run: Path) -> Path:
    """The decoded-image cache of a run: --cache, else that of the run it builds on, else run/cache."""
    if cfg.cache:
        return Path(cfg.cache)
    parent = cfg.cnn or cfg.teacher
    if parent and not is_bundle(parent):
        return image_cache(read_run_config(parent), Path(parent))
    return run / "cache"


def member_dirs(run: Path) -> list[Path]:
    """The member folders of a run: the run itself for a teacher, the last round's students for a student
    run, member{i} for a CNN-RNN run."""
    cfg = read_run_config(run)
    if cfg.cnn is not None:  # a CNN-RNN run: one member per member of its CNN run
        return [run / f"member{i}" for i in range(1, len(member_dirs(Path(cfg.cnn))) + 1)]
    if cfg.teacher is None:
        return [run]
    return [run / f"round{cfg.rounds}" / f"student{i}" for i in range(1, cfg.students + 1)]


def run_students(cfg: TrainConfig, out: str | Path, overwrite: bool = False, log: Log = print) -> dict:
    """Train cfg.students students per round into out/round{r}/student{i}/; round 1 learns from the
    teacher run cfg.teacher, each later round from the previous round's ensemble. Finished students
    are skipped on a rerun, an interrupted one resumes. The same command started twice on one machine
    splits the students between the two processes (each claims a student with a lock file)."""
    out = Path(out)
    cfg, env, log = start_run(cfg, out, overwrite, log)
    teacher_run = Path(cfg.teacher)
    tsummary, tnets = teacher_networks(teacher_run, env.device)
    train, val = load_datasets(cfg, image_cache(cfg, out), env, log)
    heads = ordered_heads(tsummary["heads"] | heads_for(train.labels, cfg.loss.va_bins))
    norm = Normalise(cfg.scale, cfg.mean, cfg.std)
    rounds = []
    if tsummary["val"] is None and val is not None and env.main:  # a bundle: score it as the students will be
        tsummary["val"] = score(predict(tnets, val, norm, env.device, cfg.eval_batch, env.amp).ensemble,
                                val.labels, edition=cfg.metrics)
        log(f"teacher {teacher_run.name} before training: {summary_line(tsummary['val'])}")
    teacher = SoftTeacher(tnets, cfg)
    for r in range(1, cfg.rounds + 1):
        members: dict[int, dict] = {}
        while len(members) < cfg.students:
            for i in (i for i in range(1, cfg.students + 1) if i not in members):
                member_out = out / f"round{r}" / f"student{i}"
                train_it = partial(train_member, cfg, member_out, heads, train, val, env, cfg.seed + 1000 * r + i,
                                   teacher, log, member=i - 1)
                if env.world > 1 or (member_out / "summary.json").is_file():
                    members[i] = train_it()  # under torchrun every rank trains every student together
                    continue
                try:
                    with OutputLock(member_out):  # another process of this command may hold it
                        members[i] = train_it()
                except Locked:
                    pass
            if len(members) < cfg.students:
                time.sleep(5)  # the others are being trained by another process
        members = [members[i] for i in range(1, cfg.students + 1)]
        nets = [load_member(cfg, heads, out / f"round{r}" / f"student{i}" / "best.safetensors", env.device)
                for i in range(1, cfg.students + 1)]
        entry = {"round": r, "members": members}
        if val is not None and env.main:
            entry["ensemble_val"] = score(predict(nets, val, norm, env.device, cfg.eval_batch, env.amp).ensemble,
                                          val.labels, edition=cfg.metrics)
            log(f"round {r} ensemble of {len(nets)}: {summary_line(entry['ensemble_val'])}")
        rounds.append(entry)
        teacher = SoftTeacher(nets, cfg)
    summary = {"teacher": str(teacher_run), "teacher_val": tsummary["val"], "rounds": rounds}
    if env.main:
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        write_run_meta(out, "student", train, val)
    return summary
