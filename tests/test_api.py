"""The Python API: cheap package import, options into config dataclasses, annotate() equal to the CLI's
table, read_table's dtypes and its refusal of incomplete outputs, batches."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from bundle_factory import make_random_bundle
from cli_run import invoke, sidecar

from fer_annotate.api import AnnotateError, annotate, build_config
from fer_annotate.outputs.table import TableError, read_table

SHORT = ["--detector", "blazeface", "--end", "1"]


@pytest.fixture(scope="module")
def video(shared_dir: Path, torch_home: Path) -> Path:
    return shared_dir / "fixtures" / "videos" / "pyfeat_single_face.mp4"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_random_bundle(tmp_path_factory.mktemp("bundle") / "random", backbone="small_cnn")


def test_package_import_is_cheap() -> None:
    code = ("import sys, fer_annotate; heavy = [m for m in ('torch', 'pandas', 'decord') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, f"import fer_annotate imported {proc.stdout.strip()}"


def test_package_exports_the_api() -> None:
    import fer_annotate
    from fer_annotate import Annotator
    from fer_annotate import annotate as exported_annotate
    from fer_annotate import read_table as exported_read_table

    assert exported_annotate is annotate and exported_read_table is read_table
    assert Annotator.__module__ == "fer_annotate.api"
    with pytest.raises(AttributeError):
        _ = fer_annotate.no_such_thing


def test_options_land_in_their_dataclass_fields() -> None:
    config = build_config(detector="blazeface-back", score_threshold=0.3, start=2.0, end=5.0, every=3,
                          min_hits=2, max_misses=4, fmt="parquet", batch_size=8, device="cpu")
    assert config.detector.name == "blazeface-back" and config.detector.score_threshold == 0.3
    assert (config.sampling.start_s, config.sampling.end_s, config.sampling.every) == (2.0, 5.0, 3)
    assert (config.tracker.min_hits, config.tracker.max_misses) == (2, 4)
    assert (config.fmt, config.batch_size) == ("parquet", 8)
    assert config.device == "cpu" and config.detector.device == "cpu"
    assert config.tracker.confirm_score == 0.6, "confirm_score default is the detector's"
    assert build_config(confirm_score=0.9).tracker.confirm_score == 0.9
    assert build_config(every=None).sampling.every == 1, "None means the default"


def test_bad_options() -> None:
    with pytest.raises(TypeError, match="unknown option 'evrey'"):
        build_config(evrey=2)
    with pytest.raises(ValueError, match="every"):
        build_config(every=0)


def test_read_table_refuses_incomplete_outputs(tmp_path: Path) -> None:
    table = tmp_path / "v.csv"
    table.write_text("video,frame,time_s,face_id,status\nv,0,0.0,,no_face\n")
    with pytest.raises(TableError, match=r"v\.csv: no sidecar v\.csv\.json"):
        read_table(table)
    sidecar(table).write_text(json.dumps({"complete": False}))
    with pytest.raises(TableError, match=r"v\.csv: its sidecar v\.csv\.json says the output is incomplete"):
        read_table(table)
    sidecar(table).write_text(json.dumps({"complete": True, "tool": "fer-annotate"}))
    df = read_table(table)
    assert df.attrs["tool"] == "fer-annotate" and str(df["face_id"].dtype) == "Int64"
    (tmp_path / "x.txt").write_text("hello")
    sidecar(tmp_path / "x.txt").write_text(json.dumps({"complete": True}))
    with pytest.raises(TableError, match=r"x\.txt: not a table"):
        read_table(tmp_path / "x.txt")


@pytest.mark.slow
def test_api_dataframe_equals_cli_table(video: Path, bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.csv"
    result = invoke([video, "-o", out, "--weights", bundle, *SHORT])
    assert result.exit_code == 0, result.describe()
    df = annotate(video, weights=str(bundle), detector="blazeface", end=1)
    cli = read_table(out)
    pd.testing.assert_frame_equal(df, cli)
    assert df.attrs["complete"] and df.attrs["video"]["n_frames"] == 72
    assert df.attrs["summary"]["faces"][0]["frames"] == (df["status"] == "ok").sum()
    assert str(df["frame"].dtype) == "Int64" and str(df["face_id"].dtype) == "Int64"
    assert str(df["AU01"].dtype) == "Int64" and df["AU01_prob"].dtype == "float64"
    for column in ("video", "status", "expression"):
        assert isinstance(df[column].dtype, pd.CategoricalDtype), column
    assert list(df["expression"].cat.categories) == [c[5:] for c in df.columns if c.startswith("expr_")][:-1]

    parquet = tmp_path / "api.parquet"
    pq = annotate(video, parquet, weights=str(bundle), detector="blazeface", end=1, fmt="parquet")
    assert parquet.is_file() and sidecar(parquet).is_file()
    pd.testing.assert_frame_equal(pq, cli, check_categorical=False, atol=1e-5)
    assert pq.dtypes.astype(str).to_dict() == cli.dtypes.astype(str).to_dict()
    implied = tmp_path / "implied.parquet"  # the suffix decides the format, as with -o
    annotate(video, implied, weights=str(bundle), detector="blazeface", end=1)
    assert implied.read_bytes()[:4] == b"PAR1"
    with pytest.raises(ValueError, match=r"implied\.csv is a csv file name but --format is parquet"):
        annotate(video, tmp_path / "implied.csv", weights=str(bundle), detector="blazeface", end=1, fmt="parquet")


@pytest.mark.slow
def test_batch_writes_every_output_and_reports_failures(video: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_text("not a video")
    out = tmp_path / "out"
    paths = annotate([video], output_dir=out, weights="none", detector="blazeface", end=0.5)
    assert paths == [out / "pyfeat_single_face.mp4.csv"] and read_table(paths[0]).attrs["complete"]
    with pytest.raises(AnnotateError, match=r"1 of 2 videos failed: .*broken\.mp4") as info:
        annotate([video, bad], output_dir=out, weights="none", detector="blazeface", end=0.5)
    assert len(info.value.report.skipped) == 1, "the complete output is kept (no overwrite)"
