"""Issue 18: what a hostile newcomer found. Each test builds the user's input and runs the CLI on it."""

import os
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
from bad_inputs import make_video
from cli_run import invoke, read_table, run_process
from click.testing import CliRunner

from fer_annotate.cli.show import shown
from fer_annotate.media.display import text_name, visible
from fer_annotate.media.still import StillError, StillImage

FAST = ["--weights", "none"]


# 18. every output gets the usual permissions under the umask --------------------------------------------

@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_every_output_follows_the_umask(umask: int, torch_home: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="plot needs matplotlib")
    video = make_video(tmp_path / "v.mp4")
    table, figure, overlay = tmp_path / "o.csv", tmp_path / "o.png", tmp_path / "o.overlay.mp4"
    events = tmp_path / "o.events.csv"
    old = os.umask(umask)
    try:
        assert invoke([video, "-o", table, *FAST]).exit_code == 0
        assert invoke(["plot", table, "-o", figure]).exit_code == 0
        assert invoke(["render", video, table, "-o", overlay]).exit_code == 0
        assert invoke(["events", table, "-o", events]).exit_code == 0
    finally:
        os.umask(old)
    for path in (table, table.with_name("o.csv.json"), figure, overlay, events):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == 0o666 & ~umask, f"{path.name}: {oct(mode)} under umask {oct(umask)}"


# 9, 16. names that are not UTF-8 or hold a newline: annotated, and printed escaped on one line each -------

