"""Forward decoding (PyAV) serves exactly decord's frames, and hands over to decord where they disagree."""

from pathlib import Path

import numpy as np
import pytest

from fer_annotate.media.stream import ForwardFrames
from fer_annotate.media.video import Video

FIXTURES = ("pyfeat_WolfgangLanger_Pexels.mp4", "pyfeat_single_face.mp4", "pyfeat_face_noface.mov",
            "pyfeat_no_face.mp4")


def _decord_frames(video: Video, indices: np.ndarray) -> np.ndarray:
    return np.concatenate([video._read(indices[s : s + 16]) for s in range(0, len(indices), 16)])


@pytest.mark.parametrize("name", FIXTURES)
@pytest.mark.parametrize("pick", ["all", "every3", "late"])
def test_batches_are_decords_frames(shared_dir: Path, name: str, pick: str) -> None:
    path = shared_dir / "fixtures" / "videos" / name
    video = Video(path, threads=1)
    n = video.info.n_frames
    indices = {"all": np.arange(n), "every3": np.arange(1, n, 3), "late": np.arange(n // 2, n)}[pick]
    got = np.concatenate([b.frames for b in video.batches(indices, 16)])
    assert got.shape[0] == len(indices)
    np.testing.assert_array_equal(got, _decord_frames(Video(path, threads=1), indices))


def test_forward_reader_stops_where_times_disagree(shared_dir: Path) -> None:
    """pyfeat_no_face.mp4 has an edit list: decord lists 3 frames before time 0 that PyAV never shows, so
    the forward reader refuses at once (its first frame is not decord's first) and decord serves it all."""
    path = shared_dir / "fixtures" / "videos" / "pyfeat_no_face.mp4"
    video = Video(path)
    forward = ForwardFrames(str(path), video.times)
    assert forward.take(np.arange(4)) is None
    forward.close()
    clean = shared_dir / "fixtures" / "videos" / "pyfeat_single_face.mp4"
    video = Video(clean)
    forward = ForwardFrames(str(clean), video.times)
    assert forward.take(np.arange(4)).shape[0] == 4
    forward.close()


def test_rotated_video_batches_are_decords_upright_frames(shared_dir: Path, tmp_path: Path) -> None:
    from test_render_sources import sideways_clip

    path = sideways_clip(shared_dir / "fixtures" / "videos" / "pyfeat_single_face.mp4", tmp_path / "phone.mp4")
    video = Video(path, threads=1)
    indices = np.arange(video.info.n_frames)
    got = np.concatenate([b.frames for b in video.batches(indices, 4)])
    assert got.shape[1:3] == (360, 640)
    np.testing.assert_array_equal(got, _decord_frames(Video(path, threads=1), indices))
