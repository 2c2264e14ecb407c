"""EASY backfill: reservations with exact start times and nodes (hand-checked scenarios).

Unless a test says otherwise: two 4-GPU h200 nodes n0, n1 in japan-east; at now=100
- r0 holds n0 GPUs 0-1 since t=40 with a 1000 s estimate (ends at 1040);
- r1 holds n1 GPUs 0-2 since t=0 with a 3000 s estimate (ends at 3000);
so n0 has 2 free GPUs and n1 one. "big" (4 GPUs on one node, submitted first) cannot start; its
reservation is n0 at 1040.
"""

from __future__ import annotations

from typing import Any

import pytest

from kumo.core import Decisions, Profile, Reservation, schedule
from tests.core.builders import ClusterBuilder, cluster

NOW = 100.0
POOL = "japan-east/h200"
FIFO = Profile(order="fifo")


def base(r0: dict[str, Any] | None = None, r1: dict[str, Any] | None = None) -> ClusterBuilder:
    r0 = {"start": 40.0, "walltime_estimate_s": 1000.0} if r0 is None else r0
    r1 = {"start": 0.0, "walltime_estimate_s": 3000.0} if r1 is None else r1
    return (cluster()
            .pool("japan-east", "h200", nodes=2, gpus=4, prefix="n")
            .queue("q", {"gpu.h200": 100})
            .running_job("r0", [("n0", (0, 1))], **r0)
            .running_job("r1", [("n1", (0, 1, 2))], **r1)
            .job("big", gpus=4))


def where(d: Decisions, job_id: str) -> list[tuple[str, tuple[int, ...]]]:
    s = next(s for s in d.starts if s.job_id == job_id)
    return [(w.node, w.gpus) for w in s.placement.workers]


def backfilled(d: Decisions) -> dict[str, bool]:
    return {s.job_id: s.backfilled for s in d.starts}


BIG_AT_1040 = Reservation("big", POOL, 1040.0, (("n0", 4),))


def test_blocked_job_gets_reservation() -> None:
    d = schedule(base().snapshot(), NOW, FIFO)
    assert d.starts == []
    assert d.reservations == [BIG_AT_1040]
    assert d.why("big").code == "placement"


def test_short_job_backfills_on_reserved_node() -> None:
    # short ends at 100 + 500 = 600 <= 1040: it may use n0, the best fit for 2 GPUs.
    snap = base().job("short", gpus=2, walltime_estimate_s=500.0).snapshot()
    d = schedule(snap, NOW, FIFO)
    assert d.reservations == [BIG_AT_1040]
    assert backfilled(d) == {"short": True}
    assert where(d, "short") == [("n0", (2, 3))]
    assert list(d.waiting) == ["big"]


def test_job_ahead_of_the_reservation_is_not_backfilled() -> None:
    b = (cluster()
         .pool("japan-east", "h200", nodes=2, gpus=4, prefix="n")
         .queue("q", {"gpu.h200": 100})
         .running_job("r0", [("n0", (0, 1))], start=40.0, walltime_estimate_s=1000.0)
         .running_job("r1", [("n1", (0, 1, 2))], start=0.0, walltime_estimate_s=3000.0)
         .job("early", gpus=1)  # before big: takes n1's last GPU (best fit)
         .job("big", gpus=4)
         .job("short", gpus=2, walltime_estimate_s=500.0))
    d = schedule(b.snapshot(), NOW, FIFO)
    assert [s.job_id for s in d.starts] == ["early", "short"]
    assert backfilled(d) == {"early": False, "short": True}
    assert where(d, "early") == [("n1", (3,))]
    assert d.reservations == [BIG_AT_1040]


@pytest.mark.parametrize("kw", [
    {"walltime_estimate_s": 5000.0},
    {"walltime_estimate_s": 941.0},  # ends at 1041, one second after the reservation starts
    {"walltime_limit_s": 5000.0},
    {},  # no estimate or limit: never known to end in time
])
def test_long_job_that_would_use_reserved_nodes_waits(kw: dict[str, float]) -> None:
    snap = base().job("long", gpus=2, **kw).snapshot()
    d = schedule(snap, NOW, FIFO)
    assert d.starts == []
    assert d.reservations == [BIG_AT_1040]
    why = d.why("long")
    assert why.code == "backfill"
    assert why.detail.startswith(f"would delay job big, which holds a reservation on {POOL} "
                                 "starting in 15m")  # 1040 - 100 = 940 s


def test_job_ending_exactly_at_reservation_start_backfills() -> None:
    snap = base().job("edge", gpus=2, walltime_estimate_s=940.0).snapshot()  # ends at 1040
    d = schedule(snap, NOW, FIFO)
    assert backfilled(d) == {"edge": True}
    assert where(d, "edge") == [("n0", (2, 3))]


