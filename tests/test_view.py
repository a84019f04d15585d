"""Looking at results: the overlay video decoded back against its source, figures, and summaries checked
against the table. One fixture video is annotated once (random-weight bundle with AUs, expressions and VA;
every 2nd frame of the first 2 s) with `--render`, as a user would."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bundle_factory import make_random_bundle
from cli_run import invoke, sidecar

from fer_annotate.outputs.plot import PlotOptions, plot_table
from fer_annotate.outputs.render import RenderError, render_overlay
from fer_annotate.outputs.summary import summarize
from fer_annotate.outputs.table import read_table

av = pytest.importorskip("av", reason="PyAV (the render extra) is not installed")

END_S, EVERY = 2.0, 2
DRAWN, UNCHANGED = 25.0, 4.0  # mean |difference| of grey levels: a drawn line, re-encoding noise


@pytest.fixture(scope="module")
def annotated(shared_dir: Path, torch_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("view")
    bundle = make_random_bundle(root / "bundle", backbone="small_cnn")
    video = shared_dir / "fixtures" / "videos" / "pyfeat_single_face.mp4"
    table = root / "out" / "single.csv"
    result = invoke([video, "-o", table, "--weights", bundle, "--detector", "blazeface", "--every", EVERY,
                     "--end", END_S, "--render", root / "renders"])
    assert result.exit_code == 0, result.describe()
    return {"video": video, "table": table, "overlay": root / "renders" / "single.overlay.mp4", "root": root}


def decode(path: Path) -> tuple[list[float], list[np.ndarray], list[str]]:
    """Frame times (container pts), grey frames and the stream types of a video."""
    with av.open(str(path)) as c:
        kinds = [s.type for s in c.streams]
        times, frames = [], []
        for frame in c.decode(video=0):
            times.append(float(frame.pts * frame.time_base))
            frames.append(frame.to_ndarray(format="gray").astype(np.float32))
    return times, frames, kinds


@pytest.mark.slow
def test_overlay_matches_source_and_draws_in_boxes(annotated: dict) -> None:
    src_t, src, src_kinds = decode(annotated["video"])
    out_t, out, out_kinds = decode(annotated["overlay"])
    assert len(out) == len(src), "frame count differs from the source"
    assert out[0].shape == src[0].shape, "size differs from the source"
    np.testing.assert_allclose(out_t, src_t, atol=1e-6, err_msg="timestamps differ from the source")
    assert out_kinds.count("audio") == src_kinds.count("audio") == 1, "audio not copied"

    df = read_table(annotated["table"])
    ok = df[df["status"] == "ok"]
    assert len(ok) >= 0.9 * df["frame"].nunique(), "the fixture's face was not found"
    step = 1 / 30
    for row in ok.itertuples():
        x1, y1, x2, y2 = (int(round(v)) for v in (row.x1, row.y1, row.x2, row.y2))
        for f, faded in ((row.frame, False), (row.frame + 1, True)):  # sampled, then the unsampled next one
            diff = np.abs(out[f] - src[f])
            # per row of the left edge and per column of the top edge: the strongest change within 3 px
            edge = np.concatenate([diff[y1 + 3 : y2 - 3, x1 - 3 : x1 + 4].max(axis=1),
                                   diff[y1 - 3 : y1 + 4, x1 + 3 : x2 - 3].max(axis=0)])
            assert edge.mean() > (DRAWN / 3 if faded else DRAWN), f"frame {f}: box of face {row.face_id} not drawn"
            far = diff[:, : max(1, x1 - 40)] if x1 > 80 else diff[:, x2 + 200 :]
            assert far.mean() < UNCHANGED, f"frame {f}: pixels far from the face changed ({far.mean():.1f})"
    after = [i for i, t in enumerate(src_t) if t >= END_S + step]
    assert after, "the fixture is longer than the annotated window"
    for f in after:
        assert np.abs(out[f] - src[f]).mean() < UNCHANGED, f"frame {f} outside the table was changed"


def test_render_refuses_a_table_of_another_video(annotated: dict, shared_dir: Path, tmp_path: Path) -> None:
    other = shared_dir / "fixtures" / "videos" / "pyfeat_no_face.mp4"
    with pytest.raises(RenderError, match=r"single\.csv: annotates .*pyfeat_single_face\.mp4 \(72 frames"):
        render_overlay(other, annotated["table"], tmp_path / "x.mp4")
    assert not list(tmp_path.iterdir()), "a failed render left a file"
    result = invoke(["render", other, annotated["table"], "-o", tmp_path / "x.mp4"])
    assert result.exit_code == 1 and "annotates" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    lonely = tmp_path / "lonely.csv"
    lonely.write_text(annotated["table"].read_text())
    result = invoke(["render", annotated["video"], lonely, "-o", tmp_path / "y.mp4"])
    assert result.exit_code == 1 and "no sidecar" in result.stderr
    assert not (tmp_path / "y.mp4").exists()


def two_faces(df: pd.DataFrame) -> pd.DataFrame:
    """The fixture's table with a second face in its second half and pose/blendshape columns, built here."""
    ok = df[df["status"] == "ok"]
    second = ok[ok["frame"] >= ok["frame"].median()].copy()
    second["face_id"] = pd.array([1] * len(second), dtype="Int64")
    second[["x1", "x2"]] = second[["x1", "x2"]] - 100
    out = pd.concat([df, second]).sort_values(["frame", "face_id"], kind="stable").reset_index(drop=True)
    rng = np.random.default_rng(0)
    for name in ("pose_yaw", "pose_pitch", "pose_roll", "bs_jawOpen"):
        out[name] = np.where(out["status"] == "ok", rng.uniform(-20, 20, len(out)), np.nan)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml"), (".pdf", b"%PDF")])
