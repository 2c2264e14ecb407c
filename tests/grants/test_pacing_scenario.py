"""Grant pacing, as a scenario: two projects with equal grants, one behind plan and one ahead.

Each hour the scheduler (``kumo.core.schedule``) fills 8 GPUs with one-hour, one-GPU jobs of both
projects, which always have work waiting; the standings' ``pace`` comes from
:func:`kumo.grants.pacing.scheduling_pace` over what each project has used so far. Under
``grant-pacing`` the project behind gets the larger share until it has caught up — at its grant's
end, when both grants are spent exactly; under plain fair share they split evenly, the one behind
ends with a quarter of its grant unused and the one ahead overspends.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from kumo.core import GrantStanding, Job, Node, Profile, Programme, Project, Queue, Snapshot, schedule
from kumo.grants import GrantKind, GrantTerms
from kumo.grants.forecast import pace
from kumo.grants.pacing import scheduling_pace

START = datetime(2026, 1, 1, tzinfo=UTC)
GPUS = 8
# 40 days of 8 GPUs = 7,680 GPU-hours, shared by two grants of 3,840 GPU-hours each.
GRANT = {p: GrantTerms(id=i, kind=GrantKind.GPU_HOURS, amount=Decimal(3840), currency="", start=START,
                       end=START + timedelta(days=40)) for i, p in enumerate(("behind", "ahead"), 1)}


def run(order: str, hours: int) -> tuple[list[tuple[int, int]], dict[str, Decimal], dict[str, float]]:
    """Hourly rounds from day 20, when ``behind`` has used 960 GPU-hours (pace 0.5) and ``ahead``
    2,880 (pace 1.5). Returns the GPUs each project got per round, what each used in the end, and
    the paces (spent over planned) at the end."""
    used = {"behind": Decimal(960), "ahead": Decimal(2880)}
    now = START + timedelta(days=20)
    nodes = [Node("n0", "japan-east", "h200", GPUS)]
    queues = [Queue("q", quota={"gpu.h200": GPUS})]
    programmes = [Programme("geniac")]
    projects = [Project(p, "geniac") for p in used]
    shares: list[tuple[int, int]] = []
    for hour in range(hours):
        jobs = [Job(f"{p}-{hour}-{i}", "q", p, gpus=1, submit_time=float(hour)) for p in used for i in range(GPUS)]
        standings = [GrantStanding(p, pace=scheduling_pace(GRANT[p], used[p], now)) for p in used]
        snap = Snapshot(nodes, queues, programmes=programmes, projects=projects, jobs=jobs, standings=standings)
        d = schedule(snap, float(hour), Profile(order=order))
        got = {p: sum(1 for s in d.starts if s.job_id.startswith(p + "-")) for p in used}
        shares.append((got["behind"], got["ahead"]))
        for p in used:
            used[p] += got[p]  # one GPU-hour per job: the round lasts an hour
        now += timedelta(hours=1)
    return shares, used, {p: pace(GRANT[p], used[p], now) for p in used}


def test_the_grant_behind_plan_gets_the_larger_share_until_it_catches_up() -> None:
    shares, used, paces = run("grant-pacing", hours=24 * 20)  # to both grants' end
    assert all(b + a == GPUS for b, a in shares)  # the cluster stays full
    # behind must spend 2,880 in 480 h (6/h), ahead 960 (2/h): weights 1.5 and 0.5 -> 6 and 2 GPUs
    assert shares[0] == (6, 2)
    assert all(b > a for b, a in shares)  # the one behind gets more every hour, until the end
    assert used == {"behind": Decimal(3840), "ahead": Decimal(3840)}  # both grants spent exactly by their end
    assert paces == {"behind": 1.0, "ahead": 1.0}


def test_plain_fair_share_never_closes_the_gap() -> None:
    shares, used, paces = run("fair-share", hours=24 * 20)
    assert set(shares) == {(4, 4)}
    assert used == {"behind": Decimal(2880), "ahead": Decimal(4800)}  # a quarter unused; 25 % overspent
    assert paces["ahead"] - paces["behind"] == 0.5


def test_scheduling_pace_by_hand() -> None:
    g = GRANT["behind"]  # 3,840 GPU-hours over 40 days
    mid = START + timedelta(days=20)
    assert scheduling_pace(g, Decimal(960), mid) == 0.5 / 0.75  # must spend 1.5x its planned rate
    assert scheduling_pace(g, Decimal(1920), mid) == 1.0  # on plan
    assert scheduling_pace(g, Decimal(2880), mid) == 2.0  # 0.5 of the time left for 0.25 of the amount
    assert scheduling_pace(g, Decimal(3840), mid) == 100.0  # spent out
    assert scheduling_pace(g, Decimal(0), START - timedelta(days=1)) == 1.0  # before its start
    assert scheduling_pace(g, Decimal(0), START + timedelta(days=41)) == 1.0  # after its end