def test_short_job_behind_long_one_of_same_shape_still_backfills() -> None:
    snap = (base()
            .job("long", gpus=2, walltime_estimate_s=5000.0)
            .job("short", gpus=2, walltime_estimate_s=500.0)
            .snapshot())
    d = schedule(snap, NOW, FIFO)
    assert [s.job_id for s in d.starts] == ["short"]
    assert where(d, "short") == [("n0", (2, 3))]
    assert d.why("long").code == "backfill"
    assert d.why("big").code == "placement"


def test_long_job_outside_reserved_nodes_starts() -> None:
    # 1 GPU for 10000 s: n0 is reserved, n1 has a free GPU.
    snap = base().job("wide", gpus=1, walltime_estimate_s=10000.0).snapshot()
    d = schedule(snap, NOW, FIFO)
    assert [s.job_id for s in d.starts] == ["wide"]
    assert where(d, "wide") == [("n1", (3,))]
    assert d.reservations == [BIG_AT_1040]


def test_reservation_on_n1_lets_long_job_use_n0() -> None:
    # r0 has no estimate: it never ends in the replay, so big's reservation is n1 at 3000,
    # and a long 2-GPU job may take n0.
    snap = base(r0={"start": 40.0}).job("long", gpus=2, walltime_estimate_s=1e6).snapshot()
    d = schedule(snap, NOW, FIFO)
    assert d.reservations == [Reservation("big", POOL, 3000.0, (("n1", 4),))]
    assert where(d, "long") == [("n0", (2, 3))]
    assert backfilled(d) == {"long": False}  # it does not touch the reserved node


@pytest.mark.parametrize(("r0", "start_at"), [
    ({"start": 40.0, "walltime_estimate_s": 1000.0}, 1040.0),
    # work already done shortens the rest: 40 + (1000 - 300)
    ({"start": 40.0, "walltime_estimate_s": 1000.0, "work_done_s": 300.0}, 740.0),
    # the limit stands in for a missing estimate
    ({"start": 40.0, "walltime_limit_s": 2000.0}, 2040.0),
    # the estimate wins over the limit
    ({"start": 40.0, "walltime_estimate_s": 600.0, "walltime_limit_s": 2000.0}, 640.0),
    # twice as fast on h200: 40 + 1000 / 2
    ({"start": 40.0, "walltime_estimate_s": 1000.0, "speeds": {"h200": 2.0}}, 540.0),
    # past its estimate (expected end 90 < now): taken to end now
    ({"start": 40.0, "walltime_estimate_s": 50.0}, NOW),
])
def test_reservation_start_time(r0: dict[str, Any], start_at: float) -> None:
    d = schedule(base(r0=r0).snapshot(), NOW, FIFO)
    assert d.reservations == [Reservation("big", POOL, start_at, (("n0", 4),))]


def test_gang_reservation_waits_for_both_nodes() -> None:
    # 2 x 4 GPUs: at 1040 only n0 is whole; at 3000 both are.
    b = (cluster()
         .pool("japan-east", "h200", nodes=2, gpus=4, prefix="n")
         .queue("q", {"gpu.h200": 100})
         .running_job("r0", [("n0", (0, 1))], start=40.0, walltime_estimate_s=1000.0)
         .running_job("r1", [("n1", (0, 1, 2))], start=0.0, walltime_estimate_s=3000.0)
         .job("gang", gpus=4, workers=2)
         .job("fits", gpus=2, walltime_estimate_s=2900.0)  # ends at 3000
         .job("late", gpus=1, walltime_estimate_s=2901.0))  # ends at 3001
    d = schedule(b.snapshot(), NOW, FIFO)
    assert d.reservations == [Reservation("gang", POOL, 3000.0, (("n0", 4), ("n1", 4)))]
    assert [s.job_id for s in d.starts] == ["fits"]
    assert d.why("late").code == "backfill"


def test_one_reservation_per_pool() -> None:
    # big2 (another class: 3 GPUs) cannot start either, but the pool already holds big's.
    snap = base().job("big2", gpus=3).snapshot()
    d = schedule(snap, NOW, FIFO)
    assert d.reservations == [BIG_AT_1040]
    assert d.starts == []
    assert d.why("big2").code == "placement"


def test_no_reservation_without_backfill() -> None:
    snap = base().job("long", gpus=2, walltime_estimate_s=5000.0).snapshot()
    d = schedule(snap, NOW, Profile(order="fifo", backfill=False))
    assert d.reservations == []
    assert backfilled(d) == {"long": False}
    assert where(d, "long") == [("n0", (2, 3))]


def test_no_reservation_when_running_jobs_have_no_walltime() -> None:
    snap = (base(r0={"start": 40.0}, r1={"start": 0.0})
            .job("long", gpus=2, walltime_estimate_s=5000.0)
            .snapshot())
    d = schedule(snap, NOW, FIFO)
    assert d.reservations == []
    assert backfilled(d) == {"long": False}
    assert where(d, "long") == [("n0", (2, 3))]
    assert d.why("big").code == "placement"
