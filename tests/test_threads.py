"""The thread plan: decoder + torch threads never exceed the budget, workers share the cores."""

import pytest

from fer_annotate.run.threads import ThreadPlan, available_cores, core_sets, pin_to, plan_threads


@pytest.mark.parametrize(("cores", "workers", "expected"), [
    (1, 1, ThreadPlan(torch=1, decode=1, cores=1)),
    (2, 1, ThreadPlan(torch=1, decode=1, cores=2)),
    (8, 1, ThreadPlan(torch=7, decode=1, cores=8)),
    (8, 2, ThreadPlan(torch=3, decode=1, cores=4)),
    (8, 8, ThreadPlan(torch=1, decode=1, cores=1)),
    (2, 4, ThreadPlan(torch=1, decode=1, cores=1)),
])
def test_default_plan_splits_cores(cores: int, workers: int, expected: ThreadPlan) -> None:
    plan = plan_threads(None, workers=workers, cores=cores)
    assert plan == expected
    if cores // workers >= 2:  # never more busy threads than the worker's share of the cores
        assert plan.budget * workers <= cores


def test_explicit_budget_wins_over_cores() -> None:
    assert plan_threads(4, cores=64) == ThreadPlan(torch=3, decode=1, cores=4)
    assert plan_threads(1, cores=64).torch == 1


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValueError, match="threads"):
        plan_threads(0)
    with pytest.raises(ValueError, match="workers"):
        plan_threads(None, workers=0)


def test_available_cores_is_positive() -> None:
    assert available_cores() >= 1


@pytest.mark.parametrize(("workers", "cores", "expected"), [
    (1, [0, 1], [[0, 1]]),
    (2, [0, 1], [[0], [1]]),
    (2, [0, 1, 2, 3, 4], [[0, 1, 2], [3, 4]]),
    (3, [4, 5], [[4], [5], [4]]),
])
def test_core_sets_are_disjoint_shares(workers: int, cores: list[int], expected: list[list[int]]) -> None:
    assert core_sets(workers, cores) == expected


def test_pinned_process_sees_only_its_cores() -> None:
    import os

    before = os.sched_getaffinity(0)
    try:
        mine = core_sets(len(before))[-1]
        assert pin_to(mine)
        assert os.sched_getaffinity(0) == set(mine) and available_cores() == 1
    finally:
        os.sched_setaffinity(0, before)
