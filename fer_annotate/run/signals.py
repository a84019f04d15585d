"""Stop a run cleanly on SIGTERM, SIGINT and SIGHUP, workers included, and exit with 128 + the signal number.

The driver (`stop_on_signals`) turns a stop signal into the `Stopped` exception where it is running, so
the cleanup already written for errors (a table's temporary file aborted, the output lock released, the
render's partial file removed, the workers stopped) runs on the way out. A worker process
(`as_worker`) stops with its driver: on a stop signal it leaves at once when idle, or mid-video raises
`Stopped` through the video's cleanup (`guarded`) and then exits; on Linux it is also sent SIGTERM when
its driver dies, even by SIGKILL, so that no worker outlives the run. `stop_processes` is the driver's
side: the workers are asked to stop, and those still alive after a grace period are killed.
"""

import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from fer_annotate.outputs.output import remove_path, stale_temps
from fer_annotate.run.lock import lock_owner, lock_path

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
GRACE_S = 20.0  # a worker mid-video gets this long to remove its temporary files before it is killed
PR_SET_PDEATHSIG = 1

T = TypeVar("T")


class Stopped(BaseException):
    """A stop signal arrived (a BaseException, like KeyboardInterrupt: no `except Exception` swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal."""
        return 128 + self.signum


def _raise_stopped(signum: int, frame: object) -> None:
    raise Stopped(signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While inside: a stop signal raises Stopped in the main thread; the previous handlers come back after.
    Elsewhere than the main thread (where Python cannot set handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.signal(s, _raise_stopped) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def reclaim() -> None:
    """Put Stopped back on the stop signals a library took over (Ray's init sets its own SIGTERM handler),
    where `stop_on_signals` is active."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is _raise_stopped:
        for s in STOP_SIGNALS:
            signal.signal(s, _raise_stopped)


# --- worker processes ------------------------------------------------------------------------------------

_busy = False


def _worker_handler(signum: int, frame: object) -> None:
    if _busy:
        raise Stopped(signum)
    os._exit(128 + signum)


def as_worker(driver: int | None = None) -> None:
    """Make this process a worker that stops with its driver (call once, first thing in the worker).

    `driver`: the driver's pid, as the driver saw it; a worker whose driver died while it was starting (before
    the death signal was asked for) then sees another parent and leaves at once."""
    parent = os.getppid() if driver is None else driver
    for s in STOP_SIGNALS:
        signal.signal(s, _worker_handler)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: a stop signal still reaches it through its driver
        return
    if os.getppid() != parent:  # the driver died before the request took effect
        os._exit(128 + signal.SIGTERM)


def guarded(output: Path, work: Callable[..., T], *args: object) -> T:
    """Run the work on one output in a worker: a stop signal meanwhile unwinds it (its cleanup runs), removes
    whatever of `output` this process still left (a signal between a file's creation and its cleanup), and
    exits with 128 + the signal number."""
    global _busy
    _busy = True
    try:
        return work(*args)
    except Stopped as stop:
        remove_left_by(output, {os.getpid()})
        os._exit(stop.exit_code)
    finally:
        _busy = False


def remove_left_by(output: Path, pids: set[int]) -> None:
    """Remove the temporary files of `output` written by these (stopped) processes, and its lock where one
    of them holds it on this host."""
    for temp in stale_temps(output, pids):
        remove_path(temp)
    owner = lock_owner(output)
    if owner is not None and owner[0] in pids and owner[1] == socket.gethostname():
        lock_path(output).unlink(missing_ok=True)


def stop_processes(processes: list, grace_s: float = GRACE_S) -> list[int]:
    """SIGTERM each live `multiprocessing` process, wait up to `grace_s` for all, SIGKILL the rest; the pids
    of those that had to be killed."""
    live = [p for p in processes if p.is_alive()]
    for p in live:
        p.terminate()
    deadline = time.monotonic() + grace_s
    for p in live:
        p.join(max(0.0, deadline - time.monotonic()))
    killed = [p for p in live if p.is_alive()]
    for p in killed:
        p.kill()
        p.join()
    return [p.pid for p in killed]
