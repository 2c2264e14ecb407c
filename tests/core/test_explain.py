"""Why jobs wait: reason codes and sentences, and the ``decisions.waiting`` / ``why`` contract."""

from __future__ import annotations

import pytest

from kumo.core import (
    DEFAULT_PROFILE,
    NodeState,
    Profile,
    Reason,
    Reject,
    Requeue,
    explain,
    schedule,
)
from kumo.core.explain import combine
from tests.core.builders import cluster

PLAIN = Profile(order="fifo", preemption=False, reclaim=False, backfill=False, heterogeneity=False)


def test_reason_renders_code_then_detail():
    r = explain.quota("needs 2 gpu.h200; queue q holds 8/8 gpu.h200")
    assert r == Reason("quota", "needs 2 gpu.h200; queue q holds 8/8 gpu.h200")
    assert r.message == str(r) == "quota: needs 2 gpu.h200; queue q holds 8/8 gpu.h200"


def test_combine_deduplicates_and_joins_codes():
    q1, q2 = explain.quota("a"), explain.quota("b")
    p = explain.placement("c")
    assert combine([q1, q1]) == q1
    assert combine([q1, q2]) == Reason("quota", "a; b")
    assert combine([q1, p, q2]) == Reason("placement+quota", "a; placement: c; b")


# --------------------------------------------------------------------------- quota


def test_quota_message_names_queue_usage_and_cohort():
    snap = (cluster().pool("japan-east", "h200", nodes=2)
            .cohort("geniac")
            .queue("nlp-lab", {"gpu.h200": 4}, cohort="geniac")
            .queue("vision", {"gpu.h200": 4}, cohort="geniac")
            .running_job("v", [("eh200-0", (0, 1, 2, 3))], queue="vision")
            .running_job("n", [("eh200-0", (4, 5, 6, 7))], queue="nlp-lab")
            .job("j", queue="nlp-lab", gpus=2)
            .snapshot())
    d = schedule(snap, 0.0, DEFAULT_PROFILE)
    assert d.started() == {} and d.preemptions == []
    reason = d.why("j")
    assert reason.code == "quota"
    assert str(reason) == ("quota: needs 2 gpu.h200; queue nlp-lab holds 4/4 gpu.h200 "
                           "and cohort geniac has no idle quota")


def test_quota_reasons_of_several_models_are_combined():
    snap = (cluster().pool("japan-east", "h100", nodes=1).pool("japan-east", "h200", nodes=1)
            .queue("q", {"gpu.h100": 2, "gpu.h200": 2})
            .running_job("a", [("eh100-0", (0,))])
            .running_job("b", [("eh200-0", (0,))])
            .job("j", gpus=2)
            .snapshot())
    d = schedule(snap, 0.0, PLAIN)
    assert d.why("j") == Reason("quota", "needs 2 gpu.h100; queue q holds 1/2 gpu.h100; "
                                         "needs 2 gpu.h200; queue q holds 1/2 gpu.h200")


def test_quota_and_placement_reasons_are_combined():
    # no h100 quota at all, and the h200 node has only 4 free GPUs
    snap = (cluster().pool("japan-east", "h100", nodes=1).pool("japan-east", "h200", nodes=1)
            .queue("q", {"gpu.h200": 16})
            .running_job("r", [("eh200-0", (0, 1, 2, 3))])
            .job("j", gpus=6)
            .snapshot())
    d = schedule(snap, 0.0, PLAIN)
    assert str(d.why("j")) == (
        "placement+quota: needs 6 gpu.h100; queue q holds 0/0 gpu.h100; "
        "placement: needs 6 h200 GPUs in japan-east; 4 free, the largest free node has 4")


def test_never_admissible_reason():
    snap = (cluster().pool("japan-east", "h200", nodes=2)
            .queue("q", {"gpu.h200": 4})
            .job("j", gpus=1, workers=5)
            .snapshot())
    d = schedule(snap, 0.0, PLAIN)
    assert str(d.why("j")) == ("quota: needs 5 gpu.h200 but queue q could hold at most 4 "
                               "even with its whole cohort idle")


# --------------------------------------------------------------------------- placement


def _busy():
    """eh200-0: 6 free, eh200-1: 4 free (10 in all)."""
    return (cluster().pool("japan-east", "h200", nodes=2)
            .queue("q", {"gpu.h200": 64})
            .running_job("r0", [("eh200-0", (0, 1))])
            .running_job("r1", [("eh200-1", (0, 1, 2, 3))]))


@pytest.mark.parametrize(("kw", "reason"), [
    ({"gpus": 7},
     "needs 7 h200 GPUs in japan-east; 10 free, the largest free node has 6"),
    ({"gpus": 8, "workers": 2},
     "needs 2 workers x 8 h200 GPUs in japan-east; 10 free, the largest free node has 6"),
    ({"gpus": 1, "workers": 11},
     "needs 11 h200 GPUs in japan-east; 10 free, the largest free node has 6"),
    ({"gpus": 4, "workers": 2, "topology": "node"},
     "needs 8 h200 GPUs in one node in japan-east; the largest free node has 6"),
])
def test_placement_reasons(kw, reason):
    d = schedule(_busy().job("j", **kw).snapshot(), 0.0, PLAIN)
    assert d.why("j") == Reason("placement", reason)


def test_slice_placement_reason():
    snap = (cluster().pool("japan-east", "h200", nodes=1, gpus=1)
            .queue("q", {"gpu.h200": 8})
            .running_job("r", [("eh200-0", (0,))], gpu_milli=900)
            .job("j", gpu_milli=142)
            .snapshot())
    d = schedule(snap, 0.0, PLAIN)
    assert str(d.why("j")) == ("placement: needs 1 slice of 0.142 h200 GPU in japan-east; "
                               "the roomiest GPU has 0.1 free")


