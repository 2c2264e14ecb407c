"""Preemption: who is stopped for whom, exactly (hand-checked scenarios)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from kumo.core import Decisions, Profile, schedule
from tests.core.builders import ClusterBuilder, cluster

PRIO = Profile(preemption_min_runtime_s=0, order="priority")


def victims(d: Decisions) -> list[str]:
    return sorted(p.job_id for p in d.preemptions)


def node(gpus: int = 4, nodes: int = 1) -> ClusterBuilder:
    """``nodes`` h200 nodes ``n0``.. of ``gpus`` GPUs and a queue ``q`` whose quota never binds."""
    return (cluster()
            .pool("japan-east", "h200", nodes=nodes, gpus=gpus, prefix="n")
            .queue("q", {"gpu.h200": 100}))


# --------------------------------------------------------------------------- priority


@pytest.mark.parametrize("order", ["fifo", "priority", "fair-share"])
def test_high_priority_job_preempts_low_one(order: str) -> None:
    snap = (node(4)
            .running_job("low", [("n0", (0, 1, 2, 3))], priority=0, start=0.0)
            .job("high", gpus=4, priority=10)
            .snapshot())
    d = schedule(snap, 100.0, Profile(preemption_min_runtime_s=0, order=order))
    assert len(d.preemptions) == 1
    p = d.preemptions[0]
    assert (p.job_id, p.by, p.reason.code) == ("low", "high", "preemption")
    assert p.work_lost_s == 100.0  # no checkpoints: everything since the start
    assert len(d.starts) == 1
    s = d.starts[0]
    assert (s.job_id, s.preempting, s.backfilled) == ("high", ("low",), False)
    assert [(w.node, w.gpus) for w in s.placement.workers] == [("n0", (0, 1, 2, 3))]


@pytest.mark.parametrize("prio", [0, -1])
def test_equal_or_lower_priority_does_not_preempt(prio: int) -> None:
    snap = (node(4)
            .running_job("low", [("n0", (0, 1, 2, 3))], priority=0)
            .job("high", gpus=4, priority=prio)
            .snapshot())
    d = schedule(snap, 100.0, PRIO)
    assert d.preemptions == [] and d.starts == []
    assert d.why("high").code == "placement"


def test_no_preemption_when_disabled() -> None:
    snap = (node(4)
            .running_job("low", [("n0", (0, 1, 2, 3))], priority=0)
            .job("high", gpus=4, priority=10)
            .snapshot())
    d = schedule(snap, 100.0, Profile(preemption_min_runtime_s=0, order="priority", preemption=False))
    assert d.preemptions == [] and d.starts == []


def test_priority_preemption_stays_in_queue_scope() -> None:
    # "low" runs in queue "other" (within its nominal quota, no cohort): out of "q"'s scope.
    snap = (cluster()
            .pool("japan-east", "h200", nodes=1, gpus=4, prefix="n")
            .queue("q", {"gpu.h200": 4})
            .queue("other", {"gpu.h200": 4})
            .running_job("low", [("n0", (0, 1, 2, 3))], queue="other", priority=0)
            .job("high", gpus=4, priority=10)
            .snapshot())
    assert schedule(snap, 100.0, PRIO).preemptions == []
    d = schedule(snap, 100.0, Profile(preemption_min_runtime_s=0, order="priority", preemption_scope="cluster"))
    assert [(p.job_id, p.by) for p in d.preemptions] == [("low", "high")]


def test_quota_blocked_job_preempts_lower_priority_job_of_its_queue() -> None:
    # Two 4-GPU nodes but queue q may hold only 4 GPUs: n1 is free, yet "high" must stop "low".
    snap = (cluster()
            .pool("japan-east", "h200", nodes=2, gpus=4, prefix="n")
            .queue("q", {"gpu.h200": 4})
            .running_job("low", [("n0", (0, 1, 2, 3))], priority=0)
            .job("high", gpus=4, priority=10)
            .snapshot())
    d = schedule(snap, 100.0, PRIO)
    assert [(p.job_id, p.by) for p in d.preemptions] == [("low", "high")]
    assert [(s.job_id, s.preempting) for s in d.starts] == [("high", ("low",))]


# --------------------------------------------------------------------------- non-preemptible


def test_non_preemptible_job_is_never_chosen() -> None:
    # pinned has the lowest priority but may not be stopped: the victim is "mid".
    snap = (node(4)
            .running_job("pinned", [("n0", (0, 1))], priority=0, preemptible=False)
            .running_job("mid", [("n0", (2, 3))], priority=1)
            .job("high", gpus=2, priority=10)
            .snapshot())
    d = schedule(snap, 100.0, PRIO)
    assert victims(d) == ["mid"]
    assert [(s.job_id, s.preempting) for s in d.starts] == [("high", ("mid",))]
    assert [w.gpus for w in d.starts[0].placement.workers] == [(2, 3)]


@pytest.mark.parametrize("pinned_kw", [{"preemptible": False}, {"priority": 20}])
def test_nothing_preempted_when_candidates_cannot_make_room(pinned_kw: dict[str, Any]) -> None:
    # Only "mid" may be stopped; its 2 GPUs are not enough for a 4-GPU job.
    snap = (node(4)
            .running_job("pinned", [("n0", (0, 1))], **pinned_kw)
            .running_job("mid", [("n0", (2, 3))], priority=1)
            .job("high", gpus=4, priority=10)
            .snapshot())
    d = schedule(snap, 100.0, PRIO)
    assert d.preemptions == [] and d.starts == []
    assert d.why("high").code == "placement"


def test_nothing_preempted_for_a_gang_that_still_would_not_fit() -> None:
    # Two 4-GPU nodes; only n0's job may be stopped; a 2 x 4 GPU gang needs both nodes.
    snap = (node(4, nodes=2)
            .running_job("low", [("n0", (0, 1, 2, 3))], priority=0)
            .running_job("top", [("n1", (0, 1, 2, 3))], priority=20)
            .job("gang", gpus=4, workers=2, priority=10)
            .snapshot())
    d = schedule(snap, 100.0, PRIO)
    assert d.preemptions == [] and d.starts == []


# --------------------------------------------------------------------------- victim choice

# Each case: running 1-GPU jobs on a 2-GPU node (GPU 0, then GPU 1), the victim of a
# 1-GPU priority-10 job at now=1000. Keys: priority, start, checkpoint_interval_s.
VICTIM_CASES = [
    pytest.param(
        [("a", 1, 0.0, None), ("b", 2, 900.0, None)], "a",
        id="lower-rank-first-even-if-more-work-lost",
    ),
    pytest.param(
        # a: 1000 s elapsed, checkpoint every 300 s -> 100 s lost; b: 500 s elapsed, 500 lost
        [("a", 0, 0.0, 300.0), ("b", 0, 500.0, None)], "a",
        id="least-work-lost-since-checkpoint",
    ),
    pytest.param(
        [("a", 0, 0.0, None), ("b", 0, 600.0, None)], "b",
        id="least-work-lost-without-checkpoints",
    ),
    pytest.param(
        # both checkpointed exactly now (0 s lost): the most recently started one
        [("a", 0, 0.0, 500.0), ("b", 0, 500.0, 250.0)], "b",
        id="tie-most-recently-started",
    ),
    pytest.param(
        [("b", 0, 500.0, 250.0), ("a", 0, 0.0, 500.0)], "b",
        id="tie-most-recently-started-other-placement",
    ),
]


@pytest.mark.parametrize(("running", "victim"), VICTIM_CASES)
def test_victim_choice(running: list[tuple[str, int, float, float | None]], victim: str) -> None:
    b = node(2)
    for gpu, (jid, prio, start, ckpt) in enumerate(running):
        b.running_job(jid, [("n0", (gpu,))], priority=prio, start=start, checkpoint_interval_s=ckpt)
    snap = b.job("new", priority=10).snapshot()
    d = schedule(snap, 1000.0, PRIO)
    assert victims(d) == [victim]
    assert [(s.job_id, s.preempting) for s in d.starts] == [("new", (victim,))]


def test_borrowers_are_stopped_first() -> None:
    # Cohort c: qa and qb have nominal 2 GPUs each on one 4-GPU node. qb runs 3 (borrows 1).
    # "a1" in qa started last (least work lost) but qa does not borrow: a qb job goes first;
    # among them b3 lost the least work (80 s).
    snap = (cluster()
            .pool("japan-east", "h200", nodes=1, gpus=4, prefix="n")
            .cohort("c")
            .queue("qa", {"gpu.h200": 2}, cohort="c")
            .queue("qb", {"gpu.h200": 2}, cohort="c")
            .running_job("b1", [("n0", (0,))], queue="qb", start=0.0)
            .running_job("b2", [("n0", (1,))], queue="qb", start=10.0)
            .running_job("b3", [("n0", (2,))], queue="qb", start=20.0)
            .running_job("a1", [("n0", (3,))], queue="qa", start=50.0)
            .job("h", queue="qa", priority=10)
            .snapshot())
    d = schedule(snap, 100.0, PRIO)
    assert victims(d) == ["b3"]
    assert [(s.job_id, s.preempting) for s in d.starts] == [("h", ("b3",))]
    assert d.starts[0].placement.workers[0].gpus == (2,)


def test_minimal_victim_set() -> None:
    # "small" (1 GPU, 10 s lost) is cheaper than "big" (3 GPUs x 100 s) and is tried first, but
    # a 3-GPU job needs big's GPUs anyway: small is given its place back.
    snap = (node(4)
            .running_job("small", [("n0", (0,))], start=90.0)
            .running_job("big", [("n0", (1, 2, 3))], start=0.0)
            .job("h", gpus=3, priority=10)
            .snapshot())
    d = schedule(snap, 100.0, PRIO)
    assert victims(d) == ["big"]
    assert [(s.job_id, s.preempting) for s in d.starts] == [("h", ("big",))]
    assert d.starts[0].placement.workers[0].gpus == (1, 2, 3)


def test_minimal_victim_set_takes_two_when_one_is_not_enough() -> None:
    # Four 1-GPU jobs; a 2-GPU job needs two victims: the two that lost the least work.
    b = node(4)
    for gpu, start in enumerate([0.0, 10.0, 20.0, 30.0]):
        b.running_job(f"r{gpu}", [("n0", (gpu,))], start=start)
    d = schedule(b.job("h", gpus=2, priority=10).snapshot(), 100.0, PRIO)
    assert victims(d) == ["r2", "r3"]
    assert sorted(d.starts[0].preempting) == ["r2", "r3"]
    assert d.starts[0].placement.workers[0].gpus == (2, 3)


def test_victims_of_one_start_are_not_reused_by_another() -> None:
    # Two waiting high jobs, one low victim: only the first high job starts.
    snap = (node(2)
            .running_job("low", [("n0", (0, 1))], gpus=2)
            .job("h1", gpus=2, priority=10)
            .job("h2", gpus=2, priority=10)
            .snapshot())
    d = schedule(snap, 100.0, PRIO)
    assert victims(d) == ["low"]
    assert [(s.job_id, s.preempting) for s in d.starts] == [("h1", ("low",))]
    assert list(d.waiting) == ["h2"]


# --------------------------------------------------------------------------- reclaim


def _reclaim(need: int, reclaim: bool = True) -> Decisions:
    # qa and qb: nominal 2 each in cohort c; qb runs 4 high-priority 1-GPU jobs (borrows 2).
    b = (cluster()
         .pool("japan-east", "h200", nodes=1, gpus=4, prefix="n")
         .cohort("c")
         .queue("qa", {"gpu.h200": 2}, cohort="c")
         .queue("qb", {"gpu.h200": 2}, cohort="c"))
    for gpu, start in enumerate([0.0, 10.0, 20.0, 30.0]):
        b.running_job(f"b{gpu}", [("n0", (gpu,))], queue="qb", start=start, priority=50)
    snap = b.job("a", queue="qa", gpus=need, priority=0).snapshot()
    return schedule(snap, 100.0, Profile(preemption_min_runtime_s=0, order="priority", reclaim=reclaim))


def test_reclaim_takes_back_borrowed_quota() -> None:
    d = _reclaim(2)
    # b2, b3 lost the least work (80 s, 70 s)
    assert victims(d) == ["b2", "b3"]
    assert all(p.by == "a" for p in d.preemptions)
    assert [s.job_id for s in d.starts] == ["a"]
    assert sorted(d.starts[0].preempting) == ["b2", "b3"]


def test_no_reclaim_when_disabled() -> None:
    d = _reclaim(2, reclaim=False)
    assert d.preemptions == [] and d.starts == []


def test_no_reclaim_beyond_nominal_quota() -> None:
    # qa would hold 3 > its nominal 2: it may not reclaim.
    d = _reclaim(3)
    assert d.preemptions == [] and d.starts == []
    assert d.why("a").code == "quota"


def test_reclaim_does_not_touch_queue_within_nominal() -> None:
    # Nominal 4 each on a 4-GPU node: qb holds exactly its nominal (not borrowing), so qa, though
    # under its own nominal quota, has nothing to reclaim; qb's low priority does not matter.
    snap = (cluster()
            .pool("japan-east", "h200", nodes=1, gpus=4, prefix="n")
            .cohort("c")
            .queue("qa", {"gpu.h200": 4}, cohort="c")
            .queue("qb", {"gpu.h200": 4}, cohort="c")
            .running_job("b0", [("n0", (0, 1, 2, 3))], queue="qb", priority=0)
            .job("a", queue="qa", gpus=2, priority=10)
            .snapshot())
    d = schedule(snap, 100.0, PRIO)
    assert d.preemptions == [] and d.starts == []
    assert d.why("a").code == "placement"


def test_reclaim_stops_borrowed_jobs_only_while_the_queue_still_borrows() -> None:
    # qb: nominal 2, runs 3 x 1 GPU (borrows 1). qa: nominal 2, wants one 2-GPU worker.
    # Cheapest first: b1 (70 s lost), b2 (80 s), b0 (100 s). After b1 stops, qb holds exactly
    # its nominal 2 GPUs and no longer borrows: b2 may not be reclaimed. Acceptable outcomes:
    # stopping b0 alone (frees n0 and leaves qb at its nominal), or nothing; never b1 + b2,
    # which would leave qb with 1 GPU, below its nominal quota.
    snap = (cluster()
            .pool("japan-east", "h200", nodes=2, gpus=2, prefix="n")
            .cohort("c")
            .queue("qa", {"gpu.h200": 2}, cohort="c")
            .queue("qb", {"gpu.h200": 2}, cohort="c")
            .running_job("b0", [("n0", (0,))], queue="qb", start=0.0)
            .running_job("b1", [("n1", (0,))], queue="qb", start=30.0)
            .running_job("b2", [("n1", (1,))], queue="qb", start=20.0)
            .job("a", queue="qa", gpus=2)
            .snapshot())
    d = schedule(snap, 100.0, PRIO)
    assert victims(d) in ([], ["b0"])
    assert 3 - len(d.preemptions) >= 2  # qb keeps its nominal quota


# --------------------------------------------------------------------------- apply


def test_apply_requeues_victim_with_attained_and_checkpointed_work() -> None:
    snap = (node(4)
            .running_job("low", [("n0", (0, 1, 2, 3))], start=0.0, checkpoint_interval_s=30.0,
                         attained_gpu_s=50.0, work_done_s=20.0)
            .job("high", gpus=4, priority=10)
            .snapshot())
    d = schedule(snap, 100.0, PRIO)
    # 100 s elapsed, last checkpoint at 90 s: 10 s lost
    assert [(p.job_id, p.work_lost_s) for p in d.preemptions] == [("low", 10.0)]
    snap.apply(d)
    assert "low" in snap.pending and "low" not in snap.running
    low = snap.pending["low"]
    assert low.attained_gpu_s == 50.0 + 4 * 100.0
    assert low.work_done_s == 20.0 + 90.0
    assert snap.running["high"].alloc.start_time == 100.0
    # next cycle: the requeued job waits behind the one that preempted it
    d2 = schedule(snap, 101.0, PRIO)
    assert d2.starts == [] and d2.preemptions == []
    assert list(d2.waiting) == ["low"]


@pytest.mark.parametrize(("kw", "last_checkpoint", "kept", "lost"), [
    ({}, None, 0.0, 100.0),  # no checkpoints: all 100 s are lost
    ({"checkpoint_interval_s": 30.0}, None, 90.0, 10.0),
    ({}, 75.0, 75.0, 25.0),  # an explicit last checkpoint
    ({"checkpoint_interval_s": 30.0}, 75.0, 75.0, 25.0),  # ... wins over the interval
    # twice as fast on h200: 90 s of wall time keep 180 reference-speed seconds
    ({"checkpoint_interval_s": 30.0, "speeds": {"h200": 2.0}}, None, 180.0, 10.0),
])
def test_apply_sets_work_done_to_last_checkpoint(kw: dict[str, Any], last_checkpoint: float | None,
                                                 kept: float, lost: float) -> None:
    b = node(4).running_job("low", [("n0", (0, 1, 2, 3))], start=0.0, **kw)
    b.running[-1] = dataclasses.replace(b.running[-1], last_checkpoint=last_checkpoint)
    snap = b.job("high", gpus=4, priority=10).snapshot()
    d = schedule(snap, 100.0, PRIO)
    assert [(p.job_id, p.work_lost_s) for p in d.preemptions] == [("low", lost)]
    snap.apply(d)
    assert snap.pending["low"].work_done_s == kept
    assert snap.pending["low"].attained_gpu_s == 400.0
