"""The CNN-RNN: per-task bidirectional GRU heads on a frozen CNN's 128-d head features, over video windows.

The CNN (each member of a finished teacher or student run) is frozen, so its hidden features are
computed once per frame and cached; training then only runs the GRU heads over windows of seq_len
consecutive frames of a video (training stride seq_stride, 16 in the paper). Validation and inference
use non-overlapping windows with the last one aligned to the end of the video; a video shorter than a
window is padded by repeating its last frame. The loss is the per-task ground truth of the frames
labelled for each task (paper: Aff-Wild2 only, 3 epochs).
"""

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from fer_annotate.models.ensemble import EnsembleOutput, combine
from fer_annotate.models.networks import MultitaskCNNRNN, MultitaskNet
from training.augment import Normalise, prepare
from training.config import TrainConfig, read_run_config
from training.data import Dataset, LabelTable
from training.evaluation import score, summary_line
from training.loop import (
    Env,
    Log,
    RunError,
    _task_labels,
    _truncate_jsonl,
    image_cache,
    load_datasets,
    load_member,
    member_dirs,
    network_spec,
    prepare_run,
    resolve,
    setup_env,
    write_run_meta,
)
from training.losses import truth_loss


def windows(video: np.ndarray, frame: np.ndarray, seq_len: int, stride: int) -> np.ndarray:
    """Row indices [W, seq_len] of windows of consecutive frames per video, the last one aligned to the
    video's end; a video shorter than seq_len gives one window padded with its last frame."""
    out = []
    for v in np.unique(video):
        rows = np.flatnonzero(video == v)
        rows = rows[np.argsort(frame[rows], kind="stable")]
        if len(rows) < seq_len:
            out.append(np.concatenate([rows, np.full(seq_len - len(rows), rows[-1])]))
            continue
        starts = list(range(0, len(rows) - seq_len + 1, stride))
        if starts[-1] != len(rows) - seq_len:
            starts.append(len(rows) - seq_len)
        out += [rows[s : s + seq_len] for s in starts]
    return np.stack(out) if out else np.zeros((0, seq_len), np.int64)


@torch.inference_mode()
def cnn_features(
    net: MultitaskNet, data: Dataset, norm: Normalise, device: torch.device, batch: int = 256
) -> np.ndarray:
    """Hidden features [N, tasks, 128] (float32) of the frozen CNN for every image (no augmentation)."""
    net.eval()
    out = np.empty((len(data), len(net.tasks), 128), np.float32)
    for start in range(0, len(data), batch):
        x, _ = prepare(torch.from_numpy(np.array(data.images[start : start + batch])).to(device), norm)
        _, hidden = net.forward_hidden(x)
        out[start : start + batch] = torch.stack([hidden[t] for t in net.tasks], 1).float().cpu().numpy()
    return out


def _check_sequences(table: LabelTable, where: str) -> None:
    if table.video is None:
        raise RunError(f"{where}: the CNN-RNN needs video sequences (--abaw data: frames of videos)")


@torch.inference_mode()
def predict_sequences(models: list[MultitaskCNNRNN], feats: list[np.ndarray], table: LabelTable, seq_len: int,
                      device: torch.device) -> tuple[EnsembleOutput, list[EnsembleOutput]]:
    """Per-frame ensemble and member outputs over non-overlapping windows (last aligned to the end)."""
    win = windows(table.video, table.frame, seq_len, seq_len)
    per_member = []
    for model, f in zip(models, feats, strict=True):
        model.eval()
        logits: dict[str, torch.Tensor] = {}
        for start in range(0, len(win), 64):
            w = win[start : start + 64]
            h = torch.from_numpy(f[w]).to(device)  # [B, T, tasks, 128]
            out = model({t: h[:, :, j] for j, t in enumerate(model.tasks)})
            for t, v in out.items():
                frame_logits = logits.setdefault(t, torch.zeros(len(table), v.shape[-1], device=device))
                frame_logits[torch.from_numpy(w.reshape(-1)).to(device)] = v.reshape(-1, v.shape[-1]).float()
        per_member.append(logits)
    return combine(per_member), [combine([m]) for m in per_member]


def run_temporal(cfg: TrainConfig, out: str | Path, overwrite: bool = False, log: Log = print) -> dict:
    """Train a CNN-RNN on top of every member of the CNN run cfg.cnn into out/member{i}/."""
    out = Path(out)
    cfg = resolve(cfg)
    env = setup_env(cfg)
    if env.world > 1:
        raise RunError("the CNN-RNN stage is small: run it as one process, not under torchrun")
    prepare_run(out, cfg, overwrite)
    cnn_run = Path(cfg.cnn)
    ccfg = read_run_config(cnn_run)
    train, val = load_datasets(cfg, image_cache(cfg, out), env, log)
    _check_sequences(train.labels, "training data")
    if val is not None:
        _check_sequences(val.labels, "validation data")
    members = []
    for i, cnn_dir in enumerate(member_dirs(cnn_run), 1):
        heads = json.loads((cnn_dir / "summary.json").read_text())["heads"]
        cnn = load_member(ccfg, heads, cnn_dir / "best.safetensors", env.device)
        members.append(_train_rnn(cfg, out / f"member{i}", cnn, heads, train, val, env, cfg.seed + i, log))
    summary = {"cnn": str(cnn_run), "members": members}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_run_meta(out, "temporal", train, val)
    return summary


