"""Multi-face tracking end to end on synthetic videos with exact ground truth (tests/synth.py).

The CLI runs once per scene (BlazeFace back model); each predicted box is matched to a ground-truth
face by IoU in its frame. A face counts as present while at least half of its box is visible
(a continuous span: one face_id for the whole span, so a brief partial occlusion must not break the
track) and as required to be found while at least 90 % of it is visible. Faces less than half
visible are "don't care": boxes on them are neither hits nor false positives.
"""

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import synth
from cli_run import invoke, read_table

MATCH_IOU = 0.4  # predicted box vs ground truth box (clipped to the frame)
PRESENT = 0.5  # visible share for a face to count as present (its span must keep one id)
REQUIRED = 0.9  # visible share for a face to be required to be found
MIN_RECALL = 0.9  # per face, share of its required frames with a matched box
MIN_MEAN_IOU = 0.8  # mean IoU of the matched boxes
MAX_FALSE_POSITIVE_FRAMES = 0.02  # share of frames with a box on no face


@dataclass
class Evaluation:
    """Predictions of one run matched to the ground truth of one synthetic video."""

    video: synth.SynthVideo
    table: pd.DataFrame
    every: int = 1  # the run annotated every Nth frame
    matched: dict[int, dict[int, str]] = field(default_factory=dict)  # gt_id -> frame -> face_id
    ious: list[float] = field(default_factory=list)
    false_positives: list[tuple[int, str]] = field(default_factory=list)  # (frame, face_id)

    def visibility(self, gt_id: int) -> np.ndarray:
        v = np.zeros(self.video.n_frames)
        for i, faces in enumerate(self.video.frames):
            for f in faces:
                if f.gt_id == gt_id:
                    v[i] = f.visible
        return v

    def spans(self, gt_id: int) -> list[tuple[int, int]]:
        """Maximal runs [start, end) of frames where the face is present."""
        present = self.visibility(gt_id) >= PRESENT
        edges = np.flatnonzero(np.diff(np.concatenate([[0], present.astype(int), [0]])))
        return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))

    def recall(self, gt_id: int) -> tuple[int, int]:
        """(found, required) frames of one face."""
        required = [i for i in np.flatnonzero(self.visibility(gt_id) >= REQUIRED) if i % self.every == 0]
        found = sum(1 for i in required if i in self.matched.get(gt_id, {}))
        return found, len(required)

    def summary(self) -> str:
        parts = []
        for g in self.video.gt_ids:
            found, required = self.recall(g)
            ids = sorted(set(self.matched.get(g, {}).values()))
            parts.append(f"gt{g}: {found}/{required} ids {ids}")
        mean_iou = float(np.mean(self.ious)) if self.ious else 0.0
        return (f"{self.video.path.stem} every {self.every}: {'; '.join(parts)}; mean IoU {mean_iou:.3f}; "
                f"false positives {len(self.false_positives)}")


def evaluate(video: synth.SynthVideo, table: pd.DataFrame, every: int = 1) -> Evaluation:
    """Greedy IoU matching, frame by frame, of the `ok` rows to the ground-truth faces."""
    ev = Evaluation(video, table, every)
    ok = table[table["status"] == "ok"]
    for frame, rows in ok.groupby("frame"):
        frame = int(frame)
        gts = video.frames[frame]
        pairs = []
        for r, row in enumerate(rows.itertuples()):
            pred = (row.x1, row.y1, row.x2, row.y2)
            for g, gt in enumerate(gts):
                overlap = synth.iou(pred, synth.clip_box(gt.box, video.width, video.height))
                if overlap >= MATCH_IOU:
                    pairs.append((overlap, r, g))
        used_r, used_g = set(), set()
        for overlap, r, g in sorted(pairs, reverse=True):
            if r in used_r or g in used_g:
                continue
            used_r.add(r)
            used_g.add(g)
            if gts[g].visible >= PRESENT:
                ev.matched.setdefault(gts[g].gt_id, {})[frame] = rows.iloc[r]["face_id"]
                ev.ious.append(overlap)
        for r in range(len(rows)):
            if r not in used_r:
                ev.false_positives.append((frame, rows.iloc[r]["face_id"]))
    return ev


