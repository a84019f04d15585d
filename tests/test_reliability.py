"""Issue 18: nothing stale, nothing lost. Each test is a user's case, run as the user met it (mostly the CLI):
reruns with other settings, files that are not ours, outputs found as inputs, long names, full disks,
truncated tables, tables of another video, bad bundles, API arguments."""

import errno
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from bad_inputs import make_video
from bundle_factory import make_random_bundle
from cli_run import invoke, sidecar

from fer_annotate.outputs.table import TableError, read_table

FAST = ["--weights", "none"]


def files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def no_traceback(text: str) -> None:
    assert "Traceback" not in text, text


@pytest.fixture(scope="module")
def face_video(shared_dir: Path, torch_home: Path) -> Path:
    return shared_dir / "fixtures" / "videos" / "pyfeat_single_face.mp4"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("bundles")
    return (make_random_bundle(root / "one", backbone="small_cnn", members=1, seed=1),
            make_random_bundle(root / "two", backbone="small_cnn", members=1, seed=2))


# 1. a rerun with other settings --------------------------------------------------------------------------

def test_a_rerun_with_other_settings_is_refused_and_names_them(torch_home: Path, tmp_path: Path) -> None:
    video = make_video(tmp_path / "clip.mp4", frames=10)
    out = tmp_path / "c.csv"
    assert invoke([video, "-o", out, *FAST]).exit_code == 0
    stamp = out.stat().st_mtime_ns
    for extra, named in ((["--every", "3"], "every"), (["--every", "3", "--end", "0.5"], "end, every"),
                         (["--detect-every", "1", "--min-hits", "2"], "detect-every, min-hits")):
        result = invoke([video, "-o", out, *FAST, *extra])
        assert result.exit_code == 1, result.describe()
        assert f"{out}: exists with other settings: {named}; --overwrite to redo" in result.output, result.output
        assert "skipped" not in result.output and out.stat().st_mtime_ns == stamp
    cosmetic = invoke([video, "-o", out, *FAST, "--threads", "1", "--batch-size", "4", "--device", "cpu"])
    assert cosmetic.exit_code == 0 and "skipped (complete output" in cosmetic.output, cosmetic.output
    redo = invoke([video, "-o", out, *FAST, "--every", "3", "--overwrite"])
    assert redo.exit_code == 0 and len(read_table(out)) == 4, redo.output
    again = invoke([video, "-o", out, *FAST, "--every", "3"])
    assert again.exit_code == 0 and "skipped (complete output" in again.output, again.output


def test_another_bundle_is_other_settings(torch_home: Path, tmp_path: Path, bundles: tuple[Path, Path]) -> None:
    video = make_video(tmp_path / "clip.mp4", frames=6)
    out = tmp_path / "c.csv"
    one, two = bundles
    assert invoke([video, "-o", out, "--weights", one]).exit_code == 0
    result = invoke([video, "-o", out, "--weights", two])
    assert result.exit_code == 1 and "exists with other settings: weights;" in result.output, result.output
    faces_only = invoke([video, "-o", out, *FAST])
    assert faces_only.exit_code == 1 and "other settings: smooth, weights;" in faces_only.output, faces_only.output
    assert read_table(out).attrs["settings"]["weights"].startswith("random-small_cnn")


def test_a_folder_run_reports_each_video(torch_home: Path, tmp_path: Path) -> None:
    root = tmp_path / "in"
    make_video(root / "a.mp4", frames=6)
    out = tmp_path / "out"
    assert invoke([root, "-o", out, *FAST]).exit_code == 0
    make_video(root / "b.mp4", frames=4)
    result = invoke([root, "-o", out, *FAST, "--every", "2"])
    assert result.exit_code == 1, result.describe()
    assert "1 annotated, 0 skipped, 1 failed" in result.output, result.output
    assert f"{out / 'a.mp4.csv'}: exists with other settings: every;" in result.output
    assert len(read_table(out / "a.mp4.csv")) == 6 and len(read_table(out / "b.mp4.csv")) == 2


