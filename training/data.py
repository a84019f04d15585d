"""Training data: label readers for ABAW / Aff-Wild2, CSV manifests and expression folders, and images.

Every reader returns a `LabelTable`: one row per image with whatever labels it has (AU as 0/1 with NaN
for missing, expression as a class index with -1 for missing, optionally with the raters' vote
distribution, valence/arousal with NaN for missing, and the regression targets of a geometry teacher:
blendshape scores and head pose angles, NaN for missing).
Tables from several sources are merged by AU name, like the paper's DISFA / ExpW / AFEW-VA additions.
`load_images` decodes every image once into a uint8 array (cached as .npy), so training never decodes
a JPEG twice and needs no DataLoader worker processes.
"""

import hashlib
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

TASKS = ("EXPR", "AU", "VA", "BS", "POSE")
POSE_COLUMNS = ("pose_yaw", "pose_pitch", "pose_roll")
EXPR_NAMES = ["neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise"]
EXPR_NAMES_8 = EXPR_NAMES + ["other"]
AU_2020 = ["AU01", "AU02", "AU04", "AU06", "AU12", "AU15", "AU20", "AU25"]
AU_2021 = ["AU01", "AU02", "AU04", "AU06", "AU07", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26"]
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}

# Folder or CSV spellings of the expression classes -> the paper's names.
EXPR_ALIASES = {
    "neutral": "neutral", "neutrality": "neutral", "calm": "neutral",
    "anger": "anger", "angry": "anger", "ang": "anger",
    "disgust": "disgust", "disgusted": "disgust", "dis": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear",
    "happiness": "happiness", "happy": "happiness", "joy": "happiness", "hap": "happiness",
    "sadness": "sadness", "sad": "sadness",
    "surprise": "surprise", "surprised": "surprise", "sur": "surprise",
    "other": "other",
}  # fmt: skip
# Classes of other datasets that the paper's 7 do not have: skipped with a counted note, not an error.
EXPR_SKIPPED = {"contempt", "unknown", "none", "nf", "not_face", "uncertain"}


class DataError(ValueError):
    """Malformed training data; the message names the file (and line) and what is wrong."""


@dataclass
class LabelTable:
    """Images and their (partial) labels; one row per image."""

    paths: list[str]
    au: np.ndarray  # [N, A] float32: 1, 0, NaN = missing
    expr: np.ndarray  # [N] int64: class index, -1 = missing
    va: np.ndarray  # [N, 2] float32 in [-1, 1], NaN = missing
    au_names: list[str]
    expr_names: list[str] = field(default_factory=lambda: list(EXPR_NAMES))
    video: np.ndarray | None = None  # [N] int64 video index (sequence readers), else None
    frame: np.ndarray | None = None  # [N] int64 1-based frame number within the video
    videos: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # counted warnings (skipped rows and why)
    expr_soft: np.ndarray | None = None  # [N, K] float32 vote distribution (rows sum to 1), NaN = no votes
    bs: np.ndarray | None = None  # [N, B] float32 blendshape scores in [0, 1], NaN = missing
    pose: np.ndarray | None = None  # [N, 3] float32 yaw, pitch, roll in degrees, NaN = missing
    bs_names: list[str] = field(default_factory=list)
    ferplus_names: list[str] = field(default_factory=list)  # FER+ image name per row ("" = none); [] = no column

    def __len__(self) -> int:
        return len(self.paths)

    def has(self, task: str) -> np.ndarray:
        """Boolean mask of the rows labelled for a task (AU: at least one AU labelled)."""
        if task == "AU":
            return ~np.isnan(self.au).all(axis=1) if self.au.shape[1] else np.zeros(len(self), bool)
        if task == "EXPR":
            return self.expr >= 0
        if task == "VA":
            return ~np.isnan(self.va).any(axis=1)
        if task in ("BS", "POSE"):
            values = self.bs if task == "BS" else self.pose
            return np.zeros(len(self), bool) if values is None else ~np.isnan(values).any(axis=1)
        raise ValueError(f"unknown task {task!r}")

    def tasks(self) -> list[str]:
        """The tasks with at least one labelled row, in the canonical order EXPR, AU, VA, BS, POSE."""
        return [t for t in TASKS if self.has(t).any()]

    def subset(self, index: np.ndarray) -> "LabelTable":
        """The rows at index (boolean mask or integer positions)."""
        index = np.flatnonzero(index) if np.asarray(index).dtype == bool else np.asarray(index)
        return LabelTable(
            paths=[self.paths[i] for i in index],
            au=self.au[index],
            expr=self.expr[index],
            va=self.va[index],
            au_names=list(self.au_names),
            expr_names=list(self.expr_names),
            video=None if self.video is None else self.video[index],
            frame=None if self.frame is None else self.frame[index],
            videos=list(self.videos),
            notes=list(self.notes),
            expr_soft=None if self.expr_soft is None else self.expr_soft[index],
            bs=None if self.bs is None else self.bs[index],
            pose=None if self.pose is None else self.pose[index],
            bs_names=list(self.bs_names),
            ferplus_names=[self.ferplus_names[i] for i in index] if self.ferplus_names else [],
        )

    def expr_targets(self, votes: bool = True) -> np.ndarray:
        """Expression targets [N, K] float32: the vote distribution where there is one (and `votes`),
        else the one-hot label; rows without an expression label are NaN."""
        k = len(self.expr_names)
        out = np.full((len(self), k), np.nan, np.float32)
        has = self.expr >= 0
        out[has] = np.eye(k, dtype=np.float32)[self.expr[has]]
        if votes and self.expr_soft is not None:
            soft = ~np.isnan(self.expr_soft).any(axis=1)
            out[soft] = self.expr_soft[soft]
        return out

    def counts(self) -> dict[str, int]:
        """Rows labelled per task (for logs and provenance)."""
        return {"images": len(self)} | {t: int(self.has(t).sum()) for t in TASKS}


