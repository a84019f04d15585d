"""Still images as inputs: one frame at time 0, the detector chosen for photos, plain errors for bad files."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_run import invoke
from PIL import Image

from fer_annotate.media.video import Sampling, Video, VideoError, find_videos

IMAGES = Path("fixtures") / "images"


def test_an_image_is_one_frame_at_time_zero(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "p.png")
    video = Video(tmp_path / "p.png")
    assert video.still and video.info.n_frames == 1 and (video.info.width, video.info.height) == (40, 30)
    assert video.times.tolist() == [0.0] and video.info.duration_s == 0.0
    batch = next(video.batches(video.select(Sampling()), 16))
    np.testing.assert_array_equal(batch.frames[0], pixels)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    pixels = np.zeros((20, 50, 3), dtype=np.uint8)  # stored landscape, tagged "rotate 90" (orientation 6)
    pixels[:, :10] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    video = Video(tmp_path / "phone.jpg")
    assert (video.info.width, video.info.height) == (20, 50)  # upright, as a photo viewer shows it


@pytest.mark.parametrize("content, reason", [
    (b"this is not an image", "not a readable image (unknown format or corrupt data)"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not a readable image"),
])
def test_bad_images_give_one_line_errors(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(VideoError) as info:
        Video(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {reason}") and "\n" not in message


def test_truncated_jpeg_fails_clearly(shared_dir: Path, tmp_path: Path) -> None:
    data = (shared_dir / IMAGES / "grace_hopper.jpg").read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(VideoError, match=r"cut\.jpg: not a readable image \(image file is truncated"):
        Video(path)


def test_folders_include_images(tmp_path: Path) -> None:
    for name in ("a.mp4", "b.JPG", "c.png", "notes.txt", "d/e.webp"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in find_videos(tmp_path)] == ["a.mp4", "b.JPG", "c.png", "e.webp"]


@pytest.mark.slow
@pytest.mark.parametrize("name, faces", [
    ("pyfeat_multi_face.jpg", 5), ("fa_aflw-test-grid3x3.jpg", 9), ("grace_hopper.jpg", 1), ("fa_grass.jpg", 0),
    ("blazeface_3faces.png", 3),
])
def test_cli_counts_the_faces_of_photos(shared_dir: Path, torch_home: Path, tmp_path: Path, name: str,
                                        faces: int) -> None:
    out = tmp_path / f"{name}.csv"
    result = invoke([shared_dir / IMAGES / name, "-o", out, "--weights", "none"])
    assert result.exit_code == 0, result.describe()
    df = pd.read_csv(out)
    meta = json.loads(out.with_name(out.name + ".json").read_text())
    assert meta["detector"] == "blazeface-back" and meta["video"]["n_frames"] == 1
    assert (df["frame"] == 0).all() and (df["time_s"] == 0).all()
    assert (df["status"] == "ok").sum() == faces
    assert len(df) == max(faces, 1)  # a photo without a face still gets its no_face row
    assert sorted(df["face_id"].dropna().astype(int)) == list(range(faces))


@pytest.mark.slow
def test_an_explicit_detector_and_min_face_are_used_as_given(shared_dir: Path, torch_home: Path,
                                                             tmp_path: Path) -> None:
    image = shared_dir / IMAGES / "blazeface_3faces.png"  # 128 px, faces of 16-17 px
    result = invoke([image, "-o", tmp_path / "a.csv", "--weights", "none", "--min-face", "20"])
    assert result.exit_code == 0, result.describe()
    assert (pd.read_csv(tmp_path / "a.csv")["status"] == "ok").sum() == 0
    result = invoke([shared_dir / IMAGES / "pyfeat_multi_face.jpg", "-o", tmp_path / "b.csv", "--weights", "none",
                     "--detector", "blazeface"])
    assert result.exit_code == 0, result.describe()
    meta = json.loads((tmp_path / "b.csv.json").read_text())
    assert meta["detector"] == "blazeface" and meta["config"]["tracker"]["confirm_score"] == 0.8


@pytest.mark.slow
def test_a_folder_of_photos_and_a_video_with_render(shared_dir: Path, torch_home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "group.jpg").symlink_to(shared_dir / IMAGES / "pyfeat_multi_face.jpg")
    (folder / "clip.mp4").symlink_to(shared_dir / "fixtures" / "videos" / "pyfeat_single_face.mp4")
    out = tmp_path / "out"
    result = invoke([folder, "-o", out, "--weights", "none", "--end", "0.5", "--render", tmp_path / "overlays"])
    assert result.exit_code == 0, result.describe()
    assert (pd.read_csv(out / "group.jpg.csv")["status"] == "ok").sum() == 5
    assert (out / "clip.mp4.csv").is_file()
    assert [p.name for p in (tmp_path / "overlays").iterdir()] == ["clip.mp4.overlay.mp4"]  # videos only


@pytest.mark.slow
def test_the_plot_of_a_photo_shows_its_one_frame(shared_dir: Path, torch_home: Path, tmp_path: Path) -> None:
    from fer_annotate.outputs.plot import plot_table
    from fer_annotate.outputs.table import read_table

    out = tmp_path / "group.csv"
    result = invoke([shared_dir / IMAGES / "pyfeat_multi_face.jpg", "-o", out])
    assert result.exit_code == 0, result.describe()
    fig = plot_table(read_table(out))
    expr = next(ax for ax in fig.axes if ax.get_gid() == "face0-expr")
    widths = [np.ptp(path.vertices[:, 0]) for c in expr.collections for path in c.get_paths()]
    assert widths and max(widths) > 0  # the stacked probabilities span the frame's time, not a zero-width line
