"""Quota admission: nominal quota, cohorts, borrowing and lending limits, hierarchical cohorts.

Expected numbers are worked out by hand from the formulas in ``kumo.core.quota``::

    SQ(x) = N(x) + sum(lendable(c))     lendable(c) = min(L(c), SQ(c)) or SQ(c)
    guaranteed(c) = SQ(c) - lendable(c)
    available(x) = max(0, g(x) - U(x)) + min(available(parent), borrow_room(x))
"""

from __future__ import annotations

import pytest

from kumo.core import Cohort, Profile, Queue, QuotaCycleError, UnknownReferenceError, schedule
from kumo.core.quota import INF, QuotaTree
from tests.core.builders import cluster, quota

# Quota is the only thing under test: no preemption, reclaim or backfill to muddy the outcome.
PLAIN = Profile(order="fifo", preemption=False, reclaim=False, backfill=False, heterogeneity=False)
K = 1000  # milli-GPUs (and millicores) per unit


def run(snap):
    d = schedule(snap, 0.0, PLAIN)
    return d, sorted(d.started()), {j: str(d.why(j)) for j in d.waiting}


# --------------------------------------------------------------------------- schedule()


def test_nominal_quota_without_cohort():
    snap = (cluster().pool("japan-east", "h200", nodes=2)
            .queue("q", {"gpu.h200": 10})
            .job("j1", gpus=4).job("j2", gpus=4).job("j3", gpus=4)
            .job("j4", gpus=2).job("j5", gpus=1)
            .snapshot())
    d, started, waiting = run(snap)
    assert started == ["j1", "j2", "j4"]
    assert waiting == {
        "j3": "quota: needs 4 gpu.h200; queue q holds 8/10 gpu.h200",
        "j5": "quota: needs 1 gpu.h200; queue q holds 10/10 gpu.h200",
    }
    assert d.started()["j1"].describe() == "1 node: eh200-0[0-3]"
    assert d.started()["j2"].describe() == "1 node: eh200-0[4-7]"
    assert d.started()["j4"].describe() == "1 node: eh200-1[0-1]"
    # the cycle works on a copy: the snapshot's usage is untouched
    assert snap.quota.usage[snap.quota.queue("q")]["gpu.h200"] == 0


def test_running_jobs_count_against_quota():
    snap = (cluster().pool("japan-east", "h200", nodes=2)
            .queue("q", {"gpu.h200": 8})
            .running_job("r", [("eh200-0", (0, 1, 2, 3, 4, 5))])
            .job("big", gpus=3).job("small", gpus=2)
            .snapshot())
    _, started, waiting = run(snap)
    assert started == ["small"]
    assert waiting == {"big": "quota: needs 3 gpu.h200; queue q holds 6/8 gpu.h200"}


def test_borrowing_idle_quota_from_cohort():
    snap = (cluster().pool("japan-east", "h200", nodes=2)
            .cohort("c")
            .queue("a", {"gpu.h200": 4}, cohort="c")
            .queue("b", {"gpu.h200": 4}, cohort="c")
            .job("a6", queue="a", gpus=6).job("a3", queue="a", gpus=3)
            .job("b2", queue="b", gpus=2).job("b1", queue="b", gpus=1)
            .snapshot())
    _, started, waiting = run(snap)
    # a borrows 2 of b's idle quota; b's nominal is lendable (no lending limit), so b is short
    assert started == ["a6", "b2"]
    assert waiting == {
        "a3": "quota: needs 3 gpu.h200; queue a holds 6/4 gpu.h200 and cohort c has 2 idle",
        "b1": "quota: needs 1 gpu.h200; queue b holds 2/4 gpu.h200 and cohort c has no idle quota",
    }


def test_borrowing_limit_caps_borrowing():
    snap = (cluster().pool("japan-east", "h200", nodes=1)
            .cohort("c")
            .queue("a", {"gpu.h200": quota(2, borrowing_limit=1)}, cohort="c")
            .queue("b", {"gpu.h200": 4}, cohort="c")
            .job("a1", queue="a").job("a2", queue="a").job("a3", queue="a").job("a4", queue="a")
            .job("b3", queue="b", gpus=3)
            .snapshot())
    _, started, waiting = run(snap)
    assert started == ["a1", "a2", "a3", "b3"]
    assert waiting == {
        "a4": "quota: needs 1 gpu.h200; queue a holds 3/2 gpu.h200 and may borrow at most 1",
    }


