"""Whole processes timed as a user meets them: each started fresh, its wall time, user CPU and peak RSS
(from wait4, which reports the largest of the process tree: a process's peak includes the peaks of the
children it waited for). Shared by targets_benchmark.py and process_benchmark.py; imports neither torch
nor the package, so a yardstick is never timed as the child of a process that holds torch."""

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# The decode-only yardstick: decord, batches of 16 frames, as `python -c DECODE VIDEO`.
DECODE = ("import sys, decord; r = decord.VideoReader(sys.argv[1], ctx=decord.cpu(0)); n = len(r); "
          "[r.get_batch(list(range(i, min(i + 16, n)))).asnumpy() for i in range(0, n, 16)]")


@dataclass
class Timing:
    """Wall seconds, user CPU seconds and peak RSS (MiB) of one process."""

    wall: float
    user: float
    rss_mib: float


def timed(argv: list[str], env: dict[str, str] | None = None) -> Timing:
    """Run `argv` as a fresh process (output discarded); the benchmark exits with its stderr if it fails."""
    tic = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - tic
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"failed ({code}): {' '.join(argv)}\n{err[-2000:]}")
    return Timing(wall, usage.ru_utime, usage.ru_maxrss / 1024)


def loadavg() -> str:
    """The machine's load average over 1, 5 and 15 minutes."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])
