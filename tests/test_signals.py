"""A stop signal to a `--workers 2` run (a real process, as a shell or a job scheduler sends it): every
worker stops, no partial file or lock is left, complete outputs stay, and the exit code is 128 + the signal.
A driver killed outright (SIGKILL) takes its workers with it."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fer_annotate.outputs.output import is_complete

VIDEOS = ("pyfeat_WolfgangLanger_Pexels.mp4", "pyfeat_single_face.mp4", "pyfeat_face_noface.mov")


def children(pid: int) -> list[int]:
    """Pids of the live processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def start_run(shared_dir: Path, tmp_path: Path, scale: list[str] | None = None
              ) -> tuple[subprocess.Popen, Path, Path, list[int]]:
    """A `--workers 2` run (or `scale`) over three videos, once two workers are annotating (two partial files);
    the worker processes when they are the run's children."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name in VIDEOS:
        (folder / name).symlink_to(shared_dir / "fixtures" / "videos" / name)
    out = tmp_path / "out"
    code = "import sys; from fer_annotate.cli.main import main; sys.exit(main())"
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder), "-o", str(out), *(scale or ["--workers", "2"])],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
    deadline = time.monotonic() + 600
    while len(list(out.glob(".*.partial"))) < 2:
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.05)
    workers = [pid for pid in children(proc.pid)
               if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()]  # forked or spawned
    assert scale or len(workers) == 2, children(proc.pid)
    return proc, folder, out, workers


def assert_nothing_left(folder: Path, out: Path, workers: list[int]) -> None:
    deadline = time.monotonic() + 60
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if alive(pid)], "a worker outlived the run"
    hidden = sorted(p.name for p in out.rglob(".*"))
    assert not hidden, f"left behind: {hidden}"
    for table in out.glob("*.csv"):
        assert is_complete(table, folder / table.name.removesuffix(".csv")), f"{table.name} looks complete"


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_stop_signal_stops_every_worker(signum: int, shared_dir: Path, torch_home: Path, tmp_path: Path) -> None:
    proc, folder, out, workers = start_run(shared_dir, tmp_path)
    proc.send_signal(signum)
    text, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, text
    assert f"stopped by {signal.Signals(signum).name}" in text and "Traceback" not in text, text
    assert_nothing_left(folder, out, workers)


@pytest.mark.slow
def test_workers_die_with_a_killed_driver(shared_dir: Path, torch_home: Path, tmp_path: Path) -> None:
    proc, folder, out, workers = start_run(shared_dir, tmp_path)
    proc.kill()
    proc.communicate(timeout=60)
    assert_nothing_left(folder, out, workers)


def ray_workers() -> list[int]:
    """Pids of the processes that hold an AnnotatorWorker actor (their process title names it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"AnnotatorWorker" in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


@pytest.mark.slow
def test_a_stop_signal_stops_the_ray_actors(shared_dir: Path, torch_home: Path, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    ray.init(num_cpus=2, log_to_driver=False, include_dashboard=False)
    try:
        address = ray.get_runtime_context().gcs_address
        proc, folder, out, _ = start_run(shared_dir, tmp_path, ["--ray", address, "--workers", "2"])
        actors = ray_workers()
        assert actors, "no Ray worker holds an annotator"
        proc.send_signal(signal.SIGTERM)
        text, _ = proc.communicate(timeout=120)
        assert proc.returncode == 128 + signal.SIGTERM, text
        assert "stopped by SIGTERM" in text and "Traceback" not in text, text
        assert_nothing_left(folder, out, actors)
    finally:
        ray.shutdown()