def features(out: Path, name: str, cnn: MultitaskNet, data: Dataset, cfg: TrainConfig, env: Env) -> np.ndarray:
    """The CNN features of a dataset, computed once and kept in out/features-{name}.npy."""
    path = out / f"features-{name}.npy"
    if not path.is_file():
        norm = Normalise(cfg.scale, cfg.mean, cfg.std)
        tmp = path.with_name(path.stem + ".tmp.npy")
        np.save(tmp, cnn_features(cnn, data, norm, env.device, cfg.eval_batch))
        os.replace(tmp, path)
    return np.load(path, mmap_mode="r")


def _train_rnn(cfg: TrainConfig, out: Path, cnn: MultitaskNet, heads: dict, train: Dataset, val: Dataset | None,
               env: Env, seed: int, log: Log) -> dict:
    summary_path = out / "summary.json"
    if summary_path.is_file():
        log(f"{out}: already trained, skipped")
        return json.loads(summary_path.read_text())
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    device = env.device
    feats = features(out, "train", cnn, train, cfg, env)
    val_feats = features(out, "val", cnn, val, cfg, env) if val is not None else None
    torch.manual_seed(seed)
    model = MultitaskCNNRNN(network_spec(cfg, heads)).to(device)
    model.backbone.load_state_dict(cnn.state_dict())
    params = [p for p in model.classifier.parameters()]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    labels = train.labels
    win = windows(labels.video, labels.frame, cfg.seq_len, cfg.seq_stride)
    targets = {t: torch.from_numpy(_task_labels(labels, t, np.arange(len(labels)))) for t in heads}
    start, best = 1, {"epoch": None, "score": -math.inf, "val": None}
    last, jsonl = out / "last.pt", out / "metrics.jsonl"
    if last.is_file():
        state = torch.load(last, map_location=device, weights_only=True)
        model.classifier.load_state_dict(state["heads"])
        optimizer.load_state_dict(state["optimizer"])
        start, best = state["epoch"] + 1, json.loads(state["best"])
        _truncate_jsonl(jsonl, state["epoch"])
        log(f"{out}: resuming after epoch {state['epoch']}")
    bsz = max(2, cfg.batch_size)
    log(f"{out}: CNN-RNN, {len(win)} windows of {cfg.seq_len} frames, {cfg.epochs} epochs, batch {bsz}")
    for epoch in range(start, cfg.epochs + 1):
        t0 = time.time()
        order = np.random.default_rng([seed, epoch]).permutation(len(win))
        model.train()
        total, seen = 0.0, 0
        for s in range(0, len(order) - bsz + 1, bsz):
            w = win[order[s : s + bsz]]
            h = torch.from_numpy(feats[w]).to(device)
            logits = model({t: h[:, :, j] for j, t in enumerate(model.tasks)})
            loss, parts = h.new_zeros(()), 0
            for t, v in logits.items():
                target = targets[t][torch.from_numpy(w.reshape(-1))].to(device)
                mask = _labelled(t, target)
                if mask.sum() >= 2:
                    loss = loss + truth_loss(t, v.reshape(-1, v.shape[-1])[mask], target[mask], cfg.loss)
                    parts += 1
            if parts == 0:
                continue
            optimizer.zero_grad(set_to_none=True)
            (loss / parts).backward()
            optimizer.step()
            total, seen = total + float(loss.detach()) / parts, seen + 1
        record = {"epoch": epoch, "train_loss": total / max(seen, 1)}
        if val is not None:
            ens, _ = predict_sequences([model], [val_feats], val.labels, cfg.seq_len, device)
            record["val"] = score(ens, val.labels, edition=cfg.metrics)
            record["score"] = record["val"]["score"]
        else:
            record["score"] = float(epoch)
        record["seconds"] = round(time.time() - t0, 1)
        heads_state = {k: v.detach().cpu().contiguous() for k, v in model.classifier.state_dict().items()}
        save_file(heads_state, str(out / "checkpoints" / f"epoch_{epoch:03d}.safetensors"))
        if record["score"] > best["score"]:
            best = {"epoch": epoch, "score": record["score"], "val": record.get("val")}
            full = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
            save_file(full, str(out / "best.safetensors.tmp"))
            os.replace(out / "best.safetensors.tmp", out / "best.safetensors")
        with open(jsonl, "a") as f:
            f.write(json.dumps(record) + "\n")
        tmp = out / "last.pt.tmp"
        torch.save({"epoch": epoch, "heads": model.classifier.state_dict(), "optimizer": optimizer.state_dict(),
                    "best": json.dumps(best)}, tmp)
        os.replace(tmp, last)
        val_text = summary_line(record["val"]) if "val" in record else "no validation"
        log(f"{out.name} epoch {epoch}/{cfg.epochs}: loss {record['train_loss']:.4f}  {val_text}  "
            f"({record['seconds']:.0f} s)")
    summary = {"best_epoch": best["epoch"], "best_score": best["score"], "val": best["val"], "heads": heads,
               "seed": seed, "windows": len(win)}
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _labelled(task: str, target: torch.Tensor) -> torch.Tensor:
    if task == "EXPR":
        return target >= 0
    if task == "AU":
        return ~torch.isnan(target).all(-1)
    return ~torch.isnan(target).any(-1)


def load_temporal(run: Path, device: torch.device) -> tuple[list[MultitaskCNNRNN], list[Path]]:
    """The trained CNN-RNN members of a temporal run (eval mode) and their folders."""
    cfg = read_run_config(run)
    dirs = member_dirs(run)
    models = []
    for d in dirs:
        if not (d / "summary.json").is_file():
            raise RunError(f"{d}: not finished (no summary.json); rerun its command to complete it")
        heads = json.loads((d / "summary.json").read_text())["heads"]
        model = MultitaskCNNRNN(network_spec(cfg, heads))
        model.load_state_dict(load_file(str(d / "best.safetensors")))
        models.append(model.to(device).eval())
    return models, dirs