# 2. -o and a file that is not ours ----------------------------------------------------------------------

def test_o_never_replaces_a_file_the_tool_did_not_write(torch_home: Path, tmp_path: Path) -> None:
    video = make_video(tmp_path / "clip.mp4", frames=6)
    precious = tmp_path / "p.csv"
    precious.write_text("precious\n")
    result = invoke([video, "-o", precious, *FAST])
    assert result.exit_code == 1, result.describe()
    assert f"{precious}: exists without a complete fer-annotate sidecar" in result.output, result.output
    assert precious.read_text() == "precious\n" and not sidecar(precious).exists()
    sidecar(precious).write_text(json.dumps({"complete": True}))  # a sidecar, but not ours
    assert invoke([video, "-o", precious, *FAST]).exit_code == 1 and precious.read_text() == "precious\n"
    replaced = invoke([video, "-o", precious, *FAST, "--overwrite"])
    assert replaced.exit_code == 0 and len(read_table(precious)) == 6, replaced.output


# 3. outputs never become inputs -------------------------------------------------------------------------

def test_overlays_and_crops_inside_the_input_folder_are_never_inputs(face_video: Path, tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    shutil.copy(face_video, root / "clip.mp4")
    args = [root, "-o", root / "out", *FAST, "--end", "0.3", "--render", root / "overlays",
            "--save-crops", root / "crops"]
    first = invoke(args)
    assert first.exit_code == 0, first.describe()
    assert (root / "overlays" / "clip.mp4.overlay.mp4").is_file() and list((root / "crops").rglob("*.png"))
    again = invoke(args)
    assert again.exit_code == 0 and "skipped (complete output" in again.output, again.output
    assert ".overlay.mp4" not in again.output and "_face" not in again.output, again.output
    elsewhere = tmp_path / "later"  # a later run into another folder still finds only the video
    later = invoke([root, "-o", elsewhere, *FAST, "--end", "0.3"])
    assert later.exit_code == 0, later.describe()
    assert files(elsewhere) == ["clip.mp4.csv", "clip.mp4.csv.json"], later.output


# 7. long legal names ------------------------------------------------------------------------------------

def test_long_legal_names_are_annotated_and_too_long_ones_refused_first(torch_home: Path, tmp_path: Path) -> None:
    long_video = make_video(tmp_path / "in" / ("v" * 226 + ".mp4"), frames=4)  # output: 234 bytes, temp: 260
    out = tmp_path / "out"
    result = invoke([long_video, "-o", out, *FAST])
    assert result.exit_code == 0, result.describe()
    assert files(out) == [long_video.name + ".csv", long_video.name + ".csv.json"]
    file_out = tmp_path / ("t" * 246 + ".csv")  # the sidecar's name is 255 bytes, the lock's would be 256
    assert invoke([long_video, "-o", file_out, *FAST]).exit_code == 0 and len(read_table(file_out)) == 4
    overlays = tmp_path / "overlays"  # the overlay's name is 242 bytes, its temporary name was 264
    rendered = invoke([long_video, "-o", out, *FAST, "--render", overlays])
    assert rendered.exit_code == 0 and files(overlays) == [long_video.name + ".overlay.mp4"], rendered.describe()
    no_overlay = make_video(tmp_path / "in3" / ("x" * 240 + ".mp4"), frames=4)  # table fits, overlay 256 bytes
    refused = invoke([no_overlay, "-o", tmp_path / "out3", *FAST, "--render", overlays])
    assert refused.exit_code == 1 and "file name too long for this file system (the overlay of" in refused.output
    assert not (tmp_path / "out3").exists(), "the video was annotated before its overlay was found impossible"
    too_long = make_video(tmp_path / "in2" / ("w" * 247 + ".mp4"), frames=4)  # output 255, sidecar 260
    refused = invoke([too_long, "-o", tmp_path / "out2", *FAST])
    assert refused.exit_code == 1, refused.describe()
    assert "file name too long for this file system" in refused.output and "rows" not in refused.output
    no_traceback(refused.output)
    assert not (tmp_path / "out2").exists() or files(tmp_path / "out2") == []


# 11, 12. bundles ----------------------------------------------------------------------------------------

def test_a_corrupt_member_is_one_line(torch_home: Path, tmp_path: Path) -> None:
    import hashlib

    bundle = make_random_bundle(tmp_path / "b", backbone="small_cnn", members=1)
    manifest = json.loads((bundle / "bundle.json").read_text())
    member = bundle / manifest["members"][0]["file"]
    data = bytearray(member.read_bytes())
    data[8:20] = b'{"garbage":['
    member.write_bytes(bytes(data))
    manifest["members"][0]["sha256"] = hashlib.sha256(bytes(data)).hexdigest()  # a header corrupt at the source
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    video = make_video(tmp_path / "clip.mp4", frames=4)
    result = invoke([video, "-o", tmp_path / "c.csv", "--weights", bundle])
    assert result.exit_code == 1 and result.exception is None, result.describe()
    no_traceback(result.output)
    assert f"error: {member}: unreadable safetensors file" in result.output, result.output


@pytest.mark.parametrize("field, value, message", [
    ("input.size", 100000, "input.size 100000 out of range [8, 1024]"),
    ("input.box_scale", 0, "input.box_scale 0 out of range"),
    ("input.std", [1.0, 0.0, 1.0], "input.std [1.0, 0.0, 1.0] must be positive numbers"),
    ("au_thresholds", [1.5] * 8, "au_thresholds [1.5, 1.5"),
    ("temporal.seq_len", 10**9, "temporal.seq_len 1000000000 out of range"),
])
def test_manifest_numbers_out_of_range_are_refused(torch_home: Path, tmp_path: Path, field: str, value: object,
                                                   message: str) -> None:
    bundle = make_random_bundle(tmp_path / "b", backbone="small_cnn", members=1)
    manifest = json.loads((bundle / "bundle.json").read_text())
    part, _, key = field.rpartition(".")
    (manifest[part] if part else manifest)[key] = value
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    verify = invoke(["weights", "verify", bundle])
    assert verify.exit_code == 1 and message in verify.output, verify.describe()
    video = make_video(tmp_path / "clip.mp4", frames=4)
    run = invoke([video, "-o", tmp_path / "c.csv", "--weights", bundle])
    assert run.exit_code == 1 and message in run.output and not (tmp_path / "c.csv").exists(), run.describe()


# 13. the API checks its arguments first -----------------------------------------------------------------

def test_api_checks_arguments_before_any_work(torch_home: Path, tmp_path: Path) -> None:
    from fer_annotate.api import annotate

    video = make_video(tmp_path / "clip.mp4", frames=6)
    folder = tmp_path / "existing"
    folder.mkdir()
    df = annotate(video, folder, weights="none", every="2")  # a folder as -o; "2" read as the CLI reads it
    assert len(df) == 3 and (folder / "clip.mp4.csv").is_file() and sidecar(folder / "clip.mp4.csv").is_file()
    assert len(annotate(os.fsencode(video), tmp_path / "b.csv", weights="none")) == 6
    for options, message in (({"every": "x"}, "every: 'x' is not a valid integer"),
                             ({"every": 0}, "every: 0 is not in the range x>=1"),
                             ({"score_threshold": 2}, "score_threshold: 2.0 is not in the range"),
                             ({"smooth": "wobbly"}, "unknown smoothing 'wobbly'"),
                             ({"threads": 0}, "threads: 0 is not in the range x>=1")):
        with pytest.raises(ValueError, match=message):
            annotate(video, tmp_path / "bad.csv", weights="none", **options)
        assert not (tmp_path / "bad.csv").exists()
    with pytest.raises(TypeError, match="expected a path"):
        annotate(42, tmp_path / "bad.csv", weights="none")
    precious = tmp_path / "p.csv"
    precious.write_text("precious\n")
    with pytest.raises(ValueError, match="exists without a complete fer-annotate sidecar"):
        annotate(video, precious, weights="none")
    assert precious.read_text() == "precious\n"


# 14. truncated tables -----------------------------------------------------------------------------------

def test_a_truncated_table_is_refused_by_read_table_and_summary(torch_home: Path, tmp_path: Path) -> None:
    video = make_video(tmp_path / "clip.mp4", frames=10)
    out = tmp_path / "c.csv"
    assert invoke([video, "-o", out, *FAST]).exit_code == 0
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:5]))  # the header and 4 of the 10 rows
    with pytest.raises(TableError, match=r"c\.csv: 4 rows, but its sidecar c\.csv\.json records 10: the table is "
                                         "truncated"):
        read_table(out)
    result = invoke(["summary", out])
    assert result.exit_code == 1 and "4 rows, but its sidecar" in result.output, result.describe()