def test_odd_file_names_are_annotated_and_printed_on_one_line(torch_home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    undecodable = make_video(folder / os.fsdecode(b"clip\xff\xfe.mp4"))
    make_video(folder / "line\nbreak.mp4")
    result = run_process([folder, "-o", tmp_path / "out", *FAST])
    assert result.exit_code == 0, result.describe()
    assert "2 annotated, 0 skipped, 0 failed" in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert any(line.startswith(f"{folder}/clip\\xff\\xfe.mp4: 10 rows") for line in lines), result.stderr
    assert any(line.startswith(f"{folder}/line\\nbreak.mp4: 10 rows") for line in lines), result.stderr
    assert not any(line.startswith("break.mp4") for line in lines), "a newline in a name split a line"
    table = read_table(tmp_path / "out" / (undecodable.name + ".csv"))
    assert set(table["video"]) == {"clip\\xff\\xfe"}, "the table's video cell is not the name, escaped"


def test_visible_spells_out_what_a_console_cannot_show() -> None:
    name = os.fsdecode(b"a\xff b\tc\x1b[31m") + "\u00e9\u65e5 [red]"
    assert visible(name) == "a\\xff b\\tc\\x1b[31m\u00e9\u65e5 [red]"
    assert shown(name).endswith("\\[red]"), "rich markup in a name is not escaped"
    assert text_name(os.fsdecode(b"x\xfe\ny")) == "x\\xfe\ny"


# 16. one clear line for: an audio-only MP4, a decompression bomb, a manifest without rows, an empty folder --

def test_audio_only_file_has_no_video_stream(torch_home: Path, tmp_path: Path) -> None:
    path = tmp_path / "speech.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    result = invoke([path, "-o", tmp_path / "o.csv", *FAST])
    assert result.exit_code == 1, result.describe()
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"error: {path}: no video stream (audio only, or no pictures at all)", result.stderr


def test_a_large_image_gives_our_line_not_a_library_warning(tmp_path: Path) -> None:
    from PIL import Image

    large = tmp_path / "large.png"  # over Pillow's warning size (89.5 megapixels), under its limit
    Image.new("L", (9500, 9500), 128).save(large)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert StillImage(large).frame.shape == (9500, 9500, 3)
    bomb = tmp_path / "bomb.png"
    Image.new("1", (14000, 14000), 1).save(bomb)
    with pytest.raises(StillError, match=r"^image too large \(196 megapixels, over 179"):
        StillImage(bomb)


def test_fer_train_names_a_manifest_without_rows(tmp_path: Path) -> None:
    from training.cli import main

    manifest = tmp_path / "labels.csv"
    manifest.write_text("path,expression\n\n")
    result = CliRunner().invoke(main, ["teacher", "--manifest", str(manifest), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1, result.output
    assert f"{manifest}: the manifest has no rows" in result.output, result.output
    (tmp_path / "gone.csv").write_text("path,expression\nmissing.png,happiness\n")
    result = CliRunner().invoke(main, ["teacher", "--manifest", str(tmp_path / "gone.csv"), "--out",
                                       str(tmp_path / "r2")])
    assert result.exit_code == 1 and "none of the 1 image files it lists exists" in result.output, result.output


def test_summary_of_a_folder_without_tables(tmp_path: Path) -> None:
    empty = tmp_path / "emptydir"
    empty.mkdir()
    result = invoke(["summary", empty])
    assert result.exit_code == 1 and "no such file" not in result.output
    assert result.stderr.strip() == f"error: no tables (.csv, .parquet) found in {empty}", result.stderr


# 17. a video shorter than --min-hits: a face seen in all its frames gets an id, like a still's ------------

@pytest.mark.parametrize("frames", [1, 2])
def test_a_video_shorter_than_min_hits_finds_its_face(frames: int, shared_dir: Path, torch_home: Path,
                                                      tmp_path: Path) -> None:
    source = shared_dir / "fixtures" / "videos" / "pyfeat_single_face.mp4"
    clip = tmp_path / f"short{frames}.mp4"
    with av.open(str(source)) as src, av.open(str(clip), "w") as dst:
        vin = src.streams.video[0]
        out = dst.add_stream("libx264", rate=vin.average_rate)
        out.width, out.height, out.pix_fmt = vin.width, vin.height, "yuv420p"
        for i, frame in enumerate(src.decode(vin)):
            if i == frames:
                break
            dst.mux(out.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")))
        dst.mux(out.encode(None))
    table = tmp_path / "t.csv"
    result = invoke([clip, "-o", table, *FAST, "--min-hits", "3"])
    assert result.exit_code == 0, result.describe()
    rows = read_table(table)
    assert len(rows) == frames and (rows["status"] == "ok").all(), rows[["frame", "status"]]


# 22. MediaPipe's native logging stays off the console; our own errors still show ------------------------

NATIVE_LINES = ("Logging before InitGoogle", "XNNPACK", "W0000", "I0000", "inference_feedback_manager")


@pytest.fixture(scope="module")
def landmarker_model(shared_dir: Path) -> Path:
    pytest.importorskip("mediapipe", reason="the geometry extra (mediapipe) is not installed")
    model = shared_dir / "models" / "face_landmarker.task"
    if not model.is_file():
        pytest.skip(f"needs {model}")
    return model


@pytest.mark.slow
def test_geometry_run_prints_no_native_logging(landmarker_model: Path, shared_dir: Path, torch_home: Path,
                                               tmp_path: Path) -> None:
    video = shared_dir / "fixtures" / "videos" / "pyfeat_single_face.mp4"
    result = run_process([video, "-o", tmp_path / "g.csv", *FAST, "--geometry", "mediapipe", "--geometry-model",
                          landmarker_model, "--end", "0.5"])
    assert result.exit_code == 0, result.describe()
    shown_native = [line for line in result.stderr.splitlines() if any(n in line for n in NATIVE_LINES)]
    assert not shown_native, result.stderr
    assert read_table(tmp_path / "g.csv")["bs_jawOpen"].notna().any(), "the landmarker did not run"


def test_landmarker_is_quiet_and_its_errors_still_show(landmarker_model: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.task"
    bad.write_text("not a model")
    code = ("import sys; from fer_annotate.faces.geometry import GeometryError, Landmarker\n"
            "Landmarker(sys.argv[1]).close(); print('loaded', file=sys.stderr)\n"
            "try:\n    Landmarker(sys.argv[2])\nexcept GeometryError as exc:\n    print(exc, file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(landmarker_model), str(bad)], capture_output=True,
                          text=True, timeout=300, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["loaded", f"{bad}: cannot load the face landmarker (Unable to open zip "
                                                  "archive.)"], proc.stderr