def test_borrowing_limit_is_named_when_the_request_crosses_it():
    snap = (cluster().pool("japan-east", "h200", nodes=1)
            .cohort("c")
            .queue("a", {"gpu.h200": quota(2, borrowing_limit=1)}, cohort="c")
            .queue("b", {"gpu.h200": 4}, cohort="c")
            .job("a2", queue="a", gpus=2).job("a2b", queue="a", gpus=2)
            .snapshot())
    _, started, waiting = run(snap)
    assert started == ["a2"]
    # actual: '... queue a holds 2/2 gpu.h200 and cohort c has 4 idle' (4 idle, yet 2 won't fit)
    assert waiting == {
        "a2b": "quota: needs 2 gpu.h200; queue a holds 2/2 gpu.h200 and may borrow at most 1",
    }


@pytest.mark.parametrize(("lending_limit", "started", "waiting"), [
    (1, ["a1", "a2", "a3", "b1"], {
        "b2": "quota: needs 1 gpu.h200; queue b holds 1/0 gpu.h200 and cohort c has no idle quota",
        "a4": "quota: needs 1 gpu.h200; queue a holds 3/4 gpu.h200 and cohort c has no idle quota",
    }),
    (None, ["a1", "a2", "b1", "b2"], {
        "a3": "quota: needs 1 gpu.h200; queue a holds 2/4 gpu.h200 and cohort c has no idle quota",
        "a4": "quota: needs 1 gpu.h200; queue a holds 2/4 gpu.h200 and cohort c has no idle quota",
    }),
])
def test_lending_limit_keeps_part_of_nominal_from_being_lent(lending_limit, started, waiting):
    # b has no quota of its own: everything it uses is lent by a (at most lending_limit)
    snap = (cluster().pool("japan-east", "h200", nodes=1)
            .cohort("c")
            .queue("a", {"gpu.h200": quota(4, lending_limit=lending_limit)}, cohort="c")
            .queue("b", {}, cohort="c")
            .job("b1", queue="b").job("b2", queue="b")
            .job("a1", queue="a").job("a2", queue="a").job("a3", queue="a").job("a4", queue="a")
            .snapshot())
    _, got_started, got_waiting = run(snap)
    assert got_started == started
    assert got_waiting == waiting


def test_hierarchical_cohort_borrows_through_parent():
    # org: N=4; lab (child of org): no quota; a in lab: N=2; x in org: N=2  ->  SQ(org) = 8
    snap = (cluster().pool("japan-east", "h200", nodes=2)
            .cohort("org", {"gpu.h200": 4})
            .cohort("lab", parent="org")
            .queue("a", {"gpu.h200": 2}, cohort="lab")
            .queue("x", {"gpu.h200": 2}, cohort="org")
            .job("a7", queue="a", gpus=7).job("x1", queue="x", gpus=1)
            .job("a1", queue="a", gpus=1).job("x1b", queue="x", gpus=1)
            .snapshot())
    _, started, waiting = run(snap)
    assert started == ["a7", "x1"]
    assert waiting == {
        "a1": "quota: needs 1 gpu.h200; queue a holds 7/2 gpu.h200"
              " and cohort lab has no idle quota",
        "x1b": "quota: needs 1 gpu.h200; queue x holds 1/2 gpu.h200"
               " and cohort org has no idle quota",
    }


def test_cohort_with_own_nominal_and_no_lending():
    # lab: N=4, L=0 -> guaranteed to lab's queues, never lent to x; SQ(org) = 4 (x's only)
    snap = (cluster().pool("japan-east", "h200", nodes=2)
            .cohort("org")
            .cohort("lab", {"gpu.h200": quota(4, lending_limit=0)}, parent="org")
            .queue("a", {}, cohort="lab")
            .queue("x", {"gpu.h200": 4}, cohort="org")
            .job("x4", queue="x", gpus=4).job("a4", queue="a", gpus=4)
            .job("a1", queue="a", gpus=1).job("x1", queue="x", gpus=1)
            .job("x5", queue="x", gpus=5)
            .snapshot())
    _, started, waiting = run(snap)
    assert started == ["a4", "x4"]
    assert waiting == {
        "a1": "quota: needs 1 gpu.h200; queue a holds 4/0 gpu.h200"
              " and cohort lab has no idle quota",
        "x1": "quota: needs 1 gpu.h200; queue x holds 4/4 gpu.h200"
              " and cohort org has no idle quota",
        "x5": "quota: needs 5 gpu.h200 but queue x could hold at most 4 "
              "even with its whole cohort idle",
    }