# --------------------------------------------------------------------------- waiting / why


def _mixed():
    return (cluster().pool("japan-east", "h200", nodes=2)
            .queue("a", {"gpu.h200": 8}, programme="p1")
            .queue("b", {"gpu.h200": 16}, programme="p2")
            .job("a1", queue="a", gpus=4).job("a2", queue="a", gpus=4)
            .job("a3", queue="a", gpus=4).job("a4", queue="a", gpus=4)
            .job("b8", queue="b", gpus=8).job("b1", queue="b", gpus=1)
            .job("a_slice", queue="a", gpu_milli=500))


@pytest.mark.parametrize("profile", [PLAIN, DEFAULT_PROFILE], ids=["fifo", "default"])
def test_waiting_holds_exactly_the_jobs_that_did_not_start(profile):
    d = schedule(_mixed().snapshot(), 0.0, profile)
    started = set(d.started())
    assert started == {"a1", "a2", "b8"}
    assert set(d.waiting) == {"a3", "a4", "b1", "a_slice"}
    assert len(d.waiting) == 4
    assert started.isdisjoint(d.waiting)
    assert dict(d.waiting) == {j: d.why(j) for j in d.waiting}  # iteration and lookup agree
    for job_id in started:
        assert d.why(job_id) is None
        assert job_id not in d.waiting
    assert d.why("no-such-job") is None
    # jobs of one class share the reason of the first one that could not start
    assert d.why("a3") == d.why("a4") == Reason(
        "quota", "needs 4 gpu.h200; queue a holds 8/8 gpu.h200")
    assert d.why("a_slice") == Reason("quota", "needs 0.5 gpu.h200; queue a holds 8/8 gpu.h200")
    assert d.why("b1") == Reason(
        "placement", "needs 1 h200 GPUs in japan-east; 0 free, the largest free node has 0")


def test_nothing_waits_when_everything_starts():
    snap = (cluster().pool("japan-east", "h200", nodes=1).queue("q", {"gpu.h200": 8})
            .job("x", gpus=2).job("y", gpus=3).snapshot())
    d = schedule(snap, 0.0, PLAIN)
    assert set(d.started()) == {"x", "y"}
    assert len(d.waiting) == 0 and list(d.waiting) == []
    assert d.why("x") is None and d.why("y") is None


def test_rejected_jobs_are_not_waiting():
    snap = (cluster().pool("japan-east", "h200", nodes=2).queue("q", {"gpu.h200": 32})
            .job("huge", gpus=16).job("ok", gpus=8).job("late", gpus=8).job("later", gpus=8)
            .snapshot(unsatisfiable="reject"))
    d = schedule(snap, 0.0, PLAIN)
    assert d.rejects == [Reject("huge", Reason(
        "rejected", "needs 1 workers x 16 GPUs, more than any allowed pool could ever hold "
                    "(allowed: japan-east/h200)"))]
    assert set(d.started()) == {"ok", "late"}
    assert set(d.waiting) == {"later"}
    assert d.why("huge") is None


def test_jobs_on_a_down_node_are_requeued_with_a_reason():
    snap = (cluster().pool("japan-east", "h200", nodes=2)
            .queue("q", {"gpu.h200": 16})
            .running_job("r", [("eh200-0", (0, 1))])
            .job("j", gpus=8)
            .snapshot())
    snap.set_node_state("eh200-0", NodeState.DOWN)
    d = schedule(snap, 0.0, PLAIN)
    assert d.requeues == [Requeue("r", Reason("node-lost", "node eh200-0 is down"))]
    assert d.started()["j"].describe() == "1 node: eh200-1[0-7]"
    assert list(d.waiting) == []


def test_quota_reasons_show_usage_at_the_moment_each_class_was_refused() -> None:
    # x (16 GPUs) is refused while q holds 8/16; then a (4 GPUs) starts; y asks the same 16 as x
    # and is refused with q at 12/16 — equal requests share a reason only while usage is unchanged.
    snap = (cluster()
            .pool("japan-east", "h200", nodes=4, gpus=8, prefix="n")
            .queue("q", {"gpu.h200": 16})
            .running_job("r", [("n0", tuple(range(8)))], priority=50)
            .job("x", gpus=8, workers=2, priority=10)
            .job("a", gpus=4, priority=5)
            .job("y", gpus=8, workers=2, priority=0)
            .snapshot())
    d = schedule(snap, 0.0, Profile(order="priority", preemption=False, reclaim=False))
    assert [s.job_id for s in d.starts] == ["a"]
    assert d.why("x") == Reason("quota", "needs 16 gpu.h200; queue q holds 8/16 gpu.h200")
    assert d.why("y") == Reason("quota", "needs 16 gpu.h200; queue q holds 12/16 gpu.h200")


def test_classes_refused_alike_in_one_cycle_share_one_reason() -> None:
    # two priority bands, one request: while nothing starts in between, one reason serves both
    snap = (cluster()
            .pool("japan-east", "h200", nodes=3, gpus=8, prefix="n")
            .queue("q", {"gpu.h200": 16})
            .running_job("r", [("n0", tuple(range(8)))], priority=50)
            .job("hi", gpus=8, workers=2, priority=10)
            .job("lo", gpus=8, workers=2, priority=0)
            .snapshot())
    d = schedule(snap, 0.0, Profile(order="priority", preemption=False, reclaim=False))
    assert d.why("hi") == Reason("quota", "needs 16 gpu.h200; queue q holds 8/16 gpu.h200")
    assert d.why("hi") is d.why("lo")
