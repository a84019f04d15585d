"""Bad input through the CLI: a clear one-line message naming the file, a non-zero exit, no output left
behind; in a folder run the good videos still finish and the summary and exit code report the rest."""

import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from cli_run import CliResult, invoke, read_table, run_process, sidecar

FAST = ["--detector", "blazeface", "--weights", "none"]


def make_bad_videos(folder: Path, videos: Path) -> dict[str, Path]:
    """Broken inputs, each named .mp4: empty, text, and real videos cut short."""
    folder.mkdir(parents=True, exist_ok=True)
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    text = folder / "notes.mp4"
    text.write_text("these are meeting notes, not a video\n" * 20)
    # moov index first (faststart): the index promises 472 frames, half the data is missing
    whole = (videos / "pyfeat_WolfgangLanger_Pexels.mp4").read_bytes()
    half = folder / "half.mp4"
    half.write_bytes(whole[: len(whole) // 2])
    # moov index last: cut to 5 %, no index at all
    whole = (videos / "pyfeat_single_face.mp4").read_bytes()
    cut = folder / "cut5.mp4"
    cut.write_bytes(whole[: len(whole) // 20])
    return {"empty": empty, "text": text, "half": half, "cut5": cut}


def make_small_video(path: Path, n_frames: int = 8) -> Path:
    """A tiny valid video (no face), quick to annotate."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (160, 96))
    for i in range(n_frames):
        frame = np.full((96, 160, 3), 40 + 20 * i, np.uint8)
        writer.write(frame)
    writer.release()
    return path


def message_lines(result: CliResult, path: Path) -> list[str]:
    """Printed lines that name the file."""
    return [line for line in result.output.splitlines() if str(path) in line or path.name in line]


def assert_clear_failure(result: CliResult, path: Path) -> None:
    """Non-zero exit, no traceback, and one printed line that names the whole path and says what is wrong."""
    assert result.exit_code != 0, result.describe()
    assert result.exception is None, f"an exception escaped the CLI: {result.describe()}"
    assert "Traceback" not in result.output
    full = [line for line in result.output.splitlines() if str(path) in line]
    assert full, f"no line names {path} in full (wrapped?):\n{result.output}"
    reason = full[0].split(str(path), 1)[1].strip(" :")
    assert len(reason) >= 5, f"no reason given after the file name: {full[0]!r}"


def leftovers(folder: Path) -> list[Path]:
    """Output and temporary files written into a folder."""
    return sorted(p for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def bad(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_bad_videos(tmp_path_factory.mktemp("bad"), shared_dir / "fixtures" / "videos")


def test_missing_path(torch_home: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no_such_video.mp4"
    out = tmp_path / "out" / "result.csv"
    result = invoke([missing, "-o", out, *FAST])
    assert_clear_failure(result, missing)
    assert not out.exists() and not sidecar(out).exists()
    assert not (tmp_path / "out").exists() or not leftovers(tmp_path / "out")


@pytest.mark.parametrize("kind", ["empty", "text", "half", "cut5"])
def test_broken_video(kind: str, bad: dict[str, Path], torch_home: Path, tmp_path: Path) -> None:
    video = bad[kind]
    out = tmp_path / "result.csv"
    result = invoke([video, "-o", out, *FAST])
    assert_clear_failure(result, video)
    assert leftovers(tmp_path) == [], f"left behind: {leftovers(tmp_path)}"


def test_failure_keeps_the_previous_complete_output_intact(bad: dict[str, Path], torch_home: Path,
                                                           tmp_path: Path) -> None:
    """A failed rerun into an existing output must not leave a half-written file in its place."""
    out = tmp_path / "result.csv"
    good = make_small_video(tmp_path / "good.mp4")
    assert invoke([good, "-o", out, *FAST]).exit_code == 0
    before = out.read_bytes()
    result = invoke([bad["half"], "-o", out, "--overwrite", *FAST])
    assert_clear_failure(result, bad["half"])
    assert not list(tmp_path.glob("*.partial*")), "temporary files left behind"
    if out.exists():
        assert out.read_bytes() == before, "the old output was replaced by a partial one"


def test_real_process_missing_path(torch_home: Path, tmp_path: Path) -> None:
    """In a real process: exit code 1 and the message on stderr, no traceback."""
    missing = tmp_path / "absent.mov"
    result = run_process([missing, "-o", tmp_path / "o.csv", *FAST])
    assert result.exit_code != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert any(str(missing) in line for line in result.stderr.splitlines()), result.describe()
    assert not (tmp_path / "o.csv").exists()


def test_folder_with_good_and_bad_videos(shared_dir: Path, torch_home: Path, tmp_path: Path) -> None:
    """Bad videos are reported and skipped; the good ones finish; the exit code and summary say so;
    a rerun skips the finished ones and reports the bad ones again."""
    videos = shared_dir / "fixtures" / "videos"
    root = tmp_path / "in"
    bad = make_bad_videos(root / "broken", videos)
    (root / "sub").mkdir(parents=True)
    shutil.copy(videos / "pyfeat_single_face.mp4", root / "face.mp4")
    make_small_video(root / "sub" / "small.mp4")
    (root / "README.txt").write_text("not a video, and not named like one\n")
    out = tmp_path / "out"

    result = invoke([root, "-o", out, *FAST, "--every", "6"])
    assert result.exit_code != 0, result.describe()
    assert result.exception is None, result.describe()
    assert re.search(r"\b4 failed\b", result.output), f"summary does not count 4 failures:\n{result.output}"
    for path in bad.values():
        assert message_lines(result, path), f"{path.name} not reported:\n{result.output}"
    assert "README" not in result.output, "a non-video file was treated as a video"

    face, small = out / "face.mp4.csv", out / "sub" / "small.mp4.csv"
    for done in (face, small):
        assert done.is_file() and sidecar(done).is_file(), f"{done} missing; wrote {leftovers(out)}"
    assert read_table(face)["frame"].unique().tolist() == list(range(0, 72, 6))
    assert (read_table(small)["status"] == "no_face").all()
    assert sorted(p.relative_to(out).as_posix() for p in leftovers(out)) == [
        "face.mp4.csv", "face.mp4.csv.json", "sub/small.mp4.csv", "sub/small.mp4.csv.json"
    ], "outputs of failed videos (or temporary files) were left behind"

    stamp = face.stat().st_mtime_ns
    again = invoke([root, "-o", out, *FAST, "--every", "6"])
    assert again.exit_code != 0, again.describe()
    assert re.search(r"\b2 skipped\b", again.output) and re.search(r"\b4 failed\b", again.output), again.output
    assert face.stat().st_mtime_ns == stamp, "a complete output was redone without --overwrite"


def test_file_output_for_several_videos(shared_dir: Path, torch_home: Path, tmp_path: Path) -> None:
    """A folder of videos and -o naming an existing file: a usage error, nothing written."""
    root = tmp_path / "in"
    root.mkdir()
    make_small_video(root / "a.mp4")
    make_small_video(root / "b.mp4")
    out = tmp_path / "taken.csv"
    out.write_text("keep me\n")
    result = invoke([root, "-o", out, *FAST])
    assert result.exit_code != 0 and result.exception is None, result.describe()
    assert str(out) in result.output.replace("\n", "")
    assert out.read_text() == "keep me\n"


def test_time_window_outside_the_video(shared_dir: Path, torch_home: Path, tmp_path: Path) -> None:
    video = shared_dir / "fixtures" / "videos" / "pyfeat_single_face.mp4"
    out = tmp_path / "result.csv"
    result = invoke([video, "-o", out, "--start", "100", *FAST])
    assert_clear_failure(result, video)
    assert "no frames in the selected time window" in result.output
    assert leftovers(tmp_path) == []