def test_cpu_and_mem_quota_only_enforced_where_listed():
    snap = (cluster().pool("japan-east", "h200", nodes=1)
            .cohort("c")
            .queue("a", {"gpu.h200": 8, "cpu": 4}, cohort="c")
            .queue("b", {"gpu.h200": 8}, cohort="c")
            .queue("z", {"gpu.h200": 8})
            .job("a_cpu3", queue="a", cpu_milli=3000)
            .job("b_cpu2", queue="b", cpu_milli=2000)
            .job("z_cpu64", queue="z", cpu_milli=64000)
            .job("z_mem", queue="z", mem_mib=10**6)
            .job("a_mem", queue="a", mem_mib=10**6)
            .job("a_cpu5", queue="a", cpu_milli=5000)
            .snapshot())
    _, started, waiting = run(snap)
    # cpu is listed in c's tree (b may only borrow a's 4 cores); mem nowhere; z's tree lists neither
    assert started == ["a_cpu3", "a_mem", "z_cpu64", "z_mem"]
    assert waiting == {
        "b_cpu2": "quota: needs 2 cpu; queue b holds 0/0 cpu and cohort c has 1 idle",
        "a_cpu5": "quota: needs 5 cpu but queue a could hold at most 4"
                  " even with its whole cohort idle",
    }


def test_gpu_flavor_without_quota():
    snap = (cluster().pool("japan-east", "h100", nodes=1).pool("japan-east", "h200", nodes=1)
            .queue("q", {"gpu.h200": 8})
            .job("anywhere", gpus=2)
            .job("h100_only", gpus=2, gpu_models=("h100",))
            .snapshot())
    d, started, waiting = run(snap)
    assert started == ["anywhere"]
    assert d.started()["anywhere"].model == "h200"  # h100 is tried first but has no quota
    assert d.started()["anywhere"].describe() == "1 node: eh200-0[0-1]"
    assert waiting == {
        "h100_only": "quota: needs 2 gpu.h100 but queue q could hold at most 0 "
                     "even with its whole cohort idle",
    }


@pytest.mark.parametrize(("queues", "job_kw", "expected"), [
    ({"a": {"gpu.h200": 4}, "b": {"gpu.h200": 4}}, {"workers": 9},
     "needs 9 gpu.h200 but queue a could hold at most 8"),
    ({"a": {"gpu.h200": quota(4, borrowing_limit=2)}, "b": {"gpu.h200": 4}}, {"workers": 7},
     "needs 7 gpu.h200 but queue a could hold at most 6"),
    ({"a": {"gpu.h200": 4}, "b": {"gpu.h200": quota(4, lending_limit=1)}}, {"workers": 6},
     "needs 6 gpu.h200 but queue a could hold at most 5"),
    ({"a": {"gpu.h200": 0.1}, "b": {}}, {"gpu_milli": 142},
     "needs 0.142 gpu.h200 but queue a could hold at most 0.1"),
])
def test_job_larger_than_queue_could_ever_hold(queues, job_kw, expected):
    b = cluster().pool("japan-east", "h200", nodes=2).cohort("c")
    for name, q in queues.items():
        b.queue(name, q, cohort="c")
    # a running job elsewhere in the cohort does not matter: "ever" means with the cohort idle
    if queues["b"]:
        b.running_job("rb", [("eh200-1", (0,))], queue="b")
    snap = b.job("big", queue="a", **job_kw).snapshot()
    _, started, waiting = run(snap)
    assert started == []
    assert waiting == {"big": f"quota: {expected} even with its whole cohort idle"}


# --------------------------------------------------------------------------- QuotaTree


def _tree():
    """org (N=4) <- lab (N=8, L=2) <- a (N=6, B=3, L=4), b (N=2);  org <- c (N=4, L=0)."""
    cohorts = [Cohort("org", quota={"gpu.h200": 4}),
               Cohort("lab", parent="org", quota={"gpu.h200": quota(8, lending_limit=2)})]
    queues = [Queue("a", {"gpu.h200": quota(6, borrowing_limit=3, lending_limit=4)}, cohort="lab"),
              Queue("b", {"gpu.h200": 2}, cohort="lab"),
              Queue("c", {"gpu.h200": quota(4, lending_limit=0)}, cohort="org")]
    return QuotaTree(queues, cohorts, {"gpu.h200", "gpu.h100", "cpu", "mem"})


