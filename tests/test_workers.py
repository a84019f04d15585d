"""Scale-out: `--workers N` local processes and `--ray` actors give the single process's outputs, isolate a
bad video, and survive a worker killed mid-video (nothing that looks complete; a rerun finishes)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_run import invoke

from fer_annotate.outputs.output import is_complete, sidecar_path
from fer_annotate.run import workers as workers_module
from fer_annotate.run.pipeline import AnnotateConfig
from fer_annotate.run.threads import available_cores
from fer_annotate.run.workers import (
    PROBE_PREFIX,
    AnnotatorWorker,
    WorkerError,
    WorkerSpec,
    local_workers,
    parse_workers,
    ray_plan,
    start_method,
)

GOOD = ("pyfeat_single_face.mp4", "pyfeat_no_face.mp4", "pyfeat_face_noface.mov")
WINDOW = ["--end", "1"]
BAD_LINE = "broken.mp4: not a readable video"
# Fields of the sidecar that record when and how fast, or how the run was invoked, not what was computed.
RUN_FIELDS = ("timing", "finished", "torch_threads")  # threads: a share of the cores per worker
RUN_ARGUMENTS = ("argv", "output", "workers", "ray_address")


def _folder(root: Path, shared_dir: Path, names: tuple[str, ...]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / name).symlink_to(shared_dir / "fixtures" / "videos" / name)
    return root


@pytest.fixture(scope="module")
def corpus(shared_dir: Path, tmp_path_factory) -> Path:
    """Three real fixture videos and one file of random bytes named like a video."""
    root = _folder(tmp_path_factory.mktemp("corpus") / "in", shared_dir, GOOD)
    (root / "broken.mp4").write_bytes(os.urandom(4096))
    return root


@pytest.fixture(scope="module")
def single(corpus: Path, torch_home: Path, tmp_path_factory):
    """The single-process run everything is compared with."""
    out = tmp_path_factory.mktemp("single")
    result = invoke([corpus, "-o", out, *WINDOW, "--workers", "1"])
    assert result.exit_code == 1, result.describe()
    return out, result


def _comparable_sidecar(path: Path) -> dict:
    meta = json.loads(sidecar_path(path).read_text())
    for key in RUN_FIELDS:
        meta.pop(key)
    for key in RUN_ARGUMENTS:
        meta["arguments"].pop(key, None)
    meta["config"].pop("parallel_stages")  # a worker on one core runs its stages in turn
    return meta


def assert_same_outputs(expected: Path, actual: Path) -> None:
    tables = sorted(p.name for p in expected.glob("*.csv"))
    assert tables == sorted(p.name for p in actual.glob("*.csv")) and len(tables) == len(GOOD)
    for name in tables:
        assert (actual / name).read_bytes() == (expected / name).read_bytes(), name
        assert _comparable_sidecar(actual / name) == _comparable_sidecar(expected / name), name


def assert_bad_video_reported_once(result, single_result) -> None:
    assert "3 annotated, 0 skipped, 1 failed" in result.output, result.describe()
    assert result.output.count(BAD_LINE) == single_result.output.count(BAD_LINE) == 2  # as it ends, in the summary


def test_local_workers_equal_single_process(corpus: Path, single, tmp_path: Path) -> None:
    expected, single_result = single
    result = invoke([corpus, "-o", tmp_path, *WINDOW, "--workers", "2"])
    assert result.exit_code == 1, result.describe()
    assert_bad_video_reported_once(result, single_result)
    assert_same_outputs(expected, tmp_path)
    again = invoke([corpus, "-o", tmp_path, *WINDOW, "--workers", "2"])
    assert "0 annotated, 3 skipped, 1 failed" in again.output, again.describe()


def test_spawned_workers_equal_single_process(corpus: Path, single, tmp_path: Path, monkeypatch) -> None:
    expected, _ = single
    monkeypatch.setattr(workers_module, "start_method", lambda spec, workers: "spawn")  # as for GPUs
    result = invoke([corpus, "-o", tmp_path, *WINDOW, "--workers", "2"])
    assert result.exit_code == 1 and "3 annotated, 0 skipped, 1 failed" in result.output, result.describe()
    assert_same_outputs(expected, tmp_path)


def test_start_method_forks_only_single_threaded_cpu_workers() -> None:
    cpu, gpu = AnnotateConfig(), AnnotateConfig(device="cuda")
    assert start_method(WorkerSpec(cpu), available_cores()) == "fork"  # one core each: one torch thread
    assert start_method(WorkerSpec(cpu, threads=2), 2) == "fork"  # the decoder's thread and one torch thread
    assert start_method(WorkerSpec(cpu, threads=4), 2) == "spawn"  # OpenMP regions: never after a fork
    assert start_method(WorkerSpec(gpu), 2) == "spawn"  # a CUDA context does not survive a fork


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the live processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append((int(entry.name), cmdline))
    return found


def _processes(prefix: str) -> list[int]:
    """Pids of processes whose command line (a Ray worker's process title) starts with `prefix`."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().decode().startswith(prefix):
                pids.append(int(entry.name))
        except (OSError, UnicodeDecodeError):
            continue
    return pids


def _start_cli(args: list) -> subprocess.Popen:
    code = "import sys; from fer_annotate.cli.main import main; sys.exit(main())"
    return subprocess.Popen([sys.executable, "-c", code, *[str(a) for a in args]], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=dict(os.environ))


def _wait_for_partial(out: Path, proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not list(out.glob(".*.partial")):
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "no video started"
        time.sleep(0.05)


def _check_killed_run(proc: subprocess.Popen, out: Path, folder: Path, rerun: list) -> None:
    """The killed worker's video failed once, left nothing that looks complete; a rerun finishes it."""
    text, _ = proc.communicate(timeout=600)
    assert proc.returncode == 1, text
    assert "1 annotated, 0 skipped, 1 failed" in text, text
    assert text.count("annotating it died") == 2, text  # as it ends, in the summary
    videos = [folder / name for name in sorted(os.listdir(folder))]
    outputs = [(out / (v.name + ".csv"), v) for v in videos]
    assert sum(is_complete(p, v) for p, v in outputs) == 1, text
    assert not list(out.glob(".*partial*")), list(out.iterdir())
    result = invoke(rerun)
    assert result.exit_code == 0 and "1 annotated, 1 skipped, 0 failed" in result.output, result.describe()
    assert all(is_complete(p, v) for p, v in outputs)


def test_local_worker_killed_mid_video(shared_dir: Path, torch_home: Path, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "in", shared_dir, ("pyfeat_WolfgangLanger_Pexels.mp4", "pyfeat_single_face.mp4"))
    out = tmp_path / "out"
    args = [folder, "-o", out, "--end", "2.5", "--workers", "2"]
    proc = _start_cli(args)
    _wait_for_partial(out, proc)
    workers = [pid for pid, cmd in _children(proc.pid) if "resource_tracker" not in cmd]  # forked or spawned
    assert len(workers) == 2, _children(proc.pid)
    os.kill(workers[0], signal.SIGKILL)
    _check_killed_run(proc, out, folder, args)


def test_workers_option_is_checked(corpus: Path, torch_home: Path, tmp_path: Path) -> None:
    result = invoke([corpus, "-o", tmp_path, "--workers", "0"])
    assert result.exit_code == 2, result.describe()  # a usage error, checked when the options are parsed
    assert "Invalid value for '--workers'" in result.output
    assert "--workers 0: expected a positive number or 'auto'" in result.output
    assert parse_workers("auto") == 0 and parse_workers(None) is None and parse_workers("3") == 3


def test_several_videos_on_cpu_default_to_one_worker_per_core() -> None:
    cores = available_cores()
    assert local_workers(None, "cpu", 1) == 1  # one video: one process, every core for it
    assert local_workers(None, "cpu", 8) == local_workers(0, "cpu", 8)  # several: auto, as memory allows
    assert 1 <= local_workers(None, "cpu", 8) <= min(cores, 8)
    assert local_workers(1, "cpu", 8) == 1 and local_workers(3, "cpu", 2) == 2


def test_ray_plan_places_actors() -> None:
    gib = 1024**3
    gpu = ray_plan({"GPU": 2, "CPU": 32, "memory": 100 * gib}, None, "auto", 1, 100)
    assert (gpu.actors, gpu.device, gpu.options["num_gpus"]) == (2, "cuda", 1.0)
    shared = ray_plan({"GPU": 2, "CPU": 32}, 6, "cuda", 1, 100)
    assert (shared.actors, shared.options["num_gpus"]) == (6, pytest.approx(1 / 3))
    cpu = ray_plan({"CPU": 16, "memory": 9 * gib}, None, "auto", 2, 100)
    assert (cpu.actors, cpu.device, cpu.options["num_cpus"]) == (4, "cpu", 2)  # memory: 4 x 2 GiB
    assert ray_plan({"CPU": 16, "memory": 90 * gib}, None, "cpu", 1, 3).actors == 3  # no more than videos
    with pytest.raises(WorkerError, match="no GPUs"):
        ray_plan({"CPU": 4}, None, "cuda", 1, 10)
    with pytest.raises(WorkerError, match="with --ray use --device cuda"):
        ray_plan({"GPU": 1}, None, "cuda:1", 1, 10)


def test_probe_fails_where_the_driver_file_is_not_seen(torch_home: Path, tmp_path: Path) -> None:
    worker = AnnotatorWorker(WorkerSpec(AnnotateConfig(), bundle=None), "cpu")
    host, error = worker.ready(str(tmp_path), "abc")
    assert "not shared storage" in error and host in error and str(tmp_path) in error
    (tmp_path / f"{PROBE_PREFIX}abc").write_text("abc")
    assert worker.ready(str(tmp_path), "abc") == (host, "")
    assert list(tmp_path.glob(f"{PROBE_PREFIX}abc-{host}-*"))


# --- Ray ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_local(torch_home: Path):
    """A local Ray instance with two CPUs (the workers inherit TORCH_HOME from this process)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    ray.init(num_cpus=2, log_to_driver=False, include_dashboard=False)
    yield ray
    ray.shutdown()


def test_ray_equals_single_process(ray_local, corpus: Path, single, tmp_path: Path) -> None:
    expected, single_result = single
    result = invoke([corpus, "-o", tmp_path, *WINDOW, "--ray"])
    assert result.exit_code == 1, result.describe()
    assert_bad_video_reported_once(result, single_result)
    assert_same_outputs(expected, tmp_path)
    assert not list(tmp_path.glob(f"{PROBE_PREFIX}*"))


def test_ray_output_not_shared_is_one_clear_line(ray_local, corpus: Path, tmp_path: Path, monkeypatch) -> None:
    # The driver "writes" its probe where no worker can see it: what a node-local -o folder looks like.
    monkeypatch.setattr("fer_annotate.run.workers._write_probe", lambda folder, token: None)
    result = invoke([corpus, "-o", tmp_path, *WINDOW, "--ray"])
    assert result.exit_code == 1, result.describe()
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "not shared storage" in errors[0], result.describe()
    assert not list(tmp_path.glob("*.csv"))


def test_ray_worker_killed_mid_video(ray_local, shared_dir: Path, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "in", shared_dir, ("pyfeat_WolfgangLanger_Pexels.mp4", "pyfeat_single_face.mp4"))
    out = tmp_path / "out"
    address = ray_local.get_runtime_context().gcs_address
    args = [folder, "-o", out, "--end", "2.5", "--ray", address]
    proc = _start_cli(args)
    _wait_for_partial(out, proc)
    busy = _processes("ray::AnnotatorWorker.run")
    assert busy, "no Ray worker is annotating"
    os.kill(busy[0], signal.SIGKILL)
    _check_killed_run(proc, out, folder, args)