def au_name(text: str) -> str | None:
    """Canonical AU name ("AU01", as in bundles) of a header ("AU1", "AU01", "au_1", "AU12_c"), else None."""
    m = re.fullmatch(r"\s*au[_ ]?0*(\d+)(?:_c)?\s*", text, flags=re.IGNORECASE)
    return f"AU{int(m.group(1)):02d}" if m else None


def expr_class(text: str, expr_names: list[str] = EXPR_NAMES) -> int | None:
    """Class index of an expression name or alias (case-insensitive); None for a known non-paper class.

    Raises KeyError for a name that is neither.
    """
    key = text.strip().lower().replace(" ", "_")
    if key in EXPR_SKIPPED:
        return None
    name = EXPR_ALIASES.get(key)
    if name is None or name not in expr_names:
        raise KeyError(text)
    return expr_names.index(name)


def _empty(n: int, n_au: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.full((n, n_au), np.nan, np.float32),
        np.full(n, -1, np.int64),
        np.full((n, 2), np.nan, np.float32),
    )


# ---------------------------------------------------------------------------------------------- folders


def read_folders(root: str | Path) -> LabelTable:
    """Expression image folders: root/<class name>/*.jpg, the class mapped by name (angry -> anger, ...)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    paths, labels, notes = [], [], []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            label = expr_class(sub.name)
        except KeyError:
            known = ", ".join(sorted(EXPR_ALIASES))
            raise DataError(f"{sub}: folder name is not an expression class (known: {known})") from None
        files = sorted(f for f in sub.iterdir() if f.suffix.lower() in IMAGE_EXTS)
        if label is None:
            notes.append(f"{sub}: class {sub.name!r} is not one of the 7 expressions, {len(files)} images skipped")
            continue
        paths += [str(f) for f in files]
        labels += [label] * len(files)
    if not paths:
        raise DataError(f"{root}: no images in expression sub-folders (expected {root}/happy/*.jpg, ...)")
    au, expr, va = _empty(len(paths), 0)
    expr[:] = labels
    return LabelTable(paths, au, expr, va, au_names=[], notes=notes)


# --------------------------------------------------------------------------------------------- manifest

PATH_COLUMNS = ("path", "image", "file", "filename", "img")


def _vote_columns(lower: list[str]) -> dict[int, str]:
    """Header positions of per-class vote columns (an expression name or a known non-paper class)."""
    out = {}
    for i, name in enumerate(lower):
        key = name.replace(" ", "_")
        if key in EXPR_SKIPPED:
            out[i] = key
        elif EXPR_ALIASES.get(key) in EXPR_NAMES:
            out[i] = EXPR_ALIASES[key]
    return out if sum(v in EXPR_NAMES for v in out.values()) >= 2 else {}


def _numbers(cells: list[str], where: str, what: str) -> np.ndarray | None:
    """Floats of a group of cells; None when all are empty; an error when only some are or one is not a number."""
    cells = [c.strip() for c in cells]
    if not any(cells):
        return None
    try:
        return np.array([float(c) for c in cells], np.float32)
    except ValueError:
        raise DataError(f"{where}: {what} {cells} must all be numbers (or all empty)") from None


def read_manifest(csv_path: str | Path, images: str | Path | None = None) -> LabelTable:
    """A CSV manifest: an image path column (relative to `images`, default the CSV's folder) plus any of
    AU columns, `expression` (name or index in paper order) or per-class vote columns, `valence`,
    `arousal`, blendshape columns `bs_<name>` and head pose `pose_yaw, pose_pitch, pose_roll`.
    Empty cells are missing labels. A `ferplus_name` column (the image's name in the FER+ release) is
    kept: it decides the tuning split (training/tuning.py).

    Vote columns (counts or probabilities named by class, e.g. FER+'s `neutral, happiness, ..., contempt,
    unknown, NF`) give the expression target as the vote distribution over the 7 classes and the label
    as its majority (ties: the first class in paper order). A row whose majority is a class outside the 7
    (contempt, unknown, NF) is dropped with a counted note; votes for such classes are otherwise left out.
    A row whose image is missing is skipped with a counted note; a malformed value is an error naming
    the file and line.
    """
    import csv

    csv_path = Path(csv_path)
    root = Path(images) if images is not None else csv_path.parent
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: no such manifest")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError as exc:
        raise DataError(f"{csv_path}: not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x})") from None
    if not rows:
        raise DataError(f"{csv_path}:1: empty manifest (expected a header line)")
    header = [h.strip() for h in rows[0]]
    lower = [h.lower() for h in header]
    path_col = next((lower.index(c) for c in PATH_COLUMNS if c in lower), None)
    if path_col is None:
        raise DataError(f"{csv_path}:1: no image path column (one of {', '.join(PATH_COLUMNS)})")
    au_cols = [(i, au_name(h)) for i, h in enumerate(header) if au_name(h)]
    expr_col = next((lower.index(c) for c in ("expression", "expr", "emotion", "label") if c in lower), None)
    votes = {} if expr_col is not None else _vote_columns(lower)
    v_col = lower.index("valence") if "valence" in lower else None
    a_col = lower.index("arousal") if "arousal" in lower else None
    if (v_col is None) != (a_col is None):
        raise DataError(f"{csv_path}:1: valence and arousal columns come together")
    # an annotation table's ensemble spread (bs_std) and unsmoothed copies (bs_*_raw) are not labels
    bs_cols = [i for i, h in enumerate(lower) if h.startswith("bs_") and h != "bs_std" and not h.endswith("_raw")]
    name_col = lower.index("ferplus_name") if "ferplus_name" in lower else None
    pose_cols = [lower.index(c) for c in POSE_COLUMNS if c in lower]
    if pose_cols and len(pose_cols) != 3:
        raise DataError(f"{csv_path}:1: head pose needs all of {', '.join(POSE_COLUMNS)}")
    if not (au_cols or expr_col is not None or votes or v_col is not None or bs_cols or pose_cols):
        raise DataError(f"{csv_path}:1: no label columns (AU*, expression or votes, valence/arousal, bs_*, pose_*)")
    au_names = [name for _, name in au_cols]
    n = len(rows) - 1
    au, expr, va = _empty(n, len(au_names))
    soft = np.full((n, len(EXPR_NAMES)), np.nan, np.float32) if votes else None
    bs = np.full((n, len(bs_cols)), np.nan, np.float32) if bs_cols else None
    pose = np.full((n, 3), np.nan, np.float32) if pose_cols else None
    names = [""] * n if name_col is not None else []
    vote_class = [EXPR_NAMES.index(c) if c in EXPR_NAMES else -1 for c in votes.values()]
    keep = np.zeros(n, bool)
    paths: list[str] = []
    missing_image = skipped_class = 0
    for r, row in enumerate(rows[1:]):
        line = r + 2
        where = f"{csv_path}:{line}"
        if not any(cell.strip() for cell in row):
            paths.append("")
            continue  # a blank line
        if len(row) != len(header):
            raise DataError(f"{where}: {len(row)} fields, the header has {len(header)}")
        image = Path(row[path_col].strip())
        image = image if image.is_absolute() else root / image
        paths.append(str(image))
        if name_col is not None:
            names[r] = row[name_col].strip()
        if not image.is_file():
            missing_image += 1
            continue
        for j, (col, name) in enumerate(au_cols):
            cell = row[col].strip()
            if cell:
                if cell not in ("0", "1", "0.0", "1.0"):
                    raise DataError(f"{where}: {name} = {cell!r}, expected 0, 1 or empty")
                au[r, j] = float(cell)
        if expr_col is not None and (cell := row[expr_col].strip()):
            if cell.lstrip("-").isdigit():
                k = int(cell)
                if not 0 <= k < len(EXPR_NAMES):
                    raise DataError(f"{where}: expression {k} out of range 0..{len(EXPR_NAMES) - 1}")
                expr[r] = k
            else:
                try:
                    k = expr_class(cell)
                except KeyError:
                    raise DataError(f"{where}: unknown expression {cell!r}") from None
                if k is None:
                    skipped_class += 1
                else:
                    expr[r] = k
        if votes and (counts := _numbers([row[i] for i in votes], where, "votes")) is not None:
            if (counts < 0).any() or not np.isfinite(counts).all() or counts.sum() == 0:
                raise DataError(f"{where}: votes must be finite, >= 0 and not all 0")
            if vote_class[int(counts.argmax())] < 0:
                skipped_class += 1
                continue  # the majority is not one of the 7 expressions
            paper = np.zeros(len(EXPR_NAMES), np.float32)
            for c, k in zip(counts, vote_class, strict=True):
                if k >= 0:
                    paper[k] += c
            soft[r] = paper / paper.sum()
            expr[r] = int(paper.argmax())
        if v_col is not None and (values := _numbers([row[v_col], row[a_col]], where, "valence/arousal")) is not None:
            if not ((values >= -1.0) & (values <= 1.0)).all():
                raise DataError(f"{where}: valence/arousal {values.tolist()} outside [-1, 1]")
            va[r] = values
        if bs_cols and (values := _numbers([row[i] for i in bs_cols], where, "blendshapes")) is not None:
            if not ((values >= 0.0) & (values <= 1.0)).all():
                raise DataError(f"{where}: blendshape scores must lie in [0, 1]")
            bs[r] = values
        if pose_cols and (values := _numbers([row[i] for i in pose_cols], where, "head pose")) is not None:
            if not (np.abs(values) <= 180.0).all():
                raise DataError(f"{where}: head pose angles must lie in [-180, 180] degrees")
            pose[r] = values
        keep[r] = True
    data_rows = sum(1 for path in paths if path)
    if not data_rows:
        raise DataError(f"{csv_path}: the manifest has no rows (a header line only)")
    if missing_image == data_rows:
        raise DataError(f"{csv_path}: none of the {data_rows} image files it lists exists (paths relative to {root})")
    notes = []
    if missing_image:
        notes.append(f"{csv_path}: {missing_image} rows skipped, image file missing")
    if skipped_class:
        what = "rows dropped, majority vote" if votes else "expression labels"
        notes.append(f"{csv_path}: {skipped_class} {what} outside the 7 classes (contempt, unknown, NF, ...)")
    table = LabelTable(paths, au, expr, va, au_names=au_names, notes=notes, expr_soft=soft, bs=bs, pose=pose,
                       bs_names=[header[i][3:] for i in bs_cols], ferplus_names=names)
    return table.subset(keep)


# ------------------------------------------------------------------------------------------------- ABAW

ABAW_SPLITS = {"train": ("Training_Set", "Train_Set"), "val": ("Validation_Set",)}
ABAW_EXPR_HEADER = ["neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise"]


def _find_set(root: Path, task_dir: str) -> Path | None:
    for candidate in (root / task_dir, root / "annotations" / task_dir):
        if candidate.is_dir():
            return candidate
    found = sorted(root.glob(f"*/{task_dir}")) + sorted(root.glob(f"*/*/{task_dir}"))
    return found[0] if found else None


def _read_abaw_file(path: Path, task: str) -> tuple[list[str], np.ndarray]:
    """Header names and values [frames, columns] of one ABAW annotation file; checks every line."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x})") from None
    if not lines:
        raise DataError(f"{path}:1: empty annotation file (expected a header line)")
    header = [h.strip() for h in lines[0].split(",")]
    if task == "AU":
        names = [au_name(h) for h in header]
        if not all(names):
            raise DataError(f"{path}:1: header {lines[0]!r} is not a list of AUs (AU1,AU2,...)")
    elif task == "EXPR":
        names = [h.lower() for h in header]
        if names not in (ABAW_EXPR_HEADER, ABAW_EXPR_HEADER + ["other"]):
            raise DataError(f"{path}:1: header {lines[0]!r}, expected Neutral,Anger,Disgust,Fear,Happiness,...")
    else:
        names = [h.lower() for h in header]
        if names != ["valence", "arousal"]:
            raise DataError(f"{path}:1: header {lines[0]!r}, expected valence,arousal")
    width = 1 if task == "EXPR" else len(names)
    values = np.empty((len(lines) - 1, width), np.float32)
    for k, line in enumerate(lines[1:]):
        parts = line.split(",")
        if not line.strip():
            raise DataError(f"{path}:{k + 2}: blank line, expected {width} value(s) per frame")
        if len(parts) != width:
            raise DataError(f"{path}:{k + 2}: {len(parts)} values, expected {width}")
        try:
            row = [float(p) for p in parts]
        except ValueError:
            raise DataError(f"{path}:{k + 2}: {line!r} is not numeric") from None
        if task == "AU" and not all(x in (0.0, 1.0, -1.0) for x in row):
            raise DataError(f"{path}:{k + 2}: AU values {row}, expected 0, 1 or -1")
        if task == "EXPR" and row[0] not in (-1.0, *map(float, range(len(names)))):
            raise DataError(f"{path}:{k + 2}: expression {row[0]:g}, expected -1 or 0..{len(names) - 1}")
        if task == "VA" and not all(x == -5.0 or -1.0 <= x <= 1.0 for x in row):
            raise DataError(f"{path}:{k + 2}: valence/arousal {row}, expected [-1, 1] or -5")
        values[k] = row
    return names, values


def read_abaw(root: str | Path, split: str = "train", images: str | Path | None = None) -> LabelTable:
    """Aff-Wild2 / ABAW annotations ({AU,EXPR,VA}_Set/<split>/<video>.txt) and their cropped frames.

    Line k after the header labels frame image `<images>/<video>/%05d.jpg` (k 1-based; images default to
    root/cropped_aligned). A frame is unlabelled for a task when any of its values is missing (-1 AU and
    EXPR, -5 VA). Labelled frames without an image are skipped with a counted note. The AU set (2020 or
    2021+) is read from the headers; files with different AU headers may not be mixed.
    """
    root = Path(root)
    if split not in ABAW_SPLITS:
        raise ValueError(f"split must be one of {list(ABAW_SPLITS)}")
    image_root = Path(images) if images else root / "cropped_aligned"
    if not image_root.is_dir():
        raise DataError(f"{image_root}: no frame folder (cropped_aligned/<video>/00001.jpg)")
    per_frame: dict[tuple[str, int], dict[str, np.ndarray]] = {}
    au_names: list[str] | None = None
    expr_names = list(EXPR_NAMES)
    notes: list[str] = []
    found_any = False
    frame_files: dict[str, set[str]] = {}
    for task in TASKS:
        task_dir = _find_set(root, f"{task}_Set")
        if task_dir is None:
            continue
        split_dir = next((task_dir / s for s in ABAW_SPLITS[split] if (task_dir / s).is_dir()), None)
        if split_dir is None:
            continue
        missing_image = unlabelled = 0
        for txt in sorted(split_dir.glob("*.txt")):
            found_any = True
            names, values = _read_abaw_file(txt, task)
            if task == "AU":
                if au_names is None:
                    au_names = list(names)
                elif names != au_names:
                    raise DataError(f"{txt}:1: AU header {names} differs from the other files' {au_names}")
            if task == "EXPR" and len(names) == 8:
                expr_names = list(EXPR_NAMES_8)
            video = txt.stem
            if video not in frame_files:
                vdir = image_root / video
                frame_files[video] = set(os.listdir(vdir)) if vdir.is_dir() else set()
            files = frame_files[video]
            missing = (values == -5.0).any(1) if task == "VA" else (values == -1.0).any(1)
            for k in np.flatnonzero(~missing):
                frame = int(k) + 1
                if f"{frame:05d}.jpg" not in files:
                    missing_image += 1
                    continue
                per_frame.setdefault((video, frame), {})[task] = values[k]
            unlabelled += int(missing.sum())
        if missing_image:
            notes.append(f"{split_dir}: {missing_image} labelled frames skipped, no image in {image_root}")
        if unlabelled:
            notes.append(f"{split_dir}: {unlabelled} frames marked missing (-1/-5), unlabelled for {task}")
    if not found_any:
        raise DataError(f"{root}: no ABAW annotation files ({{AU,EXPR,VA}}_Set/{'|'.join(ABAW_SPLITS[split])}/*.txt)")
    keys = sorted(per_frame)
    au_names = au_names or []
    au, expr, va = _empty(len(keys), len(au_names))
    videos = sorted({v for v, _ in keys})
    vindex = {v: i for i, v in enumerate(videos)}
    video = np.array([vindex[v] for v, _ in keys], np.int64)
    frame = np.array([f for _, f in keys], np.int64)
    for i, key in enumerate(keys):
        labels = per_frame[key]
        if "AU" in labels:
            au[i] = labels["AU"]
        if "EXPR" in labels:
            expr[i] = int(labels["EXPR"][0])
        if "VA" in labels:
            va[i] = labels["VA"]
    paths = [str(image_root / v / f"{f:05d}.jpg") for v, f in keys]
    return LabelTable(paths, au, expr, va, au_names, expr_names, video, frame, videos, notes)


# -------------------------------------------------------------------------------------------- merging


def merge(tables: list[LabelTable]) -> LabelTable:
    """One table from several sources; AU columns aligned by name (a source lacking an AU: NaN)."""
    if not tables:
        raise ValueError("no data sources")
    if len(tables) == 1:
        return tables[0]
    au_names = sorted({n for t in tables for n in t.au_names}, key=lambda n: int(n[2:]))
    expr_names = max((t.expr_names for t in tables), key=len)
    parts_au = []
    for t in tables:
        block = np.full((len(t), len(au_names)), np.nan, np.float32)
        for j, name in enumerate(t.au_names):
            block[:, au_names.index(name)] = t.au[:, j]
        parts_au.append(block)
    video = frame = None
    videos: list[str] = []
    if all(t.video is not None for t in tables):
        offsets = np.cumsum([0] + [len(t.videos) for t in tables])
        video = np.concatenate([t.video + o for t, o in zip(tables, offsets, strict=False)])
        frame = np.concatenate([t.frame for t in tables])
        videos = [v for t in tables for v in t.videos]
    bs_names = next((t.bs_names for t in tables if t.bs is not None), [])
    for t in tables:
        if t.bs is not None and t.bs_names != bs_names:
            raise DataError(f"blendshape columns differ between sources ({t.bs_names[:3]}... vs {bs_names[:3]}...)")

    def stacked(get, width: int) -> np.ndarray | None:
        if all(get(t) is None for t in tables):
            return None
        return np.concatenate([np.full((len(t), width), np.nan, np.float32) if get(t) is None else get(t)
                               for t in tables])

    soft = None
    if any(t.expr_soft is not None for t in tables):
        soft = np.concatenate([t.expr_targets(votes=True)[:, : len(expr_names)] for t in tables])
    return LabelTable(
        paths=[p for t in tables for p in t.paths],
        au=np.concatenate(parts_au),
        expr=np.concatenate([t.expr for t in tables]),
        va=np.concatenate([t.va for t in tables]),
        au_names=au_names,
        expr_names=list(expr_names),
        video=video,
        frame=frame,
        videos=videos,
        notes=[n for t in tables for n in t.notes],
        expr_soft=soft,
        bs=stacked(lambda t: t.bs, len(bs_names)),
        pose=stacked(lambda t: t.pose, 3),
        bs_names=list(bs_names),
        ferplus_names=([n for t in tables for n in (t.ferplus_names or [""] * len(t))]
                       if any(t.ferplus_names for t in tables) else []),
    )


def align_au(table: LabelTable, au_names: list[str]) -> LabelTable:
    """The table with its AU columns in the given order (AUs it lacks: NaN, AUs not listed: dropped)."""
    au = np.full((len(table), len(au_names)), np.nan, np.float32)
    for j, name in enumerate(au_names):
        if name in table.au_names:
            au[:, j] = table.au[:, table.au_names.index(name)]
    table.au, table.au_names = au, list(au_names)
    return table


def read_source(kind: str, path: str, split: str = "train") -> LabelTable:
    """One data source by kind: "abaw" (root, split train/val), "manifest" (CSV, or CSV@IMAGE_ROOT when its
    image paths are relative to another folder) or "folders" (dir)."""
    if kind == "abaw":
        return read_abaw(path, split)
    if kind == "manifest":
        csv_path, _, images = path.partition("@")
        return read_manifest(csv_path, images or None)
    if kind == "folders":
        return read_folders(path)
    raise ValueError(f"unknown data source kind {kind!r}")


# ----------------------------------------------------------------------------------------------- images


def decode(path: str, size: int, colour: str) -> np.ndarray:
    """One image as uint8 [size, size, C] (C = 1 gray, 3 rgb), resized (bilinear) when needed."""
    with Image.open(path) as im:
        im = im.convert("L" if colour == "gray" else "RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.BILINEAR)
        array = np.asarray(im, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def load_images(
    paths: list[str], size: int, colour: str, cache_dir: str | Path | None = None, threads: int = 2
) -> np.ndarray:
    """All images decoded once into uint8 [N, size, size, C], cached as a memory-mapped .npy file.

    The cache file name is a hash of the paths, each file's size and modification time, the size and
    the colour, so a later run on the same data (e.g. the students of a teacher) reuses it and an image
    replaced under the same name is decoded again. An unreadable image is an error naming the file.
    """
    channels = 1 if colour == "gray" else 3
    shape = (len(paths), size, size, channels)
    if cache_dir is None:
        out = np.empty(shape, np.uint8)
        _decode_into(out, paths, size, colour, threads)
        return out
    key = hashlib.sha1(f"{size}|{colour}|".encode() + "\n".join(map(_file_identity, paths)).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"images-{size}-{colour}-{len(paths)}-{key}.npy"
    if not cache.is_file():
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.stem}.{os.getpid()}.tmp.npy")
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        _decode_into(out, paths, size, colour, threads)
        out.flush()
        del out
        os.replace(tmp, cache)
    return np.load(cache, mmap_mode="r")


def _file_identity(path: str) -> str:
    """A path with its size and modification time (a file that cannot be read: the path alone, and decoding
    reports it)."""
    try:
        st = os.stat(path)
    except OSError:
        return path
    return f"{path}|{st.st_size}|{st.st_mtime_ns}"


def _decode_into(out: np.ndarray, paths: list[str], size: int, colour: str, threads: int) -> None:
    def one(i: int) -> None:
        try:
            out[i] = decode(paths[i], size, colour)
        except (OSError, ValueError) as e:
            raise DataError(f"{paths[i]}: cannot read image ({e})") from None

    with ThreadPoolExecutor(max(1, threads)) as pool:
        list(pool.map(one, range(len(paths))))


@dataclass
class Dataset:
    """A label table with its decoded images [N, S, S, C] uint8 (in memory or memory-mapped)."""

    labels: LabelTable
    images: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)
