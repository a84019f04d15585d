"""The tuning split: a fixed tenth of FER+ train that no training run sees, to make choices on.

FER+ validation picks each run's best epoch, so choices tuned on it overstate held-out accuracy. The
tuning split is decided by a stable hash of each image's FER+ name (the `ferplus_name` column of a
manifest), so it is the same on every machine, in every manifest derived from FER+ train (labelled
manifests carry the name along) and for every run: teacher and students alike drop it from their
training data (loop.load_datasets), and `fer-train evaluate --tuning` scores only it. Rows without a
FER+ name (video faces, other datasets) are never in it.
"""

import hashlib

import numpy as np

from training.data import LabelTable

TUNING_PERCENT = 10


def in_tuning(name: str) -> bool:
    """Whether a FER+ image name (e.g. fer0011724.png) belongs to the tuning split (about 10 %)."""
    if not name:
        return False
    digest = hashlib.sha256(name.strip().lower().encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100 < TUNING_PERCENT


def tuning_mask(table: LabelTable) -> np.ndarray:
    """Boolean mask of a table's rows in the tuning split (all False when it has no FER+ names)."""
    if not table.ferplus_names:
        return np.zeros(len(table), bool)
    return np.fromiter((in_tuning(n) for n in table.ferplus_names), bool, len(table))


def without_tuning(table: LabelTable) -> LabelTable:
    """The table less its tuning-split rows, with a note of how many were held out."""
    mask = tuning_mask(table)
    if not mask.any():
        return table
    kept = table.subset(~mask)
    kept.notes.append(f"{int(mask.sum())} FER+ images held out as the tuning split (training/tuning.py)")
    return kept


def only_tuning(table: LabelTable) -> LabelTable:
    """The table's tuning-split rows; ValueError when it has none (no `ferplus_name` column)."""
    mask = tuning_mask(table)
    if not mask.any():
        raise ValueError("no tuning-split rows in the data: give the FER+ train manifest (with its ferplus_name "
                         "column), e.g. ferplus_train.csv@fer2013/train")
    return table.subset(mask)
