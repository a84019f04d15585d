"""The paper's questions, measured on procedural faces whose labels are known (CPU, well under 20 minutes).

Data (training.synthetic): three training sets of different faces, each labelled for ONE task only
(AU, EXPR, VA), with real-data-like class imbalance, plus fully labelled validation and test sets.
Runs: a multitask teacher with balancing, the same without balancing, single-task teachers (one per
training set), and 5 students distilled from the balanced teacher. Everything is scored on the test
set with the ABAW 2020 metrics and printed as one table, answering:

1. Does one model learn all three tasks from single-task labels? (teacher vs single-task teachers)
2. Do students beat the teacher?                                   (students vs teacher)
3. Does balancing help the minority classes?                       (minority F1, with vs without)
4. Does the ensemble beat single students?                         (ensemble vs students)

    python benchmarks/train_benchmark.py --out /tmp/fer-train-bench        # full (~10-15 min, 2 cores)
    python benchmarks/train_benchmark.py --out /tmp/fer-train-bench --quick  # smoke test (~1 min)
"""

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from training.augment import Normalise
from training.config import Source, TrainConfig
from training.data import Dataset, load_images, read_manifest
from training.evaluation import predict, score
from training.loop import load_member, run_students, run_teacher
from training.metrics import f1_binary, tune_thresholds
from training.synthetic import AU_NAMES, EXPR_NAMES, write_benchmark

MINORITY_EXPR = ["disgust", "fear"]


def minority_f1(out, labels, au_rare: list[int]) -> tuple[float | None, float | None]:
    """Mean F1 of the rare expression classes and of the rarest AUs (at 0.5)."""
    expr = au = None
    if out.expr_prob is not None:
        pred = out.expr_prob.argmax(1)
        expr = float(np.mean([f1_binary((pred == k).astype(int), (labels.expr == k).astype(int))
                              for k in (EXPR_NAMES.index(n) for n in MINORITY_EXPR)]))
    if out.au_prob is not None:
        pred = (out.au_prob >= 0.5).astype(int)
        au = float(np.mean([f1_binary(pred[:, j], labels.au[:, j]) for j in au_rare]))
    return expr, au


def row(name: str, out, labels, au_rare: list[int], thresholds=0.5) -> dict:
    m = score(out, labels, thresholds)["tasks"]
    expr_min, au_min = minority_f1(out, labels, au_rare)
    return {
        "model": name,
        "EXPR": m.get("EXPR", {}).get("score"), "EXPR_f1": m.get("EXPR", {}).get("f1"),
        "AU": m.get("AU", {}).get("score"), "AU_f1": m.get("AU", {}).get("f1"),
        "CCC_V": m.get("VA", {}).get("ccc_v"), "CCC_A": m.get("VA", {}).get("ccc_a"),
        "sum": sum(v["score"] for v in m.values()), "EXPR_minority_F1": expr_min, "AU_minority_F1": au_min,
    }  # fmt: skip


