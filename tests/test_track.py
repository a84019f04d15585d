"""Tracker on constructed box sequences: crossing, occlusion, enter/leave, false positives."""

import numpy as np

from fer_annotate.faces.track import Tracker, TrackerConfig, iou_matrix


def box(cx: float, cy: float, side: float = 60.0) -> list[float]:
    return [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]


def run(frames: list[list[list[float]]], config: TrackerConfig | None = None, fps: float = 25.0, scores=None):
    """Feed frames of boxes; return per frame {detection index: face_id}."""
    tracker = Tracker(config or TrackerConfig(min_hits=3, max_misses=5))
    settled = []
    for i, boxes in enumerate(frames):
        s = None if scores is None else scores[i]
        tracker.update(np.array(boxes).reshape(-1, 4), i / fps, s)
        settled += tracker.finalize()
    settled += tracker.finalize(flush=True)
    assert [pos for pos, _ in settled] == list(range(len(frames)))
    return [ids for _, ids in settled]


def test_iou_matrix_values():
    a = np.array([[0, 0, 10, 10]], dtype=float)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], dtype=float)
    np.testing.assert_allclose(iou_matrix(a, b), [[1.0, 50 / 150, 0.0]])


def test_single_face_keeps_one_id_including_first_frames():
    frames = [[box(100 + 3 * i, 100)] for i in range(40)]
    ids = run(frames)
    assert all(f == {0: 0} for f in ids)


def test_crossing_faces_keep_their_ids():
    # Two faces move towards each other horizontally at different heights, overlap and pass.
    n = 60
    frames = []
    for i in range(n):
        a = box(50 + 8 * i, 200)
        b = box(530 - 8 * i, 215)
        frames.append([a, b] if i % 2 else [b, a])  # detection order must not matter
    ids = run(frames)
    id_a, id_b = ids[0][1], ids[0][0]
    assert id_a != id_b
    for i, f in enumerate(ids):
        a_det = 0 if i % 2 else 1
        assert (f[a_det], f[1 - a_det]) == (id_a, id_b), (i, f)


def test_short_occlusion_keeps_id_long_absence_gets_new_id():
    frames = [[box(200, 200)] for _ in range(10)] + [[] for _ in range(4)] + [[box(200, 200)] for _ in range(10)]
    frames += [[] for _ in range(8)] + [[box(200, 200)] for _ in range(10)]
    ids = run(frames)
    assert {f.get(0) for f in ids[:24] if f} == {0}
    assert all(f == {} for f in ids[24:32])
    assert {f.get(0) for f in ids[32:]} == {1}


def test_enter_and_leave_with_motion_and_ids_never_reused():
    frames = []
    for i in range(50):
        dets = []
        if i < 30:
            dets.append(box(100 + 10 * i, 100))
        if 20 <= i:
            dets.append(box(600 - 5 * (i - 20), 300))
        frames.append(dets)
    ids = run(frames)
    assert ids[0] == {0: 0}
    assert ids[25] == {0: 0, 1: 1}
    assert ids[40] == {0: 1}
    assert max(max(f.values()) for f in ids if f) == 1


def test_one_frame_false_positives_get_no_id():
    frames = [[box(100, 100)] + ([box(400, 300)] if i % 7 == 3 else []) for i in range(30)]
    ids = run(frames)
    assert all(set(f.values()) == {0} for f in ids)


def test_low_score_tracks_are_not_confirmed():
    frames = [[box(100, 100), box(400, 300)] for _ in range(20)]
    scores = [[0.95, 0.55] for _ in range(20)]
    ids = run(frames, TrackerConfig(min_hits=3, confirm_score=0.8), scores=scores)
    assert all(f == {0: 0} for f in ids)


def test_fast_motion_without_overlap_is_still_followed():
    # 40 px per frame for a 60 px face: consecutive boxes overlap little; the motion model keeps up.
    frames = [[box(50 + 40 * i, 200)] for i in range(15)]
    ids = run(frames)
    assert all(f == {0: 0} for f in ids)


def test_a_different_face_in_the_same_place_gets_a_new_id():
    # A missed cut: the box stays, the face changes (its thumbnail no longer correlates); one frame later.
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=256), rng.normal(size=256)
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    tracker = Tracker(TrackerConfig(min_hits=2))
    settled = []
    for i in range(10):
        look = a if i < 5 else b
        tracker.update(np.array([box(100, 100)]), i / 25, appearance=[look + 0.05 * rng.normal(size=256) / 16])
        settled += tracker.finalize()
    settled += tracker.finalize(flush=True)
    assert [ids.get(0) for _, ids in settled] == [0] * 5 + [1] * 5
