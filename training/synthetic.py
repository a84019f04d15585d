"""Procedural face-like images whose AUs, expression and valence/arousal are known functions of what is drawn.

A grey face (ellipse) with brows, eyes, cheeks, nose and mouth is drawn from latent parameters: an
expression class (imbalanced like real data: many neutral and happy faces, few disgusted or afraid),
its prototype action units (FACS-like: happiness = AU6 + AU12, sadness = AU1 + AU4 + AU15, ...) with
random omissions and extra AUs, and an intensity. The geometry follows the AUs (AU1 raises the inner
brow ends, AU12 pulls the mouth corners up, AU25 opens the lips, ...); anger and disgust also have
cues outside the 8 AUs (pressed lips, nose wrinkles). Valence and arousal are functions of the
expression and the drawn AU intensities plus noise. Pose, size, lighting and pixel noise vary.

The benchmark data: three training sets of different faces, each labelled for ONE task only, and a
fully labelled validation and test set, written as PNG files + CSV manifests.
"""

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

AU_NAMES = ["AU01", "AU02", "AU04", "AU06", "AU12", "AU15", "AU20", "AU25"]
EXPR_NAMES = ["neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise"]
# Class frequencies (Aff-Wild2-like imbalance: disgust and fear rare).
EXPR_PRIOR = np.array([0.32, 0.08, 0.025, 0.035, 0.30, 0.13, 0.11])
# Prototype AUs per expression (indices into AU_NAMES).
PROTOTYPES = {
    0: [],
    1: [2],  # anger: brow lowerer (+ pressed lips, drawn)
    2: [2, 5],  # disgust: brow lowerer, lip corner depressor (+ nose wrinkles, drawn)
    3: [0, 1, 2, 6, 7],  # fear: inner + outer brow raiser, brow lowerer, lip stretcher, lips part
    4: [3, 4],  # happiness: cheek raiser, lip corner puller
    5: [0, 2, 5],  # sadness: inner brow raiser, brow lowerer, lip corner depressor
    6: [0, 1, 7],  # surprise: brow raisers, lips part
}
VA_BASE = np.array([[0.0, -0.2], [-0.6, 0.5], [-0.6, 0.2], [-0.5, 0.6], [0.6, 0.3], [-0.5, -0.3], [0.2, 0.7]])


@dataclass
class Faces:
    """Generated images (uint8 [N, S, S, 1]) and their complete labels."""

    images: np.ndarray
    au: np.ndarray  # [N, 8] 0/1
    expr: np.ndarray  # [N]
    va: np.ndarray  # [N, 2]


def _segment_distance(x, y, x0, y0, x1, y1):
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy + 1e-9), 0, 1)
    return np.hypot(x - (x0 + t * dx), y - (y0 + t * dy))