# 15. a full disk ----------------------------------------------------------------------------------------

def _full_disk(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_names_the_file_and_leaves_nothing(torch_home: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    video = make_video(tmp_path / "in" / "clip.mp4", frames=10)
    out = tmp_path / "out"
    out.mkdir()
    original = pd.DataFrame.to_csv

    def rows_fail(self: pd.DataFrame, *args: object, **kwargs: object) -> object:
        if kwargs.get("mode") == "a":  # the header is written, the rows meet a full disk
            _full_disk()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", rows_fail)
    result = invoke([video, "-o", out / "c.csv", *FAST])
    assert result.exit_code == 1, result.describe()
    assert f"{out / 'c.csv'}: cannot be written (No space left on device)" in result.output, result.output
    assert files(out) == []
    monkeypatch.undo()


def test_a_full_disk_at_the_sidecar_leaves_nothing_and_keeps_an_old_output(
        torch_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    video = make_video(tmp_path / "in" / "clip.mp4", frames=10)
    out = tmp_path / "out" / "c.csv"
    original = Path.write_text

    def sidecar_fails(self: Path, *args: object, **kwargs: object) -> int:
        if self.name.startswith(".c.csv.json.") and self.name.endswith(".partial"):
            _full_disk()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", sidecar_fails)
    result = invoke([video, "-o", out, *FAST])
    assert result.exit_code == 1, result.describe()
    assert f"{sidecar(out)}: cannot be written (No space left on device)" in result.output, result.output
    assert files(out.parent) == [], "a partial sidecar or a table without its sidecar was left"
    monkeypatch.undo()
    assert invoke([video, "-o", out, *FAST]).exit_code == 0
    monkeypatch.setattr(pd.DataFrame, "to_csv", lambda self, *a, **k: _full_disk() if k.get("mode") == "a" else None)
    failed = invoke([video, "-o", out, *FAST, "--overwrite"])
    assert failed.exit_code == 1 and "No space left on device" in failed.output, failed.describe()
    monkeypatch.undo()
    assert len(read_table(out)) == 10 and files(out.parent) == ["c.csv", "c.csv.json"], "the old output was lost"


# 19. render and the table of another video --------------------------------------------------------------

def test_render_refuses_the_table_of_another_video(torch_home: Path, tmp_path: Path) -> None:
    video = make_video(tmp_path / "a.mp4", frames=8)
    other = make_video(tmp_path / "b.mp4", frames=8, fps=12)  # same frame count and size, other content
    table = tmp_path / "a.csv"
    assert invoke([video, "-o", table, *FAST]).exit_code == 0
    result = invoke(["render", other, table, "-o", tmp_path / "x.mp4"])
    assert result.exit_code == 1, result.describe()
    assert f"{table}: annotates {video.resolve()}, not {other}" in result.output, result.output
    assert not (tmp_path / "x.mp4").exists()
    copy = tmp_path / "copy.mp4"
    shutil.copy(video, copy)  # the same content under another name is the same video
    ok = invoke(["render", copy, table, "-o", tmp_path / "y.mp4"])
    assert ok.exit_code == 0 and (tmp_path / "y.mp4").is_file(), ok.describe()
