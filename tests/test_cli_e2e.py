"""`fer-annotate` end to end on the real fixture videos in ../shared/fixtures/videos.

Each fixture is annotated once per session (BlazeFace front model: the fixtures' faces are close,
170-260 px), the short ones with a random-weight bundle from tests/bundle_factory.py (the long one
faces only, to keep the run short on CPU), and the checks read the table and the sidecar it wrote.
Frame selection (--start/--end, --every, --fps) is checked against the container timestamps decord
reports.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bundle_factory import make_random_bundle
from cli_run import FACE_COLUMNS, ID_COLUMNS, invoke, read_table, run_process, sidecar

# file -> what is in it: "face" (one face in every frame), "none", "face_then_none"
FIXTURES = {
    "pyfeat_single_face.mp4": "face",
    "pyfeat_WolfgangLanger_Pexels.mp4": "face",
    "pyfeat_no_face.mp4": "none",
    "pyfeat_face_noface.mov": "face_then_none",
}
FACES_ONLY = {"pyfeat_WolfgangLanger_Pexels.mp4"}  # 472 frames: the model stage would dominate the run
DETECTOR = "blazeface"
MIN_ONE_ID_SHARE = 0.95  # single-face videos: share of frames carrying the main face_id
FACE_PART, NONE_PART = 0.40, 0.50  # face_then_none: the face is in the first 40 %, gone in the last 50 %
EXPR_NAMES = ["neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise"]


@dataclass
class Run:
    """One CLI run on one fixture: the video's decoded frame times, the table and the sidecar."""

    video: Path
    out: Path
    times: np.ndarray
    table: pd.DataFrame
    meta: dict
    bundle: Path | None

    @property
    def n_frames(self) -> int:
        return len(self.times)

    def frames_with_face(self) -> np.ndarray:
        return np.sort(self.table.loc[self.table["status"] == "ok", "frame"].unique())


def decoded_times(video: Path) -> np.ndarray:
    """Start time of every frame decord decodes, from the container."""
    import decord

    reader = decord.VideoReader(str(video))
    return reader.get_frame_timestamp(range(len(reader)))[:, 0].astype(np.float64)


def annotate(video: Path, out: Path, *extra: object) -> tuple[pd.DataFrame, dict]:
    result = invoke([video, "-o", out, *extra])
    assert result.exit_code == 0 and result.exception is None, result.describe()
    return read_table(out), json.loads(sidecar(out).read_text())


@pytest.fixture(scope="session")
def videos(shared_dir: Path) -> Path:
    return shared_dir / "fixtures" / "videos"


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random-weight bundle (all three tasks, two members)."""
    return make_random_bundle(tmp_path_factory.mktemp("bundle") / "random", backbone="small_cnn")


@pytest.fixture(scope="session", params=list(FIXTURES))
def run(request: pytest.FixtureRequest, videos: Path, torch_home: Path, bundle: Path,
        tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Annotate one fixture video, all frames, once per session."""
    video = videos / request.param
    out = tmp_path_factory.mktemp("e2e") / (video.stem + ".csv")
    use_bundle = bundle if request.param not in FACES_ONLY else None
    weights = str(use_bundle) if use_bundle is not None else "none"
    table, meta = annotate(video, out, "--detector", DETECTOR, "--weights", weights)
    return Run(video, out, decoded_times(video), table, meta, use_bundle)


@pytest.mark.slow
def test_every_decoded_frame_has_a_row(run: Run) -> None:
    table = run.table
    assert list(table.columns[: len(ID_COLUMNS)]) == ID_COLUMNS
    assert table["frame"].is_monotonic_increasing, "rows are not in frame order"
    assert sorted(table["frame"].unique()) == list(range(run.n_frames))
    assert set(table["status"]) <= {"ok", "no_face"}
    assert (table["video"] == run.video.stem).all()
    per_frame = table.groupby("frame")["time_s"].agg(["min", "max"])
    assert (per_frame["min"] == per_frame["max"]).all(), "rows of one frame disagree on time_s"
    times = per_frame["min"].to_numpy()
    assert np.all(np.diff(times) > 0), "time_s does not increase"
    np.testing.assert_allclose(times, run.times, atol=1e-4, err_msg="time_s is not the container timestamp")


@pytest.mark.slow
def test_face_cells_filled_or_empty(run: Run) -> None:
    """`ok` rows carry a face id and a box inside the frame; `no_face` rows (one per frame) are empty."""
    table = run.table
    ok, none = table[table["status"] == "ok"], table[table["status"] == "no_face"]
    assert ok[FACE_COLUMNS].notna().all().all()
    assert none[FACE_COLUMNS].isna().all().all()
    assert not none.duplicated("frame").any()
    assert not set(none["frame"]) & set(ok["frame"]), "a frame has both a face and a no_face row"
    assert not ok.duplicated(["frame", "face_id"]).any()
    w, h = run.meta["video"]["width"], run.meta["video"]["height"]
    assert ((ok["x1"] < ok["x2"]) & (ok["y1"] < ok["y2"])).all()
    assert ((ok["x1"] >= 0) & (ok["y1"] >= 0) & (ok["x2"] <= w) & (ok["y2"] <= h)).all()
    assert ((ok["score"] > 0) & (ok["score"] <= 1)).all()


