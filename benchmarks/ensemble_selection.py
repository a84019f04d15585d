"""Which networks make the best bundle: every network alone, ensembles of them, flip TTA, logit averaging.

Runs each network of the given bundles once on the data (and once on the mirrored crops), then scores
combinations of their expression outputs from those stored logits: FER+ majority-vote accuracy and
macro-F1 on FER+ validation and on the tuning split of FER+ train (training/tuning.py). Prints one table.

    python benchmarks/ensemble_selection.py weights/ferplus-fast OLD_STUDENTS_BUNDLE \\
        --ferplus ../shared/data/fer2013 --cache ../fer-runs/cache

A network trained on all of FER+ train (every bundle made before the tuning split existed) has seen the
tuning split: its tuning figures are training accuracy, only FER+ validation is clean for it.
"""

import argparse
import itertools
from pathlib import Path

import numpy as np
import torch

from fer_annotate.models.bundle import load_bundle
from fer_annotate.models.ensemble import Ensemble
from fer_annotate.models.tta import flipped_logits, mirror_permutation
from training.data import LabelTable, load_images, read_manifest
from training.metrics import expr_metrics
from training.tuning import only_tuning


@torch.inference_mode()
def network_logits(bundle_paths: list[str], table: LabelTable, cache: str | None, batch: int = 256):
    """Names and EXPR logits [N, 7] of every member of the bundles, on the crops and on the mirrored crops."""
    bundles = [load_bundle(p) for p in bundle_paths]
    images = load_images(table.paths, bundles[0].input.size, "rgb", cache, 1)
    names, plain, flipped = [], [], []
    for b in bundles:
        ens = Ensemble(b, "cpu")
        mirror = mirror_permutation(b.bs_names)
        for k, net in enumerate(ens.cnns):
            names.append(f"{b.name}[{k}]")
            p, f = [], []
            for start in range(0, len(table), batch):
                crops = torch.from_numpy(np.array(images[start : start + batch])).permute(0, 3, 1, 2).contiguous()
                x = ens.preprocess(crops)
                p.append(net.forward_hidden(x)[0]["EXPR"].float())
                f.append(flipped_logits(net, x, mirror)["EXPR"].float())
            plain.append(torch.cat(p))
            flipped.append(torch.cat(f))
    return names, torch.stack(plain), torch.stack(flipped)


def ensemble_metrics(logits: torch.Tensor, labels: np.ndarray, average: str) -> tuple[float, float]:
    """Accuracy and macro-F1 of an ensemble of logits [M, N, 7] (mean of probabilities or of logits)."""
    prob = logits.softmax(-1).mean(0) if average == "probs" else logits.mean(0).softmax(-1)
    m = expr_metrics(prob.numpy(), labels)
    return m["acc"], m["f1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+")
    parser.add_argument("--ferplus", required=True, help="FER2013 folder with train/, val/, ferplus_{train,val}.csv")
    parser.add_argument("--cache", default=None, help="Decoded-image cache folder.")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(args.ferplus)
    data = {
        "val": read_manifest(root / "ferplus_val.csv", root / "val"),
        "tuning": only_tuning(read_manifest(root / "ferplus_train.csv", root / "train")),
    }
    outs = {split: network_logits(args.bundles, table, args.cache) for split, table in data.items()}
    names = outs["val"][0]
    labels = {split: table.expr for split, table in data.items()}

    def row(label: str, members: tuple[int, ...], tta: bool, average: str) -> None:
        cells = []
        for split in ("val", "tuning"):
            _, plain, flipped = outs[split]
            logits = torch.cat([plain[list(members)], flipped[list(members)]]) if tta else plain[list(members)]
            acc, f1 = ensemble_metrics(logits, labels[split], average)
            cells += [f"{acc:.4f}", f"{f1:.4f}"]
        cost = len(members) * (2 if tta else 1)
        print(f"| {label} | {cost} | {'flip' if tta else '-'} | {average} | " + " | ".join(cells) + " |")

    print(f"FER+ val {len(data['val'])} images, tuning split {len(data['tuning'])} images")
    print("| networks | cost (network passes) | TTA | average | val acc | val F1 | tuning acc | tuning F1 |")
    print("|---|---|---|---|---|---|---|---|")
    for k, name in enumerate(names):
        row(name, (k,), False, "probs")
        row(name, (k,), True, "probs")
    by_val = sorted(range(len(names)), key=lambda k: -ensemble_metrics(outs["val"][1][[k]], labels["val"], "probs")[0])
    for size in range(2, len(names) + 1):
        best = max(itertools.combinations(range(len(names)), size),
                   key=lambda c: ensemble_metrics(outs["val"][1][list(c)], labels["val"], "probs")[0])
        top = tuple(sorted(by_val[:size]))
        for label, members in ((f"best {size} on val", best), (f"top {size} singles", top)):
            text = f"{label}: " + ", ".join(names[k] for k in members)
            for tta, average in ((False, "probs"), (False, "logits"), (True, "probs")):
                row(text, members, tta, average)


if __name__ == "__main__":
    main()
