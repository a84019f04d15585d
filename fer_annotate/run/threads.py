"""How many CPU threads each part of a run gets, so that the process never asks for more cores than it has.

A run has two kinds of busy threads: the video decoder (decord/ffmpeg, on the prefetch thread) and
torch's intra-op pool (detector and ensemble). Both default to "every core", and together they
oversubscribe: on a loaded or small machine threads spin-wait for each other and a run's user CPU time
triples for the same work. The plan here gives the decoder one thread and torch the rest of the budget
(at least one), with torch's inter-op pool at one thread (the pipeline never runs ops in parallel).
With several workers in one machine each worker gets an equal share of the cores, and is pinned to its
own cores (`core_sets`, `pin_to`): unpinned, the workers' threads wander between cores and a
two-worker run on two cores finished in 0.71 of the one-core time instead of two pinned processes' 0.51.
"""

import os
from dataclasses import dataclass
from pathlib import Path

DECODE_THREADS = 1


@dataclass(frozen=True)
class ThreadPlan:
    """Threads for one worker: torch intra-op threads and video decoder threads, and `cores`, the budget
    they were planned for (with a budget of one both share that core; with two or more, the pipeline's
    stages and the ensemble's members also run side by side, on one torch thread each)."""

    torch: int
    decode: int
    cores: int

    @property
    def budget(self) -> int:
        return self.torch + self.decode


def _cgroup_cpus() -> float | None:
    """CPUs allowed by a cgroup v2 quota (containers, `docker --cpus`), or None when unlimited."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return int(quota) / int(period)


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_cpus()
    if quota is not None:
        cores = min(cores, int(quota))
    return max(1, cores)


def plan_threads(threads: int | None = None, workers: int = 1, cores: int | None = None) -> ThreadPlan:
    """Split a worker's thread budget between the decoder and torch.

    `threads` is the budget of one worker (decoder included); None means an equal share of the
    available cores between `workers`. The decoder takes one thread; torch takes the rest, at least one,
    so with a budget of 1 the two share a core (decoding is a few percent of the work).
    """
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    budget = threads if threads is not None else max(1, (cores or available_cores()) // workers)
    return ThreadPlan(torch=max(1, budget - DECODE_THREADS), decode=DECODE_THREADS, cores=budget)


def apply_torch_threads(plan: ThreadPlan) -> None:
    """Set torch's intra-op threads to the plan and its inter-op pool to one thread (where still allowed)."""
    import torch

    torch.set_num_threads(plan.torch)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # the inter-op pool has already started in this process; its size is fixed
        pass


def _allowed_cores() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return list(range(os.cpu_count() or 1))


def core_sets(workers: int, cores: list[int] | None = None) -> list[list[int]]:
    """Disjoint, equal (as far as they go) sets of the allowed cores, one per worker; with more workers than
    cores, workers share single cores round robin. Limited by a cgroup CPU quota as `available_cores`."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    cores = list(cores if cores is not None else _allowed_cores()[: available_cores()])
    if workers >= len(cores):
        return [[cores[slot % len(cores)]] for slot in range(workers)]
    share, extra = divmod(len(cores), workers)
    sets, start = [], 0
    for slot in range(workers):
        size = share + (slot < extra)
        sets.append(cores[start : start + size])
        start += size
    return sets


def pin_to(cores: list[int]) -> bool:
    """Run this process (and the threads it starts later) on `cores` only; False where that is not possible."""
    try:
        os.sched_setaffinity(0, cores)
    except (AttributeError, OSError):
        return False
    return True