# every scene at full rate, and two with sampling (faces move further between annotated frames)
RUNS = [(name, 1) for name in synth.SCENES] + [("pass_by", 3), ("group_pan", 3)]


@pytest.fixture(scope="module")
def scenes(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, synth.SynthVideo]:
    """The synthetic videos, built on first use."""
    folder = tmp_path_factory.mktemp("synth")

    class Built(dict):
        def __missing__(self, name: str) -> synth.SynthVideo:
            self[name] = synth.SCENES[name](shared_dir / "fixtures" / "images", folder / f"{name}.mp4")
            return self[name]

    return Built()


@pytest.fixture(scope="module", params=RUNS, ids=[f"{n}-every{e}" for n, e in RUNS])
def evaluation(request: pytest.FixtureRequest, torch_home: Path, scenes: dict[str, synth.SynthVideo],
               tmp_path_factory: pytest.TempPathFactory) -> Evaluation:
    """Annotate one scene with the CLI once (faces only), match the result to the ground truth."""
    name, every = request.param
    video = scenes[name]
    out = tmp_path_factory.mktemp("out") / f"{name}.csv"
    result = invoke([video.path, "-o", out, "--detector", "blazeface-back", "--weights", "none",
                     "--every", every])
    assert result.exit_code == 0 and result.exception is None, result.describe()
    ev = evaluate(video, read_table(out), every)
    print(ev.summary())
    return ev


def test_still_face_boxes(shared_dir: Path, torch_home: Path) -> None:
    """The hand-measured face boxes of the stills agree with BlazeFace (back model) on each still."""
    from face_alignment.detection.blazeface.blazeface_detector import BlazeFaceDetector

    detector = BlazeFaceDetector("cpu", back_model=True)
    for name, boxes in synth.FACE_BOXES.items():
        image = cv2.imread(str(shared_dir / "fixtures" / "images" / name))[:, :, ::-1]
        h, w = image.shape[:2]
        square = np.zeros((max(h, w), max(h, w), 3), np.uint8)
        square[:h, :w] = image
        found = [tuple(d[:4]) for d in detector.detect_from_image(square)]
        for box in boxes:
            best = max((synth.iou(box, d) for d in found), default=0.0)
            assert best >= 0.8, f"{name}: box {box} has IoU {best:.2f} with the nearest detection"


