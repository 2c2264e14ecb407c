"""Stage 5b: moving running jobs to faster GPUs that no waiting job took (Profile.migration)."""

from __future__ import annotations

import pytest

from kumo.core import ConfigError, Profile, schedule
from tests.core.builders import ClusterBuilder, cluster

MIGRATE = Profile(order="fifo", migration=True, preemption_min_runtime_s=600)
SPEEDS = {"v100": 1.0, "k80": 0.5}


def two_models(**running_kw: object) -> ClusterBuilder:
    kw = {"speeds": SPEEDS, **running_kw}
    return (cluster()
            .pool("japan-east", "v100", nodes=1, gpus=2)
            .pool("japan-east", "k80", nodes=1, gpus=2)
            .queue("q", {"gpu.v100": 2, "gpu.k80": 2})
            .running_job("slow", [("ek80-0", (0,))], **kw))


def test_a_job_moves_to_a_free_faster_gpu_once_old_enough() -> None:
    snap = two_models().snapshot()
    d = schedule(snap, 700.0, MIGRATE)
    [p] = d.preemptions
    assert (p.job_id, p.by, p.reason.code) == ("slow", "slow", "migration")
    assert p.reason.detail == "moved from k80 to v100, 2.00x faster for it"
    [s] = d.starts
    assert (s.job_id, s.placement.model, s.preempting) == ("slow", "v100", ("slow",))
    assert [(w.node, w.gpus) for w in s.placement.workers] == [("ev100-0", (0,))]
    snap.apply(d)
    assert snap.placement_of("slow").model == "v100"
    assert snap.running["slow"].alloc.start_time == 700.0
    assert not snap.pending
    # and it stays there: nothing faster is left
    assert not schedule(snap, 2000.0, MIGRATE).starts


def test_no_move_before_the_preemption_grace() -> None:
    d = schedule(two_models().snapshot(), 300.0, MIGRATE)
    assert not d.starts and not d.preemptions


def test_no_move_below_the_minimum_speed_up() -> None:
    snap = two_models(speeds={"v100": 1.0, "k80": 0.85}).snapshot()
    assert not schedule(snap, 700.0, MIGRATE).starts
    d = schedule(snap, 700.0, Profile(order="fifo", migration=True, migration_min_speedup=1.1))
    assert [s.job_id for s in d.starts] == ["slow"]


def test_waiting_jobs_take_free_gpus_first() -> None:
    snap = two_models().job("w", gpus=2, gpu_models=("v100",)).snapshot()
    d = schedule(snap, 700.0, MIGRATE)
    assert [s.job_id for s in d.starts] == ["w"]
    assert not d.preemptions


def test_non_preemptible_jobs_stay_and_migration_is_off_by_default() -> None:
    assert not schedule(two_models(preemptible=False).snapshot(), 700.0, MIGRATE).starts
    assert not schedule(two_models().snapshot(), 700.0, Profile(order="fifo")).starts


def test_largest_speed_up_moves_first() -> None:
    # one free v100 GPU, two jobs on k80s: the one that gains more from the v100 gets it
    snap = (cluster()
            .pool("japan-east", "v100", nodes=1, gpus=1)
            .pool("japan-east", "k80", nodes=1, gpus=2)
            .queue("q", {"gpu.v100": 1, "gpu.k80": 2})
            .running_job("a", [("ek80-0", (0,))], speeds={"v100": 1.0, "k80": 0.5})
            .running_job("b", [("ek80-0", (1,))], speeds={"v100": 1.0, "k80": 0.25})
            .snapshot())
    d = schedule(snap, 700.0, MIGRATE)
    assert [s.job_id for s in d.starts] == ["b"]


def test_migration_respects_quota() -> None:
    snap = (cluster()
            .pool("japan-east", "v100", nodes=1, gpus=2)
            .pool("japan-east", "k80", nodes=1, gpus=2)
            .queue("q", {"gpu.v100": 0, "gpu.k80": 2})
            .running_job("slow", [("ek80-0", (0,))], speeds=SPEEDS)
            .snapshot())
    assert not schedule(snap, 700.0, MIGRATE).starts


@pytest.mark.parametrize("value", [1.0, 0.5, float("inf"), True])
def test_minimum_speed_up_must_exceed_one(value: float) -> None:
    with pytest.raises(ConfigError, match="migration_min_speedup must be a number above 1"):
        Profile(migration_min_speedup=value)