def print_table(rows: list[dict]) -> str:
    cols = ["EXPR", "EXPR_f1", "AU", "AU_f1", "CCC_V", "CCC_A", "sum", "EXPR_minority_F1", "AU_minority_F1"]
    heads = ["EXPR", "F1", "AU", "F1", "CCC_V", "CCC_A", "sum", "min.EXPR F1", "min.AU F1"]
    width = max(len(r["model"]) for r in rows) + 2
    lines = ["model".ljust(width) + "".join(h.rjust(12) for h in heads)]
    for r in rows:
        cells = ["-" if r[c] is None else f"{r[c]:.3f}" for c in cols]
        lines.append(r["model"].ljust(width) + "".join(c.rjust(12) for c in cells))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks the script, not the answers")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--per-task", type=int, default=2000, help="training faces per single-task set")
    ap.add_argument("--epochs", type=int, default=8, help="teacher epochs (paper: 8)")
    ap.add_argument("--student-epochs", type=int, default=8,
                    help="student epochs (paper: 3 from a pre-trained backbone; here all start from scratch)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    quick = args.quick
    per_task, n_val, n_test = (300, 200, 200) if quick else (args.per_task, 1000, 2000)
    t_epochs, s_epochs = (2, 1) if quick else (args.epochs, args.student_epochs)
    t0 = time.time()
    data = write_benchmark(args.out / "data", size=40, per_task=per_task, test=n_test, seed=0, val=n_val)
    print(f"data: 3 x {per_task} single-task training faces, {n_val} val, {n_test} test ({time.time() - t0:.0f} s)")
    train = [Source("manifest", str(data[k])) for k in ("train_au", "train_expr", "train_va")]
    base = TrainConfig(
        train=train, val=[Source("manifest", str(data["val"]))], cache=str(args.out / "cache"),
        backbone="small_cnn", backbone_kwargs={"width": 16, "depths": [1, 1, 2, 2]}, size=40, colour="gray",
        epochs=t_epochs, batch_size=32, lr=1e-3, schedule="cosine", threads=args.threads,
        command="benchmarks/train_benchmark.py",
    )  # fmt: skip
    log = lambda s: print(s, flush=True)  # noqa: E731
    runs = args.out / "runs"
    teacher = run_teacher(replace(base), runs / "teacher", log=log)
    run_teacher(replace(base, balance=[]), runs / "teacher_unbalanced", log=log)
    for k in ("au", "expr", "va"):
        single = replace(base, train=[Source("manifest", str(data[f"train_{k}"]))])
        run_teacher(single, runs / f"single_{k}", log=log)
    students = replace(base, epochs=s_epochs, teacher=str(runs / "teacher"), students=5, rounds=1)
    run_students(students, runs / "students", log=log)

    test_table = read_manifest(data["test"])
    test = Dataset(test_table, load_images(test_table.paths, 40, "gray", args.out / "cache"))
    val_table = read_manifest(data["val"])
    val = Dataset(val_table, load_images(val_table.paths, 40, "gray", args.out / "cache"))
    au_freq = np.nanmean(read_manifest(data["train_au"]).au, axis=0)
    au_rare = [int(j) for j in np.argsort(au_freq)[:2]]
    norm = Normalise(1.0, [0.5], [0.25])
    dev = torch.device("cpu")

    def net(folder: Path, heads: dict):
        return load_member(base, heads, folder / "best.safetensors", dev)

    heads = teacher["heads"]
    rows = []
    for name, folder in (("teacher (balanced)", "teacher"), ("teacher (no balancing)", "teacher_unbalanced")):
        rows.append(row(name, predict([net(runs / folder, heads)], test, norm, dev).ensemble, test_table, au_rare))
    for k, task in (("au", "AU"), ("expr", "EXPR"), ("va", "VA")):
        single_heads = {task: heads[task]}
        out = predict([net(runs / f"single_{k}", single_heads)], test, norm, dev).ensemble
        rows.append(row(f"single-task {task} teacher", out, test_table, au_rare))
    nets = [net(runs / "students" / "round1" / f"student{i}", heads) for i in range(1, 6)]
    preds = predict(nets, test, norm, dev)
    for i, out in enumerate(preds.members, 1):
        rows.append(row(f"student {i}", out, test_table, au_rare))
    rows.append(row("ensemble of 5 students", preds.ensemble, test_table, au_rare))
    val_prob = predict(nets, val, norm, dev).ensemble.au_prob
    thresholds = tune_thresholds(val_prob, val_table.au)
    rows.append(row("ensemble, AU thresholds tuned on val", preds.ensemble, test_table, au_rare, thresholds))
    table = print_table(rows)
    rare = ", ".join(AU_NAMES[j] for j in au_rare)
    print(f"\nTest set: {len(test_table)} fully labelled faces; ABAW 2020 metrics (EXPR 0.67 F1 + 0.33 acc, "
          f"AU 0.5 F1 + 0.5 acc at 0.5), minority = {'/'.join(MINORITY_EXPR)} and {rare}")
    print(table)
    print(f"\ntotal {time.time() - t0:.0f} s")
    (args.out / "results.json").write_text(json.dumps({"rows": rows, "au_rare": au_rare}, indent=2) + "\n")


if __name__ == "__main__":
    main()