def test_plot_files(annotated: dict, tmp_path: Path, suffix: str, magic: bytes) -> None:
    out = tmp_path / f"fig{suffix}"
    result = invoke(["plot", annotated["table"], "-o", out])
    assert result.exit_code == 0, result.describe()
    data = out.read_bytes()
    assert data.startswith(magic) and len(data) > 10_000, f"{out}: {len(data)} bytes"
    if suffix == ".svg":
        text = data.decode()
        for gid in ("face0-expr", "face0-au", "face0-va", "summary"):
            assert f'id="{gid}"' in text, f"no panel {gid}"


@pytest.mark.slow
def test_plot_has_one_panel_group_per_face(annotated: dict, tmp_path: Path) -> None:
    df = two_faces(read_table(annotated["table"]))
    out = tmp_path / "two.svg"
    fig = plot_table(df, out, PlotOptions(max_points=10))  # forces the drawing bins of a long video
    gids = [ax.get_gid() for ax in fig.axes if ax.get_gid()]
    assert gids == [f"face{i}-{p}" for i in (0, 1) for p in ("expr", "au", "va", "pose")] + ["summary"]
    text = out.read_text()
    assert all(f'id="{g}"' in text for g in gids)
    one = plot_table(df[df["face_id"].fillna(0) == 0], None)
    assert sum(1 for ax in one.axes if (ax.get_gid() or "").startswith("face1")) == 0
    with pytest.raises(ValueError, match="unknown figure format"):
        plot_table(df, tmp_path / "fig.jpg")


@pytest.mark.slow
def test_summary_numbers_against_the_table(annotated: dict, tmp_path: Path) -> None:
    df = read_table(annotated["table"])
    s = summarize(df)
    assert s == df.attrs["summary"], "the sidecar's summary is not the table's"
    ok = df[df["status"] == "ok"]
    face = s["faces"][0]
    rows = ok[ok["face_id"] == face["face_id"]]
    assert face["frames"] == len(rows) and face["person_id"] == int(rows["person_id"].iloc[0])
    assert face["seconds"] == pytest.approx(len(rows) * EVERY / 30, abs=1e-3)
    assert s["seconds_sampled"] == pytest.approx(END_S, abs=1e-3)
    shares = rows["expression"].astype(str).value_counts(normalize=True)
    for name, share in face["expression_share"].items():
        assert share == pytest.approx(shares.get(name, 0.0), abs=1e-4)
    assert face["valence_mean"] == pytest.approx(rows["valence"].mean(), abs=1e-4)
    assert face["au_rate"]["AU12"] == pytest.approx(rows["AU12"].astype(float).mean(), abs=1e-4)

    faces2 = summarize(two_faces(df))["faces"]
    assert [f["face_id"] for f in faces2] == [0, 1] and faces2[0] == face, "extra columns changed the numbers"

    result = invoke(["summary", annotated["table"].parent, "--json"])
    assert result.exit_code == 0, result.describe()
    printed = json.loads(result.stdout)
    assert len(printed) == 1 and printed[0]["faces"] == s["faces"]
    result = invoke(["summary", annotated["table"]])
    lines = result.stdout.strip().splitlines()
    assert lines[0].split()[:4] == ["video", "face", "seconds", "frames"] and len(lines) == 1 + len(s["faces"])
    assert sidecar(annotated["table"]).is_file()