@pytest.mark.parametrize("name", list(synth.SCENES))
def test_synth_video_decodes_frame_exact(shared_dir: Path, tmp_path: Path, name: str) -> None:
    """decord reads back every written frame, in order, at i / fps, close to what was drawn."""
    import decord

    video = synth.SCENES[name](shared_dir / "fixtures" / "images", tmp_path / f"{name}.mp4")
    reader = decord.VideoReader(str(video.path))
    assert len(reader) == video.n_frames
    times = reader.get_frame_timestamp(range(len(reader)))[:, 0]
    np.testing.assert_allclose(times, np.arange(video.n_frames) / video.fps, atol=1e-3)
    for i in (0, video.n_frames // 3, video.n_frames - 1):
        decoded = reader[i].asnumpy()[:, :, ::-1].astype(np.float32)
        drawn = video.render_frame(i)[0].astype(np.float32)
        other = video.render_frame(min(i + 3, video.n_frames - 1) if i < 3 else i - 3)[0].astype(np.float32)
        err = np.abs(decoded - drawn).mean()
        assert err < 6, f"frame {i}: mean abs error {err:.1f} against the drawn frame"
        if np.abs(drawn - other).mean() > 1:  # a static stretch looks the same 3 frames on
            assert err < np.abs(decoded - other).mean(), f"frame {i} decodes closer to another frame"
    assert all(f.gt_id in video.gt_ids for faces in video.frames for f in faces)


def test_evaluation_catches_switches(scenes: dict[str, synth.SynthVideo]) -> None:
    """The checker itself: perfect predictions pass; ids swapped mid-span and a dropped face fail."""
    video = scenes["pass_by"]

    def table(swap_after: int | None = None, drop: int | None = None) -> pd.DataFrame:
        rows = []
        for i in range(video.n_frames):
            faces = [f for f in video.visible_faces(i, PRESENT) if f.gt_id != drop]
            for f in faces:
                face_id = f.gt_id
                if swap_after is not None and i > swap_after and face_id in (0, 1):
                    face_id = 1 - face_id
                box = dict(zip(["x1", "y1", "x2", "y2"], synth.clip_box(f.box, video.width, video.height), strict=True))
                rows.append({"frame": i, "status": "ok", "face_id": str(face_id), **box})
            if not faces:
                rows.append({"frame": i, "status": "no_face", "face_id": pd.NA})
        return pd.DataFrame(rows)

    perfect = evaluate(video, table())
    for check in (test_every_frame_has_a_row, test_visible_faces_are_found, test_no_id_switch_while_visible,
                  test_ids_never_shared_between_faces, test_few_false_positives):
        check(perfect)
    swapped = evaluate(video, table(swap_after=40))
    for check in (test_no_id_switch_while_visible, test_ids_never_shared_between_faces):
        with pytest.raises(AssertionError):
            check(swapped)
    with pytest.raises(AssertionError):
        test_visible_faces_are_found(evaluate(video, table(drop=2)))


@pytest.mark.slow
def test_every_frame_has_a_row(evaluation: Evaluation) -> None:
    table, n = evaluation.table, evaluation.video.n_frames
    assert sorted(table["frame"].unique()) == list(range(0, n, evaluation.every))
    assert not table.duplicated(["frame", "face_id"]).any(), "a face_id appears twice in one frame"
    for frame, rows in table.groupby("frame"):
        statuses = set(rows["status"])
        assert statuses in ({"ok"}, {"no_face"}), f"frame {frame}: statuses {statuses}"
        if statuses == {"no_face"}:
            assert len(rows) == 1 and rows["face_id"].isna().all()


@pytest.mark.slow
def test_visible_faces_are_found(evaluation: Evaluation) -> None:
    for g in evaluation.video.gt_ids:
        found, required = evaluation.recall(g)
        assert required > 0
        assert found / required >= MIN_RECALL, f"gt {g} found in {found}/{required} frames; {evaluation.summary()}"
    assert np.mean(evaluation.ious) >= MIN_MEAN_IOU, evaluation.summary()


@pytest.mark.slow
def test_no_id_switch_while_visible(evaluation: Evaluation) -> None:
    """Over a continuous span of presence (brief partial occlusion included) a face keeps its id."""
    for g in evaluation.video.gt_ids:
        matched = evaluation.matched.get(g, {})
        for start, end in evaluation.spans(g):
            ids = [matched[i] for i in range(start, end) if i in matched]
            changes = [(i, matched[i]) for i in range(start, end) if i in matched]
            assert len(set(ids)) <= 1, f"gt {g} frames {start}-{end - 1}: ids change {_runs(changes)}"


@pytest.mark.slow
def test_ids_never_shared_between_faces(evaluation: Evaluation) -> None:
    """A face_id stands for one face only: no swaps at crossings, no reuse after a face leaves."""
    owner: dict[str, set[int]] = {}
    for g, frames in evaluation.matched.items():
        for face_id in frames.values():
            owner.setdefault(face_id, set()).add(g)
    shared = {face_id: gts for face_id, gts in owner.items() if len(gts) > 1}
    assert not shared, f"face ids on several faces: {shared}; {evaluation.summary()}"


@pytest.mark.slow
def test_few_false_positives(evaluation: Evaluation) -> None:
    frames = {frame for frame, _ in evaluation.false_positives}
    share = len(frames) / len(evaluation.table["frame"].unique())
    assert share <= MAX_FALSE_POSITIVE_FRAMES, f"boxes on no face: {evaluation.false_positives[:10]}"


def _runs(changes: list[tuple[int, str]]) -> list[tuple[int, int, str]]:
    """(first frame, last frame, id) runs, for readable failure messages."""
    runs: list[tuple[int, int, str]] = []
    for i, face_id in changes:
        if runs and runs[-1][2] == face_id:
            runs[-1] = (runs[-1][0], i, face_id)
        else:
            runs.append((i, i, face_id))
    return runs
