"""Overlays of real-world sources: variable-frame-rate phone footage keeps every frame at its own time, and a
video stored sideways with rotation metadata is drawn upright, with the boxes on the faces the table found."""

from pathlib import Path

import decord
import numpy as np
import pytest
from bundle_factory import make_random_bundle
from cli_run import invoke, read_table

av = pytest.importorskip("av", reason="PyAV (the render extra) is not installed")

UNCHANGED = 6.0  # mean of the largest |difference| of the three colours: re-encoding noise
DRAWN = 40.0  # a drawn box edge


def frame_times(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        return [float(f.pts * f.time_base) for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_random_bundle(tmp_path_factory.mktemp("bundle") / "b", backbone="small_cnn")


@pytest.mark.slow
def test_variable_frame_rate_video_renders_every_frame_at_its_time(shared_dir: Path, torch_home: Path,
                                                                   bundle: Path, tmp_path: Path) -> None:
    video = shared_dir / "fixtures" / "videos" / "pyfeat_face_noface.mov"
    source = frame_times(video)
    assert len(set(np.round(np.diff(source), 4))) > 1, "the fixture is no longer variable-frame-rate"
    table = tmp_path / "vfr.csv"
    result = invoke([video, "-o", table, "--weights", bundle, "--detector", "blazeface", "--end", "2",
                     "--render", tmp_path / "renders"])
    assert result.exit_code == 0, result.describe()
    assert "cannot render" not in result.output
    overlay = tmp_path / "renders" / "vfr.overlay.mp4"
    np.testing.assert_allclose(frame_times(overlay), source, atol=1e-6, err_msg="frame times differ")
    again = invoke(["render", video, table, "-o", tmp_path / "again.mkv"])
    assert again.exit_code == 0, again.describe()
    np.testing.assert_allclose(frame_times(tmp_path / "again.mkv"), source, atol=1e-3)


def sideways_clip(source: Path, path: Path, frames: int = 12) -> Path:
    """The source's first frames stored turned a quarter clockwise, with a display matrix (as a phone
    writes it) saying to turn them back: players, and decord, show the original upright picture."""
    with av.open(str(source)) as src, av.open(str(path), "w") as dst:
        vin = src.streams.video[0]
        out = dst.add_stream("libx264", rate=vin.average_rate)
        out.width, out.height, out.pix_fmt = vin.height, vin.width, "yuv420p"
        out.set_display_rotation(90)
        for i, frame in enumerate(src.decode(vin)):
            if i == frames:
                break
            turned = np.ascontiguousarray(np.rot90(frame.to_ndarray(format="rgb24"), -1))
            new = av.VideoFrame.from_ndarray(turned, format="rgb24")
            new.pts, new.time_base = frame.pts, frame.time_base
            dst.mux(out.encode(new))
        dst.mux(out.encode(None))
    return path


@pytest.mark.slow
def test_rotated_video_is_rendered_upright_with_boxes_on_the_faces(shared_dir: Path, torch_home: Path,
                                                                   bundle: Path, tmp_path: Path) -> None:
    video = sideways_clip(shared_dir / "fixtures" / "videos" / "pyfeat_single_face.mp4", tmp_path / "phone.mp4")
    upright = decord.VideoReader(str(video))
    shown = upright.get_batch(list(range(len(upright)))).asnumpy().astype(np.float32)
    assert shown.shape[1:3] == (360, 640), "the test clip does not carry its rotation"
    table = tmp_path / "phone.csv"
    result = invoke([video, "-o", table, "--weights", bundle, "--detector", "blazeface", "--render", tmp_path])
    assert result.exit_code == 0, result.describe()
    ok = read_table(table).query("status == 'ok'")
    assert len(ok) >= 0.9 * len(upright), "the upright face was not found"

    with av.open(str(tmp_path / "phone.overlay.mp4")) as c:
        drawn = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]).astype(np.float32)
    assert drawn.shape == shown.shape, f"overlay {drawn.shape[1:3]}, source as shown {shown.shape[1:3]}"
    for row in ok.itertuples():
        x1, y1, x2, y2 = (int(round(v)) for v in (row.x1, row.y1, row.x2, row.y2))
        diff = np.abs(drawn[row.frame] - shown[row.frame]).max(axis=2)
        edge = diff[y1 + 3 : y2 - 3, x1 - 3 : x1 + 4].max(axis=1)
        assert edge.mean() > DRAWN, f"frame {row.frame}: no box where the table says"
        far = diff[:, : max(1, x1 - 40)] if x1 > 80 else diff[:, x2 + 200 :]
        assert far.mean() < UNCHANGED, f"frame {row.frame}: the picture is not the upright source"


def test_pyav_fallback_turns_frames_upright_as_decord_does(shared_dir: Path, tmp_path: Path) -> None:
    from fer_annotate.media.video_pyav import PyAVFrames

    video = sideways_clip(shared_dir / "fixtures" / "videos" / "pyfeat_single_face.mp4", tmp_path / "phone.mp4",
                          frames=3)
    fallback = PyAVFrames(video)
    assert (fallback.height, fallback.width) == (360, 640)
    np.testing.assert_array_equal(fallback.read([0, 2]), decord.VideoReader(str(video)).get_batch([0, 2]).asnumpy())
