"""Events from tables: the rules on tables built sample by sample (known answers), the file formats read
back (ELAN through pympi-ling), and `fer-annotate events` on a real fixture video annotated as a user would."""

import json
from pathlib import Path

import pandas as pd
import pytest
from cli_run import invoke, sidecar

from fer_annotate.outputs.event_formats import srt_time, write_events
from fer_annotate.outputs.events import BlinkRule, EventRules, SmileRule, find_events, missing

FPS = 30.0
EXPRS = ("neutral", "happiness", "surprise")


def make_table(n: int = 150, fps: float = FPS, every: int = 1, absent: tuple[int, ...] = (),
               blink: dict[int, float] | None = None, smile: tuple[int, int] | None = None,
               expr: dict[str, tuple[int, int]] | None = None, baseline: float = 0.15) -> pd.DataFrame:
    """One face sampled every `every`th frame of a `fps` video: eyeBlink at `baseline` except `blink`
    {frame: score}; smile 0.9 on frames [a, b); expression probabilities dominant on their frame ranges
    (neutral elsewhere); no face on the frames in `absent`."""
    rows = []
    for f in range(0, n, every):
        base = {"video": "synthetic", "frame": f, "time_s": f / fps}
        if f in absent:
            rows.append({**base, "status": "no_face"})
            continue
        eye = (blink or {}).get(f, baseline)
        probs = dict.fromkeys(EXPRS, 0.05)
        label = next((name for name, (a, b) in (expr or {}).items() if a <= f < b), "neutral")
        probs[label] = 0.9
        happy = smile is not None and smile[0] <= f < smile[1]
        rows.append({**base, "face_id": 0, "status": "ok", "expression": label,
                     **{f"expr_{k}": v for k, v in probs.items()},
                     "bs_eyeBlinkLeft": eye, "bs_eyeBlinkRight": eye + 0.01,
                     "bs_mouthSmileLeft": 0.9 if happy else 0.1, "bs_mouthSmileRight": 0.9 if happy else 0.1})
    df = pd.DataFrame(rows)
    df["status"] = df["status"].astype("category")
    return df


def kind(events: pd.DataFrame, name: str) -> pd.DataFrame:
    return events[events["kind"] == name].reset_index(drop=True)


def test_a_low_blink_is_found_against_the_face_baseline_with_its_times_and_peak():
    """Peak 0.40 over a 0.15 baseline: found by the relative rule, missed by a fixed 0.5 threshold."""
    df = make_table(blink={60: 0.30, 61: 0.40, 62: 0.34, 63: 0.20})
    blinks = kind(find_events(df), "blink")
    assert len(blinks) == 1
    b = blinks.iloc[0]
    assert b["start_frame"] == 60 and b["end_frame"] == 62, "hysteresis: on at +0.15, off below +0.08"
    assert b["start_s"] == pytest.approx(60 / FPS) and b["end_s"] == pytest.approx(63 / FPS)
    assert b["duration_s"] == pytest.approx(3 / FPS) and b["peak"] == pytest.approx(0.40)
    assert b["peak_s"] == pytest.approx(61 / FPS)
    fixed = EventRules(blink=BlinkRule(on=0.5, off=0.4, baseline_s=0))
    assert kind(find_events(df, fixed), "blink").empty


def test_blink_rules_both_eyes_max_duration_gap_and_no_face():
    wink = make_table()
    wink.loc[wink["frame"].between(60, 63), "bs_eyeBlinkLeft"] = 0.6  # one eye only
    assert kind(find_events(wink), "blink").empty, "a wink is not a blink"
    closure = make_table(blink=dict.fromkeys(range(40, 70), 0.7))  # 1 s closed: beyond --blink-max
    assert kind(find_events(closure), "blink").empty
    split = make_table(blink={50: 0.5, 51: 0.5, 52: 0.2, 53: 0.5})  # dips below off for one sample
    assert len(kind(find_events(split), "blink")) == 1, "a 33 ms dip is within the default 50 ms gap"
    assert len(kind(find_events(split, EventRules(blink=BlinkRule(gap_s=0.03))), "blink")) == 2
    gone = make_table(blink={50: 0.5, 51: 0.5, 53: 0.5}, absent=(52,))  # the face is missing in between
    assert len(kind(find_events(gone, EventRules(blink=BlinkRule(gap_s=1.0))), "blink")) == 2