def _avail(t):
    ids = {"org": t.index[(True, "org")], "lab": t.index[(True, "lab")],
           **{q: t.queue(q) for q in "abc"}}
    return {name: t.available(i, "gpu.h200") // K for name, i in ids.items()}


def test_tree_subtree_and_guaranteed_quota():
    t = _tree()
    sq = {t.names[i]: t.subtree[i]["gpu.h200"] // K for i in range(len(t.names))}
    g = {t.names[i]: t.guaranteed[i]["gpu.h200"] // K for i in range(len(t.names))}
    assert sq == {"org": 6, "lab": 14, "a": 6, "b": 2, "c": 4}
    assert g == {"org": 0, "lab": 12, "a": 2, "b": 0, "c": 4}


def test_tree_available_and_potential_when_idle():
    t = _tree()
    assert _avail(t) == {"org": 6, "lab": 18, "a": 9, "b": 18, "c": 10}
    assert t.potential(t.queue("a"), "gpu.h200") == 9 * K
    assert t.available(t.queue("a"), "gpu.h100") == 0  # GPU flavor nobody lists: zero
    assert t.available(t.queue("a"), "cpu") == INF  # cpu/mem nobody lists: unmanaged
    assert t.available(t.queue("c"), "mem") == INF


def test_tree_add_propagates_only_above_guaranteed_and_sign_minus_one_restores():
    t = _tree()
    a, b, c = t.queue("a"), t.queue("b"), t.queue("c")
    org, lab = t.index[(True, "org")], t.index[(True, "lab")]

    def usage():
        return [t.usage[i]["gpu.h200"] // K for i in (org, lab, a, b, c)]

    t.add(a, {"gpu.h200": 5 * K})
    assert usage() == [0, 3, 5, 0, 0]
    assert _avail(t) == {"org": 6, "lab": 15, "a": 4, "b": 15, "c": 10}
    assert t.potential(a, "gpu.h200") == 9 * K  # potential ignores usage ...
    assert t.usage[a]["gpu.h200"] == 5 * K  # ... and leaves it in place

    t.add(b, {"gpu.h200": 12 * K})
    assert usage() == [3, 15, 5, 12, 0]
    assert _avail(t) == {"org": 3, "lab": 3, "a": 3, "b": 3, "c": 7}
    assert t.borrowing(b, "gpu.h200") and not t.borrowing(a, "gpu.h200")
    assert t.describe(b, "gpu.h200") == "queue b holds 12/2 gpu.h200 and cohort lab has 3 idle"
    assert t.fits(a, {"gpu.h200": 4 * K}) == "gpu.h200"
    assert t.fits(a, {"gpu.h200": 3 * K, "cpu": 10**9}) is None

    t.add(c, {"gpu.h200": 7 * K})
    assert usage() == [6, 15, 5, 12, 7]
    assert _avail(t) == {"org": 0, "lab": 0, "a": 0, "b": 0, "c": 0}
    assert t.describe(a, "gpu.h200") == (
        "queue a holds 5/6 gpu.h200 and cohort lab has no idle quota")

    t.add(b, {"gpu.h200": 12 * K}, sign=-1)
    assert usage() == [3, 3, 5, 0, 7]
    assert _avail(t)["b"] == 12  # lab: (12 - 3) + org's 3 idle

    t.add(c, {"gpu.h200": 7 * K}, -1)
    t.add(a, {"gpu.h200": 5 * K}, -1)
    assert usage() == [0, 0, 0, 0, 0]
    assert _avail(t) == {"org": 6, "lab": 18, "a": 9, "b": 18, "c": 10}


def test_tree_clone_has_private_usage():
    t = _tree()
    copy = t.clone()
    copy.add(t.queue("b"), {"gpu.h200": 3 * K})
    assert t.usage[t.queue("b")]["gpu.h200"] == 0
    assert copy.usage[t.queue("b")]["gpu.h200"] == 3 * K


def test_tree_rejects_cycles_and_unknown_cohorts():
    with pytest.raises(QuotaCycleError):
        QuotaTree([], [Cohort("x", parent="y"), Cohort("y", parent="x")], {"gpu.h200"})
    with pytest.raises(UnknownReferenceError, match="cohort 'nope' does not exist"):
        QuotaTree([Queue("q", cohort="nope")], [], {"gpu.h200"})
