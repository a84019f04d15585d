"""Video decoding: container timestamps (exact for variable frame rate), sampling, clear errors."""

import fractions
from pathlib import Path

import numpy as np
import pytest

from fer_annotate.media.video import Sampling, Video, VideoError

av = pytest.importorskip("av", reason="PyAV (dev extra) writes the constructed test videos")

PTS_MS = [0, 40, 80, 200, 240, 250, 400, 433, 500, 1000, 1040, 1080]


def write_vfr(path: Path, codec: str, pts_ms: list[int] = PTS_MS) -> Path:
    """A video whose frames have the given presentation times (ms) and brightness 20 * index."""
    tb = fractions.Fraction(1, 1000)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=1000)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.time_base = s.codec_context.time_base = tb
        for i, p in enumerate(pts_ms):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = p, tb
            for pkt in s.encode(frame):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


@pytest.mark.parametrize("codec", ["mpeg4", "libx264"])
def test_variable_frame_rate_timestamps_are_exact(tmp_path, codec):
    if codec not in av.codecs_available:
        pytest.skip(f"PyAV build lacks {codec}")
    v = Video(write_vfr(tmp_path / f"vfr_{codec}.mp4", codec))
    assert v.info.n_frames == len(PTS_MS)
    np.testing.assert_allclose(v.times, np.array(PTS_MS) / 1000, atol=1e-6)
    frames = np.concatenate([b.frames for b in v.batches(v.select(Sampling()), batch_size=5)])
    np.testing.assert_allclose(frames.reshape(len(PTS_MS), -1).mean(1), 20 * np.arange(len(PTS_MS)), atol=4)


def test_sampling_by_time_window_every_and_fps(tmp_path):
    v = Video(write_vfr(tmp_path / "vfr.mp4", "mpeg4"))
    assert v.select(Sampling()).tolist() == list(range(12))
    assert v.select(Sampling(start_s=0.2, end_s=0.5)).tolist() == [3, 4, 5, 6, 7]
    assert v.select(Sampling(every=3)).tolist() == [0, 3, 6, 9]
    # At most 4 frames per second: the first frame of each 0.25 s slot (times 0, .25, .5, 1.0).
    assert v.select(Sampling(fps=4)).tolist() == [0, 5, 8, 9]
    batches = list(v.batches(v.select(Sampling(start_s=0.2, end_s=0.5)), batch_size=2))
    assert [b.indices.tolist() for b in batches] == [[3, 4], [5, 6], [7]]
    np.testing.assert_allclose(np.concatenate([b.times for b in batches]), [0.2, 0.24, 0.25, 0.4, 0.433], atol=1e-6)


def test_bad_sampling_is_refused():
    with pytest.raises(ValueError):
        Sampling(every=0)
    with pytest.raises(ValueError):
        Sampling(start_s=2, end_s=1)


def test_fixture_timestamps_match_pyav(shared_dir):
    for name in ["pyfeat_face_noface.mov", "pyfeat_WolfgangLanger_Pexels.mp4"]:
        path = shared_dir / "fixtures" / "videos" / name
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            times = sorted(float(f.pts * stream.time_base) for f in c.decode(video=0))
        v = Video(path)
        assert v.info.n_frames == len(times)
        np.testing.assert_allclose(v.times, times, atol=1e-4)


def test_hevc_fixture_decodes(shared_dir):
    v = Video(shared_dir / "fixtures" / "videos" / "pyfeat_face_noface.mov")
    assert (v.info.width, v.info.height, v.info.n_frames) == (960, 540, 169)
    assert np.all(np.diff(v.times) > 0)
    batch = next(v.batches(np.arange(4)))
    assert batch.frames.shape == (4, 540, 960, 3) and batch.frames.std() > 10


@pytest.mark.parametrize(
    "content, reason",
    [(b"", "empty file"), (b"hello, not a video\n" * 3, "not a")],
)
def test_unreadable_files_give_one_line_errors(tmp_path, content, reason):
    path = tmp_path / "clip.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoError) as err:
        Video(path)
    message = str(err.value)
    assert message.startswith(str(path)) and reason in message and "\n" not in message


def test_missing_file(tmp_path):
    with pytest.raises(VideoError, match="no such file"):
        Video(tmp_path / "nope.mp4")


def test_truncated_video_fails_clearly(shared_dir, tmp_path):
    data = (shared_dir / "fixtures" / "videos" / "pyfeat_WolfgangLanger_Pexels.mp4").read_bytes()
    for fraction in (0.5, 0.05):
        path = tmp_path / f"cut{fraction}.mp4"
        path.write_bytes(data[: int(len(data) * fraction)])
        with pytest.raises(VideoError) as err:
            v = Video(path)
            for _ in v.batches(v.select(Sampling()), 32):
                pass
        assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)