def _draw(size: int, p: dict, rng: np.random.Generator) -> np.ndarray:
    """One face image (float 0..1, [size, size]) from its drawing parameters."""
    g = (np.arange(size) + 0.5) / size
    gx, gy = np.meshgrid(g, g)
    c, s = np.cos(p["angle"]), np.sin(p["angle"])
    x0, y0 = (gx - p["cx"]) / p["scale"], (gy - p["cy"]) / p["scale"]
    x, y = c * x0 + s * y0, -s * x0 + c * y0  # face coordinates (face centre 0, 0)
    img = p["bg"] + p["bg_slope"] * (gx - 0.5)
    face = (x / 0.33) ** 2 + (y / 0.42) ** 2 <= 1
    img = np.where(face, p["skin"] + 0.08 * x, img)
    ink = p["skin"] - 0.45
    au = p["au_int"]
    # cheeks (AU6)
    for side in (-1, 1):
        blob = np.exp(-(((x - side * 0.17) ** 2 + (y - 0.06) ** 2) / (2 * 0.05**2)))
        img = img + face * 0.18 * au[3] * blob
    # brows: inner end raised by AU1, outer by AU2, both lowered and drawn together by AU4
    for side in (-1, 1):
        xi, xo = side * (0.07 - 0.03 * au[2]), side * 0.23
        yi = -0.18 - 0.07 * au[0] + 0.05 * au[2]
        yo = -0.18 - 0.07 * au[1] + 0.03 * au[2]
        d = _segment_distance(x, y, xi, yi, xo, yo)
        img = np.where(d < 0.022, ink, img)
    # eyes: narrowed by AU6, widened by AU1 + AU2
    open_ = np.clip(1.0 - 0.55 * au[3] + 0.35 * (au[0] + au[1]) / 2, 0.3, 1.6)
    for side in (-1, 1):
        e = ((x - side * 0.14) / 0.065) ** 2 + ((y + 0.07) / (0.032 * open_)) ** 2
        img = np.where(e <= 1, 0.95, img)
        pupil = ((x - side * 0.14) / 0.025) ** 2 + ((y + 0.07) / 0.025) ** 2
        img = np.where((pupil <= 1) & (e <= 1), 0.1, img)
    # nose, with wrinkles for disgust
    img = np.where((np.abs(x) < 0.012) & (y > -0.04) & (y < 0.08), img - 0.15, img)
    if p["wrinkle"] > 0:
        for yy in (-0.03, 0.0):
            d = _segment_distance(x, y, -0.05, yy, 0.05, yy)
            img = np.where(d < 0.01, img - 0.25 * p["wrinkle"], img)
    # mouth: corners up (AU12) / down (AU15), wider (AU20), open (AU25), pressed (anger)
    half = 0.12 * (1 + 0.35 * au[6] - 0.25 * p["press"])
    curve = 0.07 * au[4] - 0.06 * au[5]
    opening = 0.08 * au[7]
    thick = 0.016 * (1 - 0.5 * p["press"])
    inside = np.abs(x) <= half
    upper = 0.21 - curve * (x / half) ** 2 + curve - opening / 2
    lower = upper + opening
    lips = inside & ((np.abs(y - upper) < thick) | (np.abs(y - lower) < thick))
    hole = inside & (y > upper) & (y < lower)
    img = np.where(hole, 0.08, img)
    img = np.where(lips, ink + 0.05, img)
    img = p["gain"] * img + rng.normal(0, p["noise"], img.shape)
    return np.clip(img, 0, 1)


def generate(n: int, size: int = 40, seed: int = 0, noise: float = 0.05, label_noise: float = 0.03) -> Faces:
    """n faces with their AU, expression and VA labels (a fixed function of seed)."""
    rng = np.random.default_rng(seed)
    expr = rng.choice(len(EXPR_NAMES), size=n, p=EXPR_PRIOR / EXPR_PRIOR.sum())
    images = np.empty((n, size, size, 1), np.uint8)
    au = np.zeros((n, len(AU_NAMES)), np.float32)
    va = np.zeros((n, 2), np.float32)
    for i in range(n):
        e = int(expr[i])
        strength = rng.uniform(0.5, 1.0) if e else 0.0
        active = np.zeros(len(AU_NAMES), bool)
        active[PROTOTYPES[e]] = rng.random(len(PROTOTYPES[e])) < 0.85
        active |= rng.random(len(AU_NAMES)) < 0.04
        intensity = np.where(active, rng.uniform(0.55, 1.0, len(AU_NAMES)) * max(strength, 0.7), 0.0)
        au[i] = active
        params = {
            "cx": 0.5 + rng.uniform(-0.05, 0.05), "cy": 0.5 + rng.uniform(-0.05, 0.05),
            "scale": rng.uniform(0.88, 1.08), "angle": rng.uniform(-0.15, 0.15),
            "bg": rng.uniform(0.1, 0.9), "bg_slope": rng.uniform(-0.3, 0.3), "skin": rng.uniform(0.5, 0.8),
            "gain": rng.uniform(0.75, 1.15), "noise": noise, "au_int": intensity,
            "press": strength if e == 1 else 0.0, "wrinkle": strength if e == 2 else 0.0,
        }  # fmt: skip
        images[i, :, :, 0] = np.round(_draw(size, params, rng) * 255).astype(np.uint8)
        v = VA_BASE[e, 0] * (0.5 + 0.5 * strength) + 0.25 * (intensity[4] - intensity[5])
        a = VA_BASE[e, 1] * (0.5 + 0.5 * strength) + 0.2 * (intensity[7] + intensity[1] - intensity[3]) / 2
        va[i] = np.clip([v + rng.normal(0, 0.08), a + rng.normal(0, 0.08)], -1, 1)
    flip = rng.random(n) < label_noise
    expr = np.where(flip, rng.integers(0, len(EXPR_NAMES), n), expr)
    return Faces(images, au, expr.astype(np.int64), va)