def test_sampling_every_nth_frame_keeps_container_times():
    df = make_table(every=3, blink={60: 0.5, 63: 0.5})
    b = kind(find_events(df), "blink").iloc[0]
    assert b["start_s"] == pytest.approx(60 / FPS) and b["end_s"] == pytest.approx(66 / FPS)
    assert b["start_frame"] == 60 and b["end_frame"] == 63


def test_smiles_and_expression_episodes():
    df = make_table(n=300, smile=(30, 120), expr={"happiness": (30, 120), "surprise": (200, 205)})
    events = find_events(df)
    smiles = kind(events, "smile")
    assert len(smiles) == 1 and smiles.iloc[0]["start_s"] == pytest.approx(1.0)
    assert smiles.iloc[0]["end_s"] == pytest.approx(4.0)
    episodes = kind(events, "expression")
    assert list(episodes["label"]) == ["neutral", "happiness", "neutral"], "a 5-frame surprise is no episode"
    assert episodes.iloc[1]["duration_s"] == pytest.approx(3.0)
    happiness_only = find_events(df, EventRules(smile=SmileRule(source="happiness")))
    assert kind(happiness_only, "smile").iloc[0]["source"] == "expr_happiness"


def test_each_face_has_its_own_events_and_baseline():
    one = make_table(blink={30: 0.5, 31: 0.5})
    two = make_table(baseline=0.45, blink={90: 0.62}, absent=tuple(range(0, 20)))
    two = two[two["status"] == "ok"].assign(face_id=1)
    df = pd.concat([one, two], ignore_index=True).sort_values(["frame", "face_id"])
    df["status"] = df["status"].astype("category")
    blinks = kind(find_events(df), "blink")
    assert list(blinks["face_id"]) == [0, 1] and list(blinks["start_frame"]) == [30, 90]
    second = blinks.iloc[1]
    assert second["end_frame"] == 90 and second["peak"] == pytest.approx(0.62), "a rise of 0.17 over its own 0.45"


def test_missing_columns_are_reported_not_guessed():
    df = make_table().drop(columns=["bs_eyeBlinkLeft", "bs_eyeBlinkRight"])
    assert kind(find_events(df), "blink").empty
    assert "blink" in missing(list(df.columns), EventRules())


def test_formats_read_back(tmp_path: Path):
    pympi = pytest.importorskip("pympi", reason="pympi-ling (dev extra) reads ELAN files back")
    df = make_table(n=300, blink={60: 0.5, 61: 0.5}, smile=(30, 120), expr={"happiness": (30, 120)})
    events = find_events(df)
    video = tmp_path / "media" / "clip.mp4"
    video.parent.mkdir()
    video.write_bytes(b"")
    meta = {"rules": EventRules().describe(), "media": str(video), "media_info": {"duration_s": 10.0}}
    eaf = tmp_path / "out" / "clip.eaf"
    write_events(events, eaf, "eaf", meta)
    doc = pympi.Elan.Eaf(str(eaf))
    assert sorted(doc.get_tier_names()) == ["face 0 blink", "face 0 expression", "face 0 smile"]
    assert doc.get_annotation_data_for_tier("face 0 blink") == [(2000, 2067, "blink")]
    assert doc.media_descriptors[0]["RELATIVE_MEDIA_URL"] == "./../media/clip.mp4"
    assert json.loads(sidecar(eaf).read_text())["rules"]["blink"]["on"] == BlinkRule().on

    boris = tmp_path / "clip.boris.csv"
    write_events(events, boris, "boris", meta)
    table = pd.read_csv(boris)
    assert (table["Behavior type"] == "START").sum() == (table["Behavior type"] == "STOP").sum() == len(events)
    assert set(table["Subject"]) == {"face 0"} and table["Time"].is_monotonic_increasing

    srt = tmp_path / "clip.srt"
    write_events(events, srt, "srt", meta)
    assert "00:00:02,000 --> 00:00:02,067\nface 0: blink" in srt.read_text()
    assert srt_time(3723.4567) == "01:02:03,457"

    csv = tmp_path / "clip.csv"
    write_events(events, csv, "csv", meta)
    back = pd.read_csv(csv)
    assert len(back) == len(events) and list(back.columns) == list(events.columns)
    assert not [p for p in tmp_path.rglob("*.partial")], "temporary files left behind"