def of_kind(kind: str) -> list[str]:
    return [name for name, k in FIXTURES.items() if k == kind]


@pytest.mark.slow
@pytest.mark.parametrize("run", of_kind("face"), indirect=True)
def test_single_face_video_keeps_one_id(run: Run) -> None:
    ok = run.table[run.table["status"] == "ok"]
    counts = ok.groupby("face_id")["frame"].nunique().sort_values(ascending=False)
    assert len(counts), "no face found"
    share = counts.iloc[0] / run.n_frames
    assert share >= MIN_ONE_ID_SHARE, f"main face_id on {share:.1%} of frames; frames per id {counts.to_dict()}"
    extra = ok.groupby("frame").size()
    assert (extra > 1).sum() <= 0.01 * run.n_frames, f"frames with several faces: {list(extra[extra > 1].index)}"


@pytest.mark.slow
@pytest.mark.parametrize("run", of_kind("none"), indirect=True)
def test_no_face_video_is_all_no_face(run: Run) -> None:
    faces = run.table[run.table["status"] != "no_face"]
    assert faces.empty, f"faces reported in frames {sorted(faces['frame'].unique())[:20]}"
    model_columns = [c for c in run.table.columns if c not in ID_COLUMNS]
    assert run.table[model_columns].isna().all().all()


@pytest.mark.slow
@pytest.mark.parametrize("run", of_kind("face_then_none"), indirect=True)
def test_face_then_no_face(run: Run) -> None:
    """The HEVC .mov: the face is found through its first part, and nothing in its second half."""
    n = run.n_frames
    with_face = set(run.frames_with_face().tolist())
    first = range(math.floor(FACE_PART * n))
    found = sum(1 for i in first if i in with_face)
    assert found >= 0.95 * len(first), f"face in {found}/{len(first)} of the first frames"
    late = sorted(i for i in with_face if i >= math.ceil((1 - NONE_PART) * n))
    assert not late, f"faces reported in the second half, frames {late[:20]}"


@pytest.mark.slow
@pytest.mark.parametrize("run", [name for name in FIXTURES if name not in FACES_ONLY], indirect=True)
def test_model_columns(run: Run) -> None:
    """With a bundle: AU, expression and VA columns, consistent on `ok` rows, empty on `no_face` rows."""
    from fer_annotate.models.bundle import load_bundle
    from fer_annotate.outputs.output import au_column

    b = load_bundle(run.bundle)
    table = run.table
    au = [au_column(a) for a in b.au_names]
    expr = [f"expr_{name}" for name in EXPR_NAMES]
    va = ["valence", "arousal", "valence_std", "arousal_std"]
    expected = [c for a in au for c in (f"{a}_prob", a)] + ["au_std", "expression", *expr, "expr_std", *va]
    missing = [c for c in expected if c not in table.columns]
    assert not missing, f"missing columns {missing}"
    ok, none = table[table["status"] == "ok"], table[table["status"] == "no_face"]
    assert none[expected].isna().all().all()
    if ok.empty:
        return
    assert ok[expected].notna().all().all()
    np.testing.assert_allclose(ok[expr].sum(axis=1), 1.0, atol=2e-3)
    assert set(ok["expression"]) <= set(EXPR_NAMES)
    for a, threshold in zip(au, b.au_thresholds, strict=True):
        prob = ok[f"{a}_prob"]
        assert prob.between(0, 1).all()
        decided = ok[a].astype(int)
        assert set(decided) <= {0, 1}
        clear = (prob - threshold).abs() > 1e-5
        assert (decided[clear] == (prob[clear] > threshold).astype(int)).all(), f"{a} decision vs threshold"
    for col in ("valence", "arousal"):
        assert ok[col].between(-1, 1).all()


@pytest.mark.slow
def test_sidecar(run: Run) -> None:
    meta = run.meta
    assert meta.get("detector") == DETECTOR, f"sidecar detector: {meta.get('detector')!r}"
    assert meta["frames"]["decoded"] == run.n_frames
    assert meta["frames"]["sampled"] == run.n_frames
    assert meta["frames"]["rows"] == len(run.table)
    with_face = len(run.frames_with_face())
    assert meta["frames"]["with_face"] == with_face
    assert meta["video"]["n_frames"] == run.n_frames
    assert meta.get("complete") is True
    assert meta["versions"]["fer_annotate"]


# frame selection: (fixture, extra arguments, expected frame indices from the decoded times)
def _window(times: np.ndarray, start: float | None, end: float | None) -> np.ndarray:
    keep = np.ones(len(times), bool)
    if start is not None:
        keep &= times >= start
    if end is not None:
        keep &= times < end
    return np.flatnonzero(keep)


