"""A tiny teacher -> students -> export run on procedural faces (seconds), whose bundle fer-annotate's
Ensemble loads and runs; and resuming an interrupted run from its last completed epoch."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from fer_annotate.models.bundle import load_bundle
from fer_annotate.models.ensemble import Ensemble
from training.cli import main
from training.config import Source, TrainConfig
from training.loop import RunError, run_teacher
from training.synthetic import write_benchmark

NET = ["--backbone", "small_cnn", "--backbone-kwargs", '{"width": 8, "depths": [1, 1]}', "--size", "24",
       "--colour", "gray", "--batch-size", "8", "--steps-per-epoch", "3", "--lr", "1e-3", "--threads", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    return write_benchmark(tmp_path_factory.mktemp("synth"), size=24, per_task=40, test=24, seed=1)


def _invoke(args: list[str]):
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_teacher_student_export_evaluate(tmp_path, data):
    train = [a for task in ("au", "expr", "va") for a in ("--manifest", str(data[f"train_{task}"]))]
    run, run2, bundle_dir = tmp_path / "t", tmp_path / "s", tmp_path / "bundle"
    _invoke(["teacher", *train, "--val-manifest", str(data["val"]), *NET, "--epochs", "2", "--out", str(run)])
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert set(lines[0]["val"]["tasks"]) == {"EXPR", "AU", "VA"}
    assert json.loads((run / "summary.json").read_text())["heads"] == {"EXPR": 7, "AU": 8, "VA": 40}
    _invoke(["student", "--teacher", str(run), "--students", "2", "--epochs", "1", "--out", str(run2)])
    assert (run2 / "round1" / "student2" / "best.safetensors").is_file()
    out = _invoke(["export", str(run2), "-o", str(bundle_dir), "--box-scale", "1.2"])
    assert "2 member(s)" in out.output
    bundle = load_bundle(bundle_dir)
    assert bundle.tasks == ["EXPR", "AU", "VA"] and bundle.input.colour == "gray" and bundle.input.box_scale == 1.2
    assert bundle.au_names[:2] == ["AU01", "AU02"] and len(bundle.au_thresholds) == 8
    prov = bundle.provenance
    assert prov["commands"]["teacher"].startswith("fer-train teacher")
    assert prov["commands"]["student"].startswith("fer-train student")
    assert len(prov["val_metrics"]["members"]) == 2 and "ensemble" in prov["val_metrics"]
    assert prov["data"]["train_counts"]["AU"] == 40
    crops = torch.randint(0, 256, (3, 3, 24, 24), dtype=torch.uint8)
    res = Ensemble(bundle, "cpu")(crops)
    assert res.expr_prob.shape == (3, 7) and res.au_prob.shape == (3, 8) and res.valence.shape == (3,)
    np.testing.assert_allclose(res.expr_prob.sum(1), 1, atol=1e-5)
    # the same weights the run selected
    state = load_file(str(run2 / "round1" / "student1" / "best.safetensors"))
    member = load_file(str(bundle_dir / bundle.members[0].file))
    assert all(torch.equal(state[k], member[k]) for k in state)
    report = tmp_path / "eval.json"
    out = _invoke(["evaluate", str(bundle_dir), "--manifest", str(data["test"]), "--json", str(report)])
    assert "ensemble" in out.output and "member 1" in out.output
    assert set(json.loads(report.read_text())["ensemble"]["tasks"]) == {"EXPR", "AU", "VA"}


def test_second_round_distils_from_ensemble(tmp_path, data):
    run, run2 = tmp_path / "t", tmp_path / "s"
    _invoke(["teacher", "--manifest", str(data["train_expr"]), *NET, "--epochs", "1", "--out", str(run)])
    _invoke(["student", "--teacher", str(run), "--students", "2", "--rounds", "2", "--epochs", "1",
             "--out", str(run2)])
    summary = json.loads((run2 / "summary.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [1, 2]
    _invoke(["export", str(run2), "-o", str(tmp_path / "b")])
    assert len(load_bundle(tmp_path / "b").members) == 2


class Killed(Exception):
    pass


def _config(data) -> TrainConfig:
    return TrainConfig(
        train=[Source("manifest", str(data["train_expr"])), Source("manifest", str(data["train_va"]))],
        val=[Source("manifest", str(data["val"]))], backbone="small_cnn",
        backbone_kwargs={"width": 8, "depths": [1, 1]}, size=24, colour="gray", epochs=3, batch_size=8,
        steps_per_epoch=3, lr=1e-3, schedule="cosine", threads=1,
    )


def test_resume_after_kill_continues_from_last_epoch(tmp_path, data):
    def kill_after_epoch_2(message: str) -> None:
        if "epoch 2/3" in message:
            raise Killed

    with pytest.raises(Killed):
        run_teacher(_config(data), tmp_path / "a", log=kill_after_epoch_2)
    assert [json.loads(x)["epoch"] for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    messages = []
    run_teacher(_config(data), tmp_path / "a", log=messages.append)
    assert any("resuming after epoch 2" in m for m in messages)
    assert not any("epoch 1/3" in m or "epoch 2/3" in m for m in messages)
    lines = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    # deterministic: the resumed run ends exactly where an uninterrupted one does
    run_teacher(_config(data), tmp_path / "b", log=lambda m: None)
    resumed = load_file(str(tmp_path / "a" / "checkpoints" / "epoch_003.safetensors"))
    straight = load_file(str(tmp_path / "b" / "checkpoints" / "epoch_003.safetensors"))
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)


def test_changed_config_refused_without_overwrite(tmp_path, data):
    cfg = _config(data)
    cfg.epochs = 1
    run_teacher(cfg, tmp_path / "r", log=lambda m: None)
    cfg = _config(data)
    cfg.epochs, cfg.lr = 1, 5e-4
    with pytest.raises(RunError, match="differs in: lr"):
        run_teacher(cfg, tmp_path / "r", log=lambda m: None)
    run_teacher(cfg, tmp_path / "r", overwrite=True, log=lambda m: None)


def test_a_run_that_failed_before_training_restarts_with_other_data(tmp_path, data):
    empty = tmp_path / "empty.csv"
    empty.write_text(Path(data["train_expr"]).read_text().splitlines()[0] + "\n")  # the header, no rows
    bad = _config(data)
    bad.epochs, bad.train = 1, [Source(kind="manifest", path=str(empty))]
    with pytest.raises(Exception, match="empty.csv"):
        run_teacher(bad, tmp_path / "r", log=lambda m: None)
    assert (tmp_path / "r" / "config.json").is_file()
    good = _config(data)
    good.epochs = 1
    run_teacher(good, tmp_path / "r", log=lambda m: None)  # not refused as "a different configuration"
    assert (tmp_path / "r" / "summary.json").is_file() or any((tmp_path / "r").rglob("*.safetensors"))


def test_config_file_and_init_from_bundle(tmp_path, data):
    toml = tmp_path / "cfg.toml"
    toml.write_text(
        'backbone = "small_cnn"\nbackbone_kwargs = {width = 8, depths = [1, 1]}\nsize = 24\ncolour = "gray"\n'
        "batch_size = 8\nsteps_per_epoch = 2\nepochs = 1\nthreads = 1\nbalance = []\n"
        f'train = [{{kind = "manifest", path = "{data["train_expr"]}"}}]\n'
        "[augment]\nrotate = 5.0\n[loss]\ntemperature = 2.0\n"
    )
    _invoke(["teacher", "--config", str(toml), "--lr", "2e-3", "--out", str(tmp_path / "t")])
    cfg = json.loads((tmp_path / "t" / "config.json").read_text())
    assert cfg["lr"] == 2e-3 and cfg["augment"]["rotate"] == 5.0 and cfg["loss"]["temperature"] == 2.0
    assert cfg["balance"] == [] and cfg["augment"]["flip"] is True
    _invoke(["export", str(tmp_path / "t"), "-o", str(tmp_path / "b")])
    # a new run starting from the bundle's backbone: same backbone weights before training
    from training.config import from_dict
    from training.loop import build_member

    start = from_dict(cfg | {"init": str(tmp_path / "b")})
    net = build_member(start, {"EXPR": 7, "VA": 40}, seed=5)
    member = load_file(str(tmp_path / "b" / "member0.safetensors"))
    own = net.state_dict()
    assert all(torch.equal(own[k], v) for k, v in member.items() if k.startswith("backbone."))
    bad = toml.read_text().replace("epochs = 1", "epochs = 1\nepoch = 2")
    toml.write_text(bad)
    result = CliRunner().invoke(main, ["teacher", "--config", str(toml), "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "unknown setting(s) ['epoch']" in result.output


def test_two_processes_split_the_students(tmp_path, data):
    """The same student command started twice trains each student once, in one process or the other."""
    import os
    import subprocess
    import sys

    run, run2 = tmp_path / "t", tmp_path / "s"
    _invoke(["teacher", "--manifest", str(data["train_expr"]), *NET, "--epochs", "1", "--out", str(run)])
    args = [sys.executable, "-m", "training.cli", "student", "--teacher", str(run), "--students", "4",
            "--epochs", "2", "--out", str(run2)]
    root = str(Path(__file__).parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
             for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    trained = [sum(f"student{i} epoch 1/2" in o for o in outputs) for i in range(1, 5)]
    assert trained == [1, 1, 1, 1], outputs  # every student trained by exactly one of the processes
    assert all(sum("student" in line and "epoch" in line for line in o.splitlines()) > 0 for o in outputs)
    for i in range(1, 5):
        lines = (run2 / "round1" / f"student{i}" / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(x)["epoch"] for x in lines] == [1, 2]
        assert not (run2 / "round1" / f"student{i}" / "training.lock").exists()
