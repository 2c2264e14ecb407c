"""Grant standings in the core: held projects wait with the grant's sentence, preemptible-only
projects run as preemptible work, and ``grant-pacing`` scales fair-share weights by the plans."""

from __future__ import annotations

from typing import Any

import pytest

from kumo.core import (
    Decisions,
    GrantStanding,
    InvalidValueError,
    Job,
    Profile,
    Snapshot,
    UnknownReferenceError,
    schedule,
)
from kumo.core.policies.fairshare import PACE_LIMIT, pace_factor
from tests.core.builders import ClusterBuilder, cluster

HOLD = "grant g-7 of project pa is exhausted (1,000 of 1,000 GPU-hours used); ask for a top-up"


def started(d: Decisions) -> list[str]:
    return [s.job_id for s in d.starts]


def two_projects(gpus: int = 4) -> ClusterBuilder:
    return (cluster()
            .pool("japan-east", "h200", nodes=1, gpus=gpus, prefix="n")
            .queue("q", {"gpu.h200": gpus})
            .project("pa").project("pb"))


def test_a_held_project_waits_with_the_grants_sentence() -> None:
    snap = (two_projects()
            .running_job("ra", [("n0", (0,))], project="pa")
            .job("a1", project="pa").job("a2", project="pa").job("b1", project="pb")
            .snapshot(standings=[GrantStanding("pa", hold=HOLD)]))
    d = schedule(snap, 0.0, Profile(order="fair-share"))
    assert started(d) == ["b1"]  # room for three more, but pa's jobs are held
    assert not d.preemptions  # the running job of the held project is not touched
    assert d.why("a1") is not None and d.why("a1").message == f"grant: {HOLD}"
    assert sorted(d.waiting) == ["a1", "a2"]
    assert len(d.waiting) == 2


def test_lifting_the_hold_schedules_the_jobs_and_equals_a_rebuilt_snapshot() -> None:
    builder = two_projects().job("a1", project="pa").job("a2", project="pa")
    snap = builder.snapshot(standings=[GrantStanding("pa", hold=HOLD)])
    assert started(schedule(snap, 0.0)) == []
    snap.set_standings([GrantStanding("pa", pace=0.8)])
    incremental = schedule(snap, 0.0)
    rebuilt = schedule(Snapshot(**snap.export()), 0.0)
    assert started(incremental) == started(rebuilt) == ["a1", "a2"]
    snap.set_standings([GrantStanding("pa", hold=HOLD)])  # and back: nothing lost, nothing doubled
    assert sorted(snap.held) == ["a1", "a2"] and not snap.pending
    snap.cancel("a1")
    assert sorted(snap.held) == ["a2"]


def test_preemptible_only_runs_the_job_as_preemptible_so_others_may_take_its_gpus_back() -> None:
    # pa's grant is spent but its programme lets it continue as preemptible work.
    snap = (two_projects(gpus=2)
            .job("a1", project="pa", gpus=2, preemptible=False)
            .snapshot(standings=[GrantStanding("pa", preemptible_only=True)]))
    d = schedule(snap, 0.0, Profile(order="priority", preemption_min_runtime_s=0))
    assert started(d) == ["a1"]
    snap.apply(d)
    assert snap.running["a1"].job.preemptible  # scheduled as preemptible, whatever it asked for
    snap.submit(snap_job("b1", project="pb", gpus=2, priority=10))
    d = schedule(snap, 100.0, Profile(order="priority", preemption_min_runtime_s=0))
    assert [p.job_id for p in d.preemptions] == ["a1"] and started(d) == ["b1"]


def test_without_a_standing_a_non_preemptible_job_is_not_preempted() -> None:
    snap = two_projects(gpus=2).job("a1", project="pa", gpus=2, preemptible=False).snapshot()
    d = schedule(snap, 0.0, Profile(order="priority", preemption_min_runtime_s=0))
    snap.apply(d)
    snap.submit(snap_job("b1", project="pb", gpus=2, priority=10))
    d = schedule(snap, 100.0, Profile(order="priority", preemption_min_runtime_s=0))
    assert not d.preemptions and not started(d)