SELECTIONS = {
    "start-end": ("pyfeat_WolfgangLanger_Pexels.mp4", ["--start", "2", "--end", "4"],
                  lambda t: _window(t, 2.0, 4.0)),
    "start-only": ("pyfeat_face_noface.mov", ["--start", "5.5"], lambda t: _window(t, 5.5, None)),
    "every": ("pyfeat_single_face.mp4", ["--every", "5"], lambda t: np.arange(0, len(t), 5)),
    "start-end-every": ("pyfeat_WolfgangLanger_Pexels.mp4", ["--start", "1", "--end", "3", "--every", "4"],
                        lambda t: _window(t, 1.0, 3.0)[::4]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(SELECTIONS))
def test_frame_selection(case: str, videos: Path, torch_home: Path, tmp_path: Path) -> None:
    """--start/--end (container seconds, end exclusive) and --every N pick exactly the expected frames."""
    name, args, expected_fn = SELECTIONS[case]
    video = videos / name
    times = decoded_times(video)
    expected = expected_fn(times)
    table, meta = annotate(video, tmp_path / "out.csv", "--detector", DETECTOR, "--weights", "none", *args)
    frames = np.array(sorted(table["frame"].unique()))
    assert frames.tolist() == expected.tolist()
    per_frame = table.groupby("frame")["time_s"].first().to_numpy()
    np.testing.assert_allclose(per_frame, times[expected], atol=1e-4)
    assert meta["frames"]["sampled"] == len(expected)
    assert meta["frames"]["decoded"] == len(times)


@pytest.mark.slow
def test_target_fps(videos: Path, torch_home: Path, tmp_path: Path) -> None:
    """--fps 10 on a 30 fps video: about 10 frames a second, evenly spread in container time."""
    video = videos / "pyfeat_single_face.mp4"
    times = decoded_times(video)
    table, _ = annotate(video, tmp_path / "out.csv", "--detector", DETECTOR, "--weights", "none", "--fps", "10")
    chosen = table.groupby("frame")["time_s"].first()
    duration = times[-1] - times[0] + (times[1] - times[0])
    assert abs(len(chosen) - duration * 10) <= 1, f"{len(chosen)} frames for {duration:.2f} s"
    gaps = np.diff(chosen.to_numpy())
    frame_dt = float(np.median(np.diff(times)))
    assert gaps.min() >= 0.1 - frame_dt - 1e-6 and gaps.max() <= 0.1 + frame_dt + 1e-6, gaps


@pytest.mark.slow
def test_parquet_matches_csv(videos: Path, torch_home: Path, tmp_path: Path) -> None:
    video = videos / "pyfeat_single_face.mp4"
    args = ["--detector", DETECTOR, "--weights", "none", "--every", "6"]
    csv, _ = annotate(video, tmp_path / "out.csv", *args)
    result = invoke([video, "-o", tmp_path / "out.parquet", "--format", "parquet", *args])
    assert result.exit_code == 0, result.describe()
    parquet = pd.read_parquet(tmp_path / "out.parquet")
    assert list(parquet.columns) == list(csv.columns)
    assert parquet["frame"].tolist() == csv["frame"].tolist()
    np.testing.assert_allclose(parquet[["x1", "y1", "x2", "y2"]].to_numpy(float),
                               csv[["x1", "y1", "x2", "y2"]].to_numpy(float), atol=0.05)


@pytest.mark.slow
def test_console_entry_point(videos: Path, torch_home: Path, tmp_path: Path) -> None:
    """The command in a real process (as the console script runs it): exit 0, table and sidecar written."""
    out = tmp_path / "out.csv"
    result = run_process([videos / "pyfeat_single_face.mp4", "-o", out, "--detector", DETECTOR,
                          "--weights", "none", "--every", "12"])
    assert result.exit_code == 0, result.describe()
    assert "Traceback" not in result.stderr
    assert read_table(out)["frame"].tolist() == list(range(0, 72, 12))
    assert sidecar(out).is_file()


def test_save_crops_writes_one_aligned_crop_per_face_row(torch_home: Path, shared_dir: Path, tmp_path: Path) -> None:
    from PIL import Image

    video = shared_dir / "fixtures" / "videos" / "pyfeat_single_face.mp4"
    out, crops = tmp_path / "out.csv", tmp_path / "crops"
    result = invoke([video, "-o", out, "--detector", "blazeface", "--weights", "none", "--save-crops", crops,
                     "--end", "1"])
    assert result.exit_code == 0, result.describe()
    ok = read_table(out).query("status == 'ok'")
    files = sorted((crops / "pyfeat_single_face").glob("*.png"))
    assert [f.name for f in files] == [f"{int(r.frame):06d}_face{r.face_id}.png" for r in ok.itertuples()]
    with Image.open(files[0]) as img:
        assert img.size == (112, 112) and img.mode == "RGB"
