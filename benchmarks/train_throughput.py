"""Training throughput: images per second of a teacher step and a student step of fer-train's own loop.

Runs `training.loop.train_member` for a few steps on FER+-shaped data (48 px grey crops with votes,
52 blendshapes and head pose; random pixels, so only the speed means anything) with the shipped
network (small_cnn, width 32, depths 1,1,2,2) and the recipe's augmentation, as a teacher (ground truth
only) and as a student (plus a frozen teacher's forward pass and the distillation loss). One thread;
pin it to a core for figures per core:

    nice -n 10 taskset -c 0 python benchmarks/train_throughput.py --steps 40
    nice -n 10 taskset -c 0 python benchmarks/train_throughput.py --steps 40 --batch-size 128

Divide FER+ train (24,500 images outside the tuning split) by the figure for the CPU seconds of an epoch.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fer_annotate.faces.geometry import BLENDSHAPE_COLUMNS
from training.augment import AugmentSpec
from training.config import TrainConfig
from training.data import EXPR_NAMES, Dataset, LabelTable
from training.loop import Env, SoftTeacher, build_member, train_member

HEADS = {"EXPR": 7, "BS": 52, "POSE": 3}


def ferplus_like(n: int, seed: int = 0) -> Dataset:
    """n random 48 px grey images with vote distributions, blendshape scores and head pose."""
    rng = np.random.default_rng(seed)
    votes = rng.dirichlet(np.ones(7), n).astype(np.float32)
    table = LabelTable(
        paths=[f"img{i}.jpg" for i in range(n)], au=np.zeros((n, 0), np.float32), expr=votes.argmax(1),
        va=np.full((n, 2), np.nan, np.float32), au_names=[], expr_names=list(EXPR_NAMES), expr_soft=votes,
        bs=rng.random((n, 52), dtype=np.float32), pose=rng.uniform(-30, 30, (n, 3)).astype(np.float32),
        bs_names=[c[3:] for c in BLENDSHAPE_COLUMNS],
    )
    return Dataset(table, rng.integers(0, 256, (n, 48, 48, 1), dtype=np.uint8))


def recipe_config(batch_size: int, steps: int) -> TrainConfig:
    """The shipped recipe's settings (benchmarks/ferplus_recipe.sh) for a one-epoch run of `steps` steps."""
    return TrainConfig(
        backbone="small_cnn", backbone_kwargs={"width": 32, "depths": [1, 1, 2, 2]}, size=48, colour="gray",
        scale=1.0, mean=[0.5], std=[0.25], batch_size=batch_size, lr=2e-3, betas=[0.9, 0.999],
        weight_decay=0.05, schedule="onecycle", balance=[], epochs=1, steps_per_epoch=steps,
        augment=AugmentSpec(zoom_min=1.0, zoom_max=1.15, rotate=10.0, erase=0.25), device="cpu", threads=1,
    )


def images_per_second(cfg: TrainConfig, data: Dataset, student: bool) -> tuple[float, float]:
    """Images per wall-clock second and per CPU second of this process, over one epoch of
    cfg.steps_per_epoch steps (checkpoint writing included). On a loaded machine the CPU-second figure
    is the one that says what a core does."""
    teacher = SoftTeacher([build_member(cfg, HEADS, 99)], cfg) if student else None
    with tempfile.TemporaryDirectory() as tmp:
        start, cpu = time.perf_counter(), time.process_time()
        train_member(cfg, Path(tmp), HEADS, data, None, Env(torch.device("cpu")), 0, teacher, log=lambda s: None)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    images = cfg.steps_per_epoch * cfg.batch_size
    return images / seconds, images / cpu_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="Training steps per measurement.")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = ferplus_like(4096)
    cfg = recipe_config(args.batch_size, 3)
    images_per_second(cfg, data, student=False)  # warm-up: first-call allocations and kernel choices
    cfg.steps_per_epoch = args.steps
    for kind in ("teacher", "student"):
        wall, cpu = images_per_second(cfg, data, student=kind == "student")
        print(f"{kind}: {cpu:.1f} images per CPU second, {wall:.1f} per wall second (batch {args.batch_size}, "
              f"{args.steps} steps, one thread); a 24,500-image epoch {24_500 / cpu:.0f} CPU-s")


if __name__ == "__main__":
    main()