def test_a_coerced_job_gets_its_own_flag_back_when_the_standing_changes() -> None:
    snap = (two_projects().job("a1", project="pa", preemptible=False)
            .snapshot(standings=[GrantStanding("pa", preemptible_only=True)]))
    assert snap.pending["a1"].preemptible
    snap.set_standings([])
    assert not snap.pending["a1"].preemptible
    assert Snapshot(**snap.export()).pending["a1"] == snap.pending["a1"]


def snap_job(id: str, **kw: Any) -> Job:
    return Job(id, "q", **kw)


@pytest.mark.parametrize(("pace", "factor"), [
    (1.0, 1.0), (0.5, 2.0), (2.0, 0.5), (0.0, PACE_LIMIT), (0.1, PACE_LIMIT), (100.0, 1 / PACE_LIMIT)])
def test_pace_factor(pace: float, factor: float) -> None:
    assert pace_factor(pace) == pytest.approx(factor)


def test_grant_pacing_gives_the_project_behind_plan_the_larger_share() -> None:
    # 10 GPUs, equal weights. pa spent half its plan (factor 2), pb twice its plan (factor 0.5):
    # effective weights 2 and 0.5, so pa gets 4/5 of the GPUs: 8 vs 2. Plain fair share: 5 vs 5.
    b = two_projects(gpus=10)
    for i in range(10):
        b.job(f"a{i}", project="pa").job(f"b{i}", project="pb")
    standings = [GrantStanding("pa", pace=0.5), GrantStanding("pb", pace=2.0)]
    paced = schedule(b.snapshot(standings=standings), 0.0, Profile(order="grant-pacing"))
    plain = schedule(b.snapshot(standings=standings), 0.0, Profile(order="fair-share"))
    count = lambda d, p: sum(1 for j in started(d) if j.startswith(p))  # noqa: E731
    assert (count(paced, "a"), count(paced, "b")) == (8, 2)
    assert (count(plain, "a"), count(plain, "b")) == (5, 5)


def test_bad_standings_are_refused_naming_the_project() -> None:
    with pytest.raises(InvalidValueError, match="either held or preemptible-only"):
        GrantStanding("pa", hold="spent", preemptible_only=True)
    with pytest.raises(InvalidValueError, match="pace must be a finite number >= 0"):
        GrantStanding("pa", pace=-1)
    with pytest.raises(UnknownReferenceError, match="project 'nope' does not exist"):
        two_projects().snapshot(standings=[GrantStanding("nope")])
    snap = two_projects().job("a1", project="pa").snapshot()
    with pytest.raises(UnknownReferenceError):
        snap.set_standings([GrantStanding("pa", hold=HOLD), GrantStanding("nope")])
    assert list(snap.pending) == ["a1"] and not snap.held and not snap.standings  # nothing moved


def test_stop_running_stops_the_held_projects_running_jobs_and_frees_their_gpus() -> None:
    snap = (two_projects(gpus=2)
            .running_job("ra", [("n0", (0, 1))], project="pa", preemptible=False)
            .job("b1", project="pb", gpus=2)
            .snapshot(standings=[GrantStanding("pa", hold=HOLD, stop_running=True)]))
    d = schedule(snap, 100.0)
    [p] = d.preemptions
    assert (p.job_id, p.by, p.reason.message) == ("ra", "", f"grant: stopped: {HOLD}")
    assert started(d) == ["b1"]  # on the GPUs the stopped job freed, in the same cycle
    snap.apply(d)
    assert list(snap.held) == ["ra"]  # it waits again, held with its project
    quiet = two_projects(gpus=2).running_job("ra", [("n0", (0, 1))], project="pa").snapshot(
        standings=[GrantStanding("pa", hold=HOLD)])
    assert not schedule(quiet, 100.0).preemptions  # without stop_running, running work is never touched
    with pytest.raises(InvalidValueError, match="stop_running needs a hold"):
        GrantStanding("pa", stop_running=True)