@pytest.mark.slow
def test_cli_events_on_a_real_video(shared_dir: Path, torch_home: Path, tmp_path: Path):
    """The default bundle on the webcam clip (one blink near 0.9 s): the table keeps the unsmoothed eyeBlink
    scores, `events` finds the blink in them, and writes ELAN, SRT and BORIS files for it."""
    pytest.importorskip("pympi", reason="pympi-ling (dev extra) reads ELAN files back")
    import pympi

    video = shared_dir / "fixtures" / "videos" / "pyfeat_single_face.mp4"
    table = tmp_path / "clip.csv"
    result = invoke([video, "-o", table, "--detector", "blazeface"])
    assert result.exit_code == 0, result.describe()
    df = pd.read_csv(table)
    assert {"bs_eyeBlinkLeft_raw", "bs_eyeBlinkRight_raw"} <= set(df.columns)
    assert df["bs_eyeBlinkLeft_raw"].max() > df["bs_eyeBlinkLeft"].max() + 0.05, "the raw peak is the higher"

    result = invoke(["events", table, "-o", tmp_path / "events", "--format", "eaf", "--format", "srt",
                     "--format", "boris", "--format", "csv"])
    assert result.exit_code == 0, result.describe()
    events = pd.read_csv(tmp_path / "events" / "clip.events.csv")
    blinks = events[events["kind"] == "blink"]
    assert len(blinks) == 1 and 0.8 < blinks.iloc[0]["peak_s"] < 1.0
    assert blinks.iloc[0]["source"].startswith("min(bs_eyeBlinkLeft_raw")
    doc = pympi.Elan.Eaf(str(tmp_path / "events" / "clip.events.eaf"))
    assert doc.media_descriptors[0]["MEDIA_URL"] == video.resolve().as_uri()
    assert len(doc.get_annotation_data_for_tier("face 0 blink")) == 1
    assert (tmp_path / "events" / "clip.events.srt").is_file()
    assert (tmp_path / "events" / "clip.events.boris.csv").is_file()

    result = invoke(["events", table, "-o", table])  # never over the annotation table (or any file not ours)
    assert result.exit_code == 1 and "--overwrite" in result.output and pd.read_csv(table).equals(df)
    again = invoke(["events", table, "-o", tmp_path / "events" / "clip.events.csv"])
    assert again.exit_code == 0, "an events output of an earlier run is replaced"

    bad = tmp_path / "notours.csv"
    bad.write_text("a,b\n1,2\n")
    result = invoke(["events", bad, "-o", tmp_path / "bad.csv"])
    assert result.exit_code == 1 and "sidecar" in result.output and not (tmp_path / "bad.csv").exists()


def test_summary_figures_per_face():
    from fer_annotate.outputs.summary import summarize, summary_lines

    df = make_table(n=300, blink={60: 0.5, 61: 0.5, 200: 0.5}, smile=(30, 120), expr={"happiness": (30, 120)})
    face = summarize(df)["faces"][0]
    assert face["blinks"] == 2 and face["blinks_per_minute"] == pytest.approx(2 / 10 * 60, rel=1e-3)
    assert face["blink_mean_s"] == pytest.approx((2 / FPS + 1 / FPS) / 2, rel=1e-3)
    assert face["smile_share"] == pytest.approx(0.3, rel=1e-3)
    assert face["expression_seconds"]["happiness"] == pytest.approx(3.0, rel=1e-3)
    header, rows = summary_lines([summarize(df)])
    assert "blinks/min" in header and rows[0][header.index("blinks/min")] == "12.0"
    no_eyes = summarize(df.drop(columns=["bs_eyeBlinkLeft", "bs_eyeBlinkRight"]))["faces"][0]
    assert "blinks_per_minute" not in no_eyes, "no eyeBlink columns: no blink figures, rather than zero"
