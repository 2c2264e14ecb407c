"""Order policies: which waiting jobs start, in what order (hand-checked scenarios)."""

from __future__ import annotations

import pytest

from kumo.core import (
    ConfigError,
    Decisions,
    FairShareParams,
    LASParams,
    Profile,
    UsageSample,
    schedule,
)
from tests.core.builders import ClusterBuilder, cluster

HOUR = 3600.0


def started(d: Decisions) -> list[str]:
    return [s.job_id for s in d.starts]


def one_node(gpus: int, quota: float | None = None) -> ClusterBuilder:
    """One h200 node ``n0`` with ``gpus`` GPUs and one queue ``q`` that may use all of them."""
    return (cluster()
            .pool("japan-east", "h200", nodes=1, gpus=gpus, prefix="n")
            .queue("q", {"gpu.h200": quota if quota is not None else gpus}))


# --------------------------------------------------------------------------- profile validation


@pytest.mark.parametrize("kw", [
    {"order": "lottery"},
    {"order": "FIFO"},
    {"order": ""},
    {"preemption_scope": "programme"},
    {"preemption_scope": "Queue"},
    {"preemption_scope": ""},
])
def test_profile_rejects_unknown_names(kw: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        Profile(**kw)


@pytest.mark.parametrize("order", ["fifo", "priority", "fair-share", "las", "srtf"])
@pytest.mark.parametrize("scope", ["queue", "cohort", "cluster"])
def test_profile_accepts_every_documented_name(order: str, scope: str) -> None:
    p = Profile(order=order, preemption_scope=scope)
    assert (p.order, p.preemption_scope) == (order, scope)


# --------------------------------------------------------------------------- FIFO and priority


def _prio_snapshot():
    # Submitted in this order; 2 GPUs for three 1-GPU jobs.
    return (one_node(2, quota=8)
            .job("low", priority=0)
            .job("mid", priority=5)
            .job("high", priority=10)
            .snapshot())


@pytest.mark.parametrize(("order", "expected", "left"), [
    ("fifo", ["low", "mid"], "high"),  # submit order, priority ignored
    ("priority", ["high", "mid"], "low"),  # highest priority first
])
def test_fifo_and_priority_order(order: str, expected: list[str], left: str) -> None:
    d = schedule(_prio_snapshot(), 0.0, Profile(order=order))
    assert started(d) == expected
    assert list(d.waiting) == [left]
    assert d.why(left).code == "placement"
    assert d.preemptions == []


def test_priority_ties_broken_by_submit_time() -> None:
    snap = (one_node(2)
            .job("first", priority=3)
            .job("second", priority=7)
            .job("third", priority=3)
            .job("fourth", priority=7)
            .snapshot())
    assert started(schedule(snap, 0.0, Profile(order="priority"))) == ["second", "fourth"]
    assert started(schedule(snap, 0.0, Profile(order="fifo"))) == ["first", "second"]


def test_fifo_keeps_submit_order_across_shapes() -> None:
    # A 2-GPU job between two 1-GPU jobs: FIFO tries it second, so it starts before "c".
    snap = (one_node(3)
            .job("a", gpus=1, submit_time=0.0)
            .job("b", gpus=2, submit_time=1.0)
            .job("c", gpus=1, submit_time=2.0)
            .snapshot())
    d = schedule(snap, 0.0, Profile(order="fifo"))
    assert started(d) == ["a", "b"]
    assert list(d.waiting) == ["c"]


# --------------------------------------------------------------------------- fair share


def test_fair_share_project_weights_1_and_3() -> None:
    # 4 GPUs, capacity 4000 milli. Shares (usage / 4000 / weight):
    # pa 0 = pb 0 -> pa by name: a1 (pa 0.25); pb 0 -> b1 (pb 1/12); pb -> b2 (1/6); pb -> b3 (1/4);
    # the node is full.
    snap = (one_node(4)
            .project("pa", weight=1)
            .project("pb", weight=3)
            .job("a1", project="pa").job("a2", project="pa").job("a3", project="pa")
            .job("b1", project="pb").job("b2", project="pb").job("b3", project="pb")
            .job("b4", project="pb")
            .snapshot())
    d = schedule(snap, 0.0, Profile(order="fair-share"))
    assert started(d) == ["a1", "b1", "b2", "b3"]
    assert sorted(d.waiting) == ["a2", "a3", "b4"]


def test_fair_share_counts_running_jobs() -> None:
    # pb already runs 2 GPUs (share 0.5 / 3 = 1/6); 2 GPUs are free.
    # pa 0 -> a1 (0.25); pb 1/6 -> b1 (0.75 / 3 = 0.25); the node is full.
    snap = (one_node(4)
            .project("pa", weight=1)
            .project("pb", weight=3)
            .running_job("rb", [("n0", (0, 1))], queue="q", project="pb")
            .job("a1", project="pa").job("a2", project="pa")
            .job("b1", project="pb").job("b2", project="pb")
            .snapshot())
    assert started(schedule(snap, 0.0, Profile(order="fair-share"))) == ["a1", "b1"]


def test_fair_share_within_project_by_priority_then_submit() -> None:
    snap = (one_node(2)
            .project("pa")
            .job("x", project="pa", priority=0)
            .job("y", project="pa", priority=9)
            .job("z", project="pa", priority=9)
            .snapshot())
    assert started(schedule(snap, 0.0, Profile(order="fair-share"))) == ["y", "z"]


NOW = 100 * HOUR
FS = FairShareParams(half_life_s=HOUR)


@pytest.mark.parametrize(("usage", "params", "expected"), [
    # no history: pa by name first, then alternate
    ([], FS, ["a1", "b1"]),
    # pa used a lot just now: pb goes first and takes both GPUs
    ([UsageSample("pa", "gpu.h200", 1e9, NOW)], FS, ["b1", "b2"]),
    # the same usage 30 half-lives ago has decayed to ~1 milli-GPU-second: pa is fresh again,
    # and pb's moderate recent usage (1e6 * ln2 / 3600 = 192.5 milli-GPU) puts it behind pa
    ([UsageSample("pa", "gpu.h200", 1e9, NOW - 30 * HOUR), UsageSample("pb", "gpu.h200", 1e6, NOW)],
     FS, ["a1", "b1"]),
    # pb's recent usage alone puts pa first: a1 (0.5), then pb (0.096) b1 (0.596), pa a2 blocked
    ([UsageSample("pb", "gpu.h200", 1e6, NOW)], FS, ["a1", "b1"]),
    # heavy recent pb usage: pa takes both GPUs
    ([UsageSample("pb", "gpu.h200", 1e9, NOW - HOUR)], FS, ["a1", "a2"]),
    # history_weight=0: past usage is ignored
    ([UsageSample("pa", "gpu.h200", 1e9, NOW)], FairShareParams(half_life_s=HOUR, history_weight=0),
     ["a1", "b1"]),
])
def test_fair_share_past_usage_decays(usage: list[UsageSample], params: FairShareParams,
                                      expected: list[str]) -> None:
    snap = (one_node(2)
            .project("pa")
            .project("pb")
            .job("a1", project="pa").job("a2", project="pa")
            .job("b1", project="pb").job("b2", project="pb")
            .snapshot(usage=usage))
    assert started(schedule(snap, NOW, Profile(order="fair-share", fair_share=params))) == expected


def test_fair_share_half_life_decides_who_goes_first() -> None:
    # Same samples, two half-lives. pa used 100x more than pb, but 10 hours earlier.
    usage = [UsageSample("pa", "gpu.h200", 1e8, NOW - 10 * HOUR),
             UsageSample("pb", "gpu.h200", 1e6, NOW)]

    def first(half_life: float) -> str:
        snap = (one_node(1)
                .project("pa").project("pb")
                .job("a1", project="pa").job("b1", project="pb")
                .snapshot(usage=usage))
        p = Profile(order="fair-share", fair_share=FairShareParams(half_life_s=half_life))
        return started(schedule(snap, NOW, p))[0]

    # half-life 1 h: pa's usage decays by 2^-10 = 1/1024 < 1/100 -> pa is lighter
    assert first(HOUR) == "a1"
    # half-life 10 h: pa's usage decays by 1/2 only -> pb is lighter
    assert first(10 * HOUR) == "b1"


def test_fair_share_programme_weights_before_project_weights() -> None:
    # Programme ga (weight 1) holds project a (weight 100); gb (weight 3) holds b (weight 1).
    # Programmes are compared first: ga 0 = gb 0 -> ga by name: a1 (ga 0.25);
    # gb 0 -> b1 (1/12) -> b2 (1/6) -> b3 (1/4); full. A flat project-level comparison would
    # have given a1, a2, a3, a4 (a's weight is 100).
    b = (one_node(4)
         .project("a", programme="ga", weight=100, programme_weight=1)
         .project("b", programme="gb", weight=1, programme_weight=3))
    for i in range(1, 5):
        b.job(f"a{i}", project="a")
    for i in range(1, 5):
        b.job(f"b{i}", project="b")
    snap = b.snapshot()
    assert started(schedule(snap, 0.0, Profile(order="fair-share"))) == ["a1", "b1", "b2", "b3"]


def test_fair_share_projects_within_a_programme_share_its_turns() -> None:
    # Programmes ga (projects a, c) and gb (project b), equal weights, 4 GPUs.
    # ga 0 = gb 0 -> ga; in ga, a 0 = c 0 -> a: a1 (ga 0.25, a 0.25)
    # gb 0 -> b1 (gb 0.25); ga 0.25 = gb 0.25 -> ga; in ga c 0 -> c1 (ga 0.5)
    # gb 0.25 -> b2 (gb 0.5); full.
    snap = (one_node(4)
            .project("a", programme="ga").project("c", programme="ga")
            .project("b", programme="gb")
            .job("a1", project="a").job("a2", project="a")
            .job("c1", project="c").job("c2", project="c")
            .job("b1", project="b").job("b2", project="b").job("b3", project="b")
            .snapshot())
    assert started(schedule(snap, 0.0, Profile(order="fair-share"))) == ["a1", "b1", "c1", "b2"]


# --------------------------------------------------------------------------- LAS


def test_las_fresh_jobs_before_one_past_the_first_threshold() -> None:
    snap = (one_node(2)
            .job("old", attained_gpu_s=5000.0)  # above 3600: LAS queue 1
            .job("f1")
            .job("f2")
            .snapshot())
    d = schedule(snap, 0.0, Profile(order="las"))
    assert started(d) == ["f1", "f2"]
    assert list(d.waiting) == ["old"]
    # FIFO would have started the old one first
    assert started(schedule(snap, 0.0, Profile(order="fifo"))) == ["old", "f1"]


def test_las_custom_thresholds_and_priority_first() -> None:
    las = LASParams(thresholds_gpu_s=(100.0, 1000.0))
    snap = (one_node(3)
            .job("q2", attained_gpu_s=2000.0)
            .job("q1", attained_gpu_s=500.0)
            .job("q0", attained_gpu_s=50.0)
            .job("vip", attained_gpu_s=5000.0, priority=1)
            .snapshot())
    assert started(schedule(snap, 0.0, Profile(order="las", las=las))) == ["vip", "q0", "q1"]


def _las_preemption_snapshot(scope_queue: str):
    # One 1-GPU node. "r" runs since t=0 in queue q2 (within its nominal quota: not borrowing);
    # "f" waits in ``scope_queue``.
    return (cluster()
            .pool("japan-east", "h200", nodes=1, gpus=1, prefix="n")
            .cohort("c")
            .queue("q1", {"gpu.h200": 1}, cohort="c")
            .queue("q2", {"gpu.h200": 1}, cohort="c")
            .running_job("r", [("n0", (0,))], queue="q2", start=0.0)
            .job("f", queue=scope_queue)
            .snapshot())


@pytest.mark.parametrize(("now", "queue", "scope", "preempted"), [
    (5000.0, "q2", "queue", True),  # r attained 5000 > 3600: queue 1 < f's queue 0
    (3000.0, "q2", "queue", False),  # r attained 3000: same LAS queue as f
    (5000.0, "q1", "queue", False),  # r is in another queue: out of scope
    (5000.0, "q1", "cohort", True),
    (5000.0, "q1", "cluster", True),
])
def test_las_fresh_job_preempts_long_running_one(now: float, queue: str, scope: str,
                                                  preempted: bool) -> None:
    snap = _las_preemption_snapshot(queue)
    d = schedule(snap, now, Profile(order="las", preemption_scope=scope))
    if preempted:
        assert [(p.job_id, p.by) for p in d.preemptions] == [("r", "f")]
        assert [(s.job_id, s.preempting) for s in d.starts] == [("f", ("r",))]
    else:
        assert d.preemptions == []
        assert d.starts == []
        assert d.why("f").code == "placement"


def test_las_no_preemption_when_disabled() -> None:
    snap = _las_preemption_snapshot("q2")
    d = schedule(snap, 5000.0, Profile(order="las", preemption=False))
    assert d.preemptions == [] and d.starts == []


# --------------------------------------------------------------------------- SRTF


@pytest.mark.parametrize(("jobs", "expected"), [
    # shorter estimate first
    ({"long": {"walltime_estimate_s": 7200.0}, "short": {"walltime_estimate_s": 600.0},
      "mid": {"walltime_estimate_s": 3600.0}}, ["short", "mid"]),
    # work already done counts: 7200 - 7000 = 200 s left
    ({"long": {"walltime_estimate_s": 7200.0, "work_done_s": 7000.0},
      "short": {"walltime_estimate_s": 600.0}, "mid": {"walltime_estimate_s": 3600.0}},
     ["long", "short"]),
    # the limit stands in for a missing estimate; jobs with neither go last
    ({"none": {}, "limit": {"walltime_limit_s": 1800.0}, "mid": {"walltime_estimate_s": 3600.0}},
     ["limit", "mid"]),
    # the estimate wins over the limit
    ({"a": {"walltime_estimate_s": 3000.0, "walltime_limit_s": 100.0},
      "b": {"walltime_estimate_s": 2000.0, "walltime_limit_s": 9000.0},
      "c": {"walltime_estimate_s": 2500.0}}, ["b", "c"]),
    # equal remaining time: submit order
    ({"x": {"walltime_estimate_s": 600.0}, "y": {"walltime_estimate_s": 600.0},
      "z": {"walltime_estimate_s": 600.0}}, ["x", "y"]),
])
def test_srtf_order(jobs: dict[str, dict[str, float]], expected: list[str]) -> None:
    b = one_node(2)
    for jid, kw in jobs.items():
        b.job(jid, **kw)
    d = schedule(b.snapshot(), 0.0, Profile(order="srtf"))
    assert started(d) == expected
    assert sorted(d.waiting) == sorted(set(jobs) - set(expected))


def test_srtf_short_job_preempts_one_at_least_a_bucket_longer() -> None:
    # r: estimate 4 h, running 1 h -> 3 h left (bucket floor(log2(180)) = 7);
    # s: 10 min (bucket 3) preempts it; t: 2.5 h (bucket 7) would not.
    def snap(est: float):
        return (one_node(1)
                .running_job("r", [("n0", (0,))], start=0.0, walltime_estimate_s=4 * HOUR)
                .job("s", walltime_estimate_s=est)
                .snapshot())

    d = schedule(snap(600.0), HOUR, Profile(order="srtf"))
    assert [(p.job_id, p.by) for p in d.preemptions] == [("r", "s")]
    assert started(d) == ["s"]
    d = schedule(snap(2.5 * HOUR), HOUR, Profile(order="srtf"))
    assert d.preemptions == [] and d.starts == []