def write_split(faces: Faces, folder: Path, name: str, tasks: tuple[str, ...]) -> Path:
    """PNG files + a manifest CSV holding only the given tasks' labels; returns the CSV path."""
    img_dir = folder / name
    img_dir.mkdir(parents=True, exist_ok=True)
    header = ["path"]
    header += AU_NAMES if "AU" in tasks else []
    header += ["expression"] if "EXPR" in tasks else []
    header += ["valence", "arousal"] if "VA" in tasks else []
    csv_path = folder / f"{name}.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i in range(len(faces.images)):
            file = f"{name}/{i:06d}.png"
            Image.fromarray(faces.images[i, :, :, 0]).save(folder / file)
            row = [file]
            row += [str(int(v)) for v in faces.au[i]] if "AU" in tasks else []
            row += [EXPR_NAMES[faces.expr[i]]] if "EXPR" in tasks else []
            row += [f"{faces.va[i, 0]:.4f}", f"{faces.va[i, 1]:.4f}"] if "VA" in tasks else []
            w.writerow(row)
    return csv_path


def write_benchmark(out: str | Path, size: int = 40, per_task: int = 3000, test: int = 2000,
                    seed: int = 0, val: int | None = None) -> dict[str, Path]:
    """Three single-task training manifests (different faces each) + fully labelled val and test
    (val as large as test unless given). Rewrites nothing that is already there."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    splits = [(f"train_{t.lower()}", per_task, (t,)) for t in ("AU", "EXPR", "VA")]
    splits += [("val", test if val is None else val, ("AU", "EXPR", "VA")), ("test", test, ("AU", "EXPR", "VA"))]
    for k, (name, n, tasks) in enumerate(splits):
        csv_path = out / f"{name}.csv"
        if not csv_path.is_file():
            write_split(generate(n, size, seed * 100 + k), out, name, tasks)
        paths[name] = csv_path
    return paths


def write_abaw(out: str | Path, videos: int = 3, frames: int = 40, size: int = 40, seed: int = 0,
               split: str = "Train_Set") -> Path:
    """A small Aff-Wild2 / ABAW-layout copy of procedural faces: cropped_aligned/<video>/%05d.jpg and
    annotations/{AU,EXPR,VA}_Set/<split>/<video>.txt (2020 AU set); every 7th frame unlabelled
    (-1 / -5) so that missing labels occur. Frames are independent faces (no motion)."""
    out = Path(out)
    header = {"AU_Set": ",".join(a.replace("AU0", "AU") for a in AU_NAMES),
              "EXPR_Set": "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise", "VA_Set": "valence,arousal"}
    for task in header:
        (out / "annotations" / task / split).mkdir(parents=True, exist_ok=True)
    for v in range(videos):
        name = f"video{v + 1}"
        faces = generate(frames, size, seed * 1000 + v)
        (out / "cropped_aligned" / name).mkdir(parents=True, exist_ok=True)
        lines: dict[str, list[str]] = {task: [h] for task, h in header.items()}
        for k in range(frames):
            Image.fromarray(faces.images[k, :, :, 0]).convert("RGB").save(
                out / "cropped_aligned" / name / f"{k + 1:05d}.jpg", quality=95)
            missing = k % 7 == 3
            au = ["-1"] * len(AU_NAMES) if missing else [str(int(x)) for x in faces.au[k]]
            lines["AU_Set"].append(",".join(au))
            lines["EXPR_Set"].append("-1" if missing else str(int(faces.expr[k])))
            lines["VA_Set"].append("-5,-5" if missing else f"{faces.va[k, 0]:.3f},{faces.va[k, 1]:.3f}")
        for task, content in lines.items():
            (out / "annotations" / task / split / f"{name}.txt").write_text("\n".join(content) + "\n")
    return out
