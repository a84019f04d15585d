"""Shot cuts: the detector on small constructed clips, the tracker ending tracks at a cut, and the CLI on a
synthetic video where a different face takes the same box across a hard cut."""

import json

import numpy as np
import pytest
import synth
import torch
from cli_run import invoke, read_table, sidecar

from fer_annotate.faces.cuts import CutDetector
from fer_annotate.faces.track import Tracker, TrackerConfig


def texture(seed: int, h: int = 200, w: int = 400) -> np.ndarray:
    """A smooth random RGB scene larger than the frame (so the camera can pan over it)."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (h // 10, w // 10, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def tiny_clip() -> tuple[np.ndarray, list[int]]:
    """Frames [N, 90, 160, 3]: a slow pan, a hard cut, a fast pan (not a cut), a two-frame flash (not a
    cut), a hard cut, a fade to black and up into another scene (a boundary at the black frame)."""
    a, b, c, d = texture(0), texture(1), texture(2), texture(3)
    frames, cuts = [], []

    def shot(scene: np.ndarray, n: int, x0: int, step: int) -> None:
        for i in range(n):
            x = x0 + step * i
            frames.append(scene[50:140, x : x + 160])

    shot(a, 20, 0, 1)
    cuts.append(len(frames))
    shot(b, 12, 0, 0)
    shot(b, 8, 0, 12)  # 12 px a frame: a fast pan
    start = len(frames)
    shot(b, 12, 96, 0)
    for k in (start + 5, start + 6):
        frames[k] = np.clip(frames[k].astype(np.int32) * 2 + 30, 0, 255).astype(np.uint8)
    cuts.append(len(frames))
    shot(c, 15, 10, 1)
    for k in range(1, 6):  # fade out to black, fade in on another scene
        frames[-k] = (frames[-k].astype(np.float32) * (k - 1) / 5).astype(np.uint8)
    cuts.append(len(frames) - 1)
    shot(d, 15, 0, 0)
    for k in range(5):
        frames[-15 + k] = (frames[-15 + k].astype(np.float32) * (k + 1) / 6).astype(np.uint8)
    return np.stack(frames), cuts


def test_cut_detector_precision_and_recall_on_a_tiny_clip():
    frames, truth = tiny_clip()
    detector = CutDetector()
    flags = np.concatenate([detector(torch.from_numpy(frames[s : s + 7])) for s in range(0, len(frames), 7)])
    found = np.flatnonzero(flags).tolist()
    hits = [t for t in truth if any(abs(f - t) <= 1 for f in found)]
    false = [f for f in found if not any(abs(f - t) <= 1 for t in truth)]
    assert (len(hits) / len(truth), len(false)) == (1.0, 0), f"cuts {truth}, found {found}"
    assert detector.cuts == len(found)


def test_tracker_cut_ends_every_track():
    tracker = Tracker(TrackerConfig(min_hits=2))
    box = np.array([[100, 100, 160, 160]], dtype=float)
    settled = []
    for i in range(10):
        if i == 5:
            tracker.cut()
        tracker.update(box, i / 25)
        settled += tracker.finalize()
    settled += tracker.finalize(flush=True)
    ids = [frame_ids.get(0) for _, frame_ids in settled]
    assert ids == [0] * 5 + [1] * 5


def two_shots(images, path, cut: int = 40, n: int = 80) -> synth.SynthVideo:
    """One face, a hard cut to another scene where a different face has the very same box."""
    bg = synth._background(images, (640, 360))
    other = np.ascontiguousarray(bg[::-1, ::-1].astype(np.float32) * [1.4, 0.8, 0.6]).clip(0, 255).astype(np.uint8)
    first = synth.Sprite(images, "astronaut.png", 0, 110)
    second = synth.Sprite(images, "grace_hopper.jpg", 1, 110)

    def frame(i: int):
        sprite, back = (first, bg) if i < cut else (second, other)
        return synth.render(back, [sprite.layer(320 + 0.5 * i, 180, 110)])

    return synth.write_video(path, n, 25.0, (640, 360), frame)


@pytest.mark.slow
@pytest.mark.parametrize("detect_every", [1, 4])
def test_a_different_face_in_the_same_box_after_a_cut_gets_a_new_id(shared_dir, torch_home, tmp_path, detect_every):
    video = two_shots(shared_dir / "fixtures" / "images", tmp_path / "cut.mp4")
    ids = {}
    for flag in ("--cuts", "--no-cuts"):
        out = tmp_path / f"{flag}.csv"
        result = invoke([video.path, "-o", out, "--weights", "none", "--detector", "blazeface", "--reid", "none",
                         "--detect-every", detect_every, "--threads", 1, flag])
        assert result.exit_code == 0, result.describe()
        table = read_table(out)
        ok = table[table["status"] == "ok"]
        ids[flag] = (set(ok[ok["frame"] < 40]["face_id"]), set(ok[ok["frame"] >= 40]["face_id"]))
        assert len(ok) >= 0.9 * video.n_frames, "the faces are found"
        if flag == "--cuts":
            meta = json.loads(sidecar(out).read_text())
            assert meta["shots"]["cut_frames"] == [40]
    before, after = ids["--cuts"]
    assert len(before) == 1 and len(after) == 1 and not before & after, ids
    before, after = ids["--no-cuts"]  # what the cut prevents: the id continues onto the other face
    assert before & after, ids
