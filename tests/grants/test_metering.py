"""Metering: attempts to usage records, cut at days, prices and grants, charged by the rule, exactly."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from kumo.core.errors import InvalidValueError
from kumo.grants import (
    GPU_HOURS,
    UNPRICED,
    AttemptUse,
    GrantKind,
    GrantStatus,
    GrantTerms,
    RateCard,
    RateCardVersion,
    Tier,
    UsageRecord,
    meter,
)

APR = datetime(2025, 4, 1, tzinfo=UTC)
H200, H100 = "gpu.h200", "gpu.h100"
# One price all month: 1,000 JPY per H200-hour guaranteed, so 600 preemptible (0.4 off).
CARD = RateCard([RateCardVersion(APR, None, "JPY", {(H200, "guaranteed"): Decimal(1000)}, label="v1")])


def at(day: int, hour: float = 0) -> datetime:
    """April ``day``, ``hour`` o'clock, UTC."""
    return APR + timedelta(days=day - 1, hours=hour)


def credits(gid: int, start: datetime, end: datetime, amount: int = 10_000_000, **kw: object) -> GrantTerms:
    return GrantTerms(gid, GrantKind.CREDITS, Decimal(amount), "JPY", start, end, **kw)  # type: ignore[arg-type]


def use(
    start: datetime, end: datetime | None, gpu_milli: int = 8000, tier: Tier = Tier.GUARANTEED, attempt: int = 1,
    job: str = "j-000001", grant: int | None = None, flavor: str = H200,
) -> AttemptUse:  # fmt: skip
    return AttemptUse(job, attempt, "sakura", "alice", flavor, gpu_milli, tier, start, end, grant)


def summary(records: list[UsageRecord]) -> list[tuple[datetime, datetime, int | None, str, str]]:
    return [(r.start, r.end, r.grant_id, str(r.charge), r.currency) for r in records]


MONTH = [credits(1, APR, at(31))]


def test_a_rate_change_in_the_middle_of_a_running_job() -> None:
    card = RateCard([
        RateCardVersion(APR, at(10, 12), "JPY", {(H200, "guaranteed"): Decimal(1000)}, label="v1"),
        RateCardVersion(at(10, 12), None, "JPY", {(H200, "guaranteed"): Decimal(1200)}, label="v2"),
    ])  # fmt: skip
    records = meter(use(at(10, 10), at(10, 14)), at(11), card, MONTH)
    # 10:00-12:00: 8 GPUs × 2 h = 16 GPU-hours × 1,000 = 16,000
    # 12:00-14:00: 16 GPU-hours × 1,200 = 19,200
    assert summary(records) == [
        (at(10, 10), at(10, 12), 1, "16000.000000", "JPY"),
        (at(10, 12), at(10, 14), 1, "19200.000000", "JPY"),
    ]
    assert [r.gpu_seconds for r in records] == [57_600.0, 57_600.0]  # 8 GPUs × 7,200 s
    assert sum(r.charge for r in records) == Decimal("35200")


def test_a_preempted_and_restarted_job_is_charged_per_attempt() -> None:
    first = use(at(3, 10), at(3, 11.5), gpu_milli=4000, tier=Tier.PREEMPTIBLE, attempt=1)
    second = use(at(3, 13), at(3, 15), gpu_milli=4000, tier=Tier.PREEMPTIBLE, attempt=2)
    records = meter(first, at(4), CARD, MONTH) + meter(second, at(4), CARD, MONTH)
    # Preemptible price: 1,000 × 0.6 = 600 per GPU-hour.
    # attempt 1: 4 GPUs × 1.5 h = 6 GPU-hours × 600 = 3,600; attempt 2: 4 × 2 h = 8 × 600 = 4,800.
    # The 1.5 h between them (waiting) is not charged.
    assert [(r.attempt, str(r.charge), r.tier) for r in records] == [
        (1, "3600.000000", Tier.PREEMPTIBLE),
        (2, "4800.000000", Tier.PREEMPTIBLE),
    ]
    assert sum(r.gpu_seconds for r in records) == 4 * 3.5 * 3600


def test_fractional_gpus_are_charged_pro_rata() -> None:
    half = meter(use(at(5, 1), at(5, 4), gpu_milli=500), at(6), CARD, MONTH)
    # Half a GPU for 3 h = 1.5 GPU-hours = 5,400 GPU-seconds; × 1,000 = 1,500.
    assert [(r.gpu_seconds, str(r.charge)) for r in half] == [(5_400.0, "1500.000000")]
    seventh = meter(use(at(5, 1), at(5, 1) + timedelta(seconds=1), gpu_milli=142), at(6), CARD, MONTH)
    # A 1/7 slice (142 milli) for one second: 0.142 / 3,600 GPU-hours × 1,000 = 0.0394444… -> 0.039444.
    assert [(r.gpu_seconds, str(r.charge)) for r in seventh] == [(0.142, "0.039444")]


def test_charges_round_half_to_even_per_record() -> None:
    # 1 milli-GPU for 18 µs at 1,000/GPU-hour = 1e-3 × 18e-6 / 3600 × 1000 = 5e-9: rounds to 0.
    tiny = meter(use(at(5), at(5) + timedelta(microseconds=18), gpu_milli=1), at(6), CARD, MONTH)
    assert tiny[0].charge == Decimal("0.000000")
    # 1 milli-GPU for 1.8 ms: 1e-3 × 1.8e-3 / 3600 × 1000 = 0.0000005 exactly: half, to the even 0.000000.
    half = meter(use(at(5), at(5) + timedelta(milliseconds=1.8), gpu_milli=1), at(6), CARD, MONTH)
    assert half[0].charge == Decimal("0.000000")
    # 1 milli-GPU for 5.4 ms: 0.0000015 exactly: half, to the even 0.000002.
    up = meter(use(at(5), at(5) + timedelta(milliseconds=5.4), gpu_milli=1), at(6), CARD, MONTH)
    assert up[0].charge == Decimal("0.000002")
    # 1 milli-GPU for 9 ms: 0.0000025: to the even 0.000002 (not 0.000003).
    down = meter(use(at(5), at(5) + timedelta(milliseconds=9), gpu_milli=1), at(6), CARD, MONTH)
    assert down[0].charge == Decimal("0.000002")


def test_a_job_spanning_its_grants_end_goes_to_the_next_grant_or_is_unfunded() -> None:
    job = use(at(14, 22), at(15, 3))  # 8 GPUs, Apr 14 22:00 -> Apr 15 03:00
    first = credits(1, APR, at(15))  # ends at midnight Apr 15
    later = credits(2, at(10), at(31))
    # Both cover Apr 14: the one that ends first (1) takes it; then 2.
    # 22:00-24:00: 8 × 2 h = 16 GPU-hours × 1,000 = 16,000 to grant 1
    # 00:00-03:00: 8 × 3 h = 24 GPU-hours × 1,000 = 24,000 to grant 2
    assert summary(meter(job, at(16), CARD, [later, first])) == [
        (at(14, 22), at(15), 1, "16000.000000", "JPY"),
        (at(15), at(15, 3), 2, "24000.000000", "JPY"),
    ]
    # Without a next grant the rest is unfunded, valued at the list price.
    assert summary(meter(job, at(16), CARD, [first])) == [
        (at(14, 22), at(15), 1, "16000.000000", "JPY"),
        (at(15), at(15, 3), None, "24000.000000", "JPY"),
    ]


def test_a_grant_ending_inside_a_day_cuts_the_record_there() -> None:
    job = use(at(14, 10), at(14, 14), gpu_milli=1000)
    records = meter(job, at(15), CARD, [credits(1, APR, at(14, 12)), credits(2, at(14, 12), at(31))])
    # 1 GPU × 2 h = 2 GPU-hours × 1,000 = 2,000 to each.
    assert summary(records) == [
        (at(14, 10), at(14, 12), 1, "2000.000000", "JPY"),
        (at(14, 12), at(14, 14), 2, "2000.000000", "JPY"),
    ]


def test_the_grant_a_job_names_wins_while_it_can_take_the_charge() -> None:
    first, later = credits(1, APR, at(15)), credits(2, at(10), at(16))
    job = use(at(14, 22), at(16, 2), gpu_milli=1000, grant=2)
    # Grant 2 is named: it takes Apr 14 22:00 -> Apr 16 00:00 although 1 ends first, split at midnights;
    # after grant 2 ends, the rule applies again: grant 1 has ended too, so the rest is unfunded.
    assert [(r.start, r.end, r.grant_id) for r in meter(job, at(17), CARD, [first, later])] == [
        (at(14, 22), at(15), 2),
        (at(15), at(16), 2),
        (at(16), at(16, 2), None),
    ]
    # A named grant of another project is not among the project's grants: the rule applies.
    assert {r.grant_id for r in meter(replace(job, grant=99), at(17), CARD, [first, later])} == {1, 2, None}


def test_ties_go_to_the_lowest_id_whatever_the_order() -> None:
    grants = [credits(7, APR, at(31)), credits(3, APR, at(31)), credits(5, APR, at(31))]
    for _ in range(5):
        random.shuffle(grants)
        assert [r.grant_id for r in meter(use(at(2), at(2, 1)), at(3), CARD, grants)] == [3]


def test_usage_is_cut_at_utc_midnights() -> None:
    records = meter(use(at(2, 18), at(4, 6), gpu_milli=1000), at(5), CARD, MONTH)
    # 1 GPU: 6 h on Apr 2 (6,000), 24 h on Apr 3 (24,000), 6 h on Apr 4 (6,000).
    assert summary(records) == [
        (at(2, 18), at(3), 1, "6000.000000", "JPY"),
        (at(3), at(4), 1, "24000.000000", "JPY"),
        (at(4), at(4, 6), 1, "6000.000000", "JPY"),
    ]


def test_a_running_attempt_is_metered_up_to_now_provisionally() -> None:
    running = use(at(2, 18), None, gpu_milli=1000)
    early = meter(running, at(3, 2), CARD, MONTH)
    later = meter(running, at(3, 5), CARD, MONTH)
    done = meter(replace(running, end=at(3, 6)), at(9), CARD, MONTH)
    assert [r.final for r in early + later] == [False] * 4 and [r.final for r in done] == [True, True]
    assert early[0] == later[0]  # the days already metered do not change
    assert (later[-1].start, later[-1].end, later[-1].charge) == (at(3), at(3, 5), Decimal("5000"))
    assert (done[-1].end, done[-1].charge) == (at(3, 6), Decimal("6000"))
    assert meter(running, at(2, 17), CARD, MONTH) == []  # now before the start: nothing yet


def test_gpu_hours_grants_charge_gpu_hours_of_their_flavors() -> None:
    hours = GrantTerms(4, GrantKind.GPU_HOURS, Decimal(100), "", APR, at(31), flavors=(H100,))
    h100 = meter(use(at(2), at(2, 3), gpu_milli=2500, flavor=H100), at(3), CARD, [hours, *MONTH])
    # 2.5 GPUs × 3 h = 7.5 GPU-hours charged to the gpu_hours grant (the card has no H100 price anyway).
    assert summary(h100) == [(at(2), at(2, 3), 4, "7.500000", GPU_HOURS)]
    # H200 use may not go to a grant limited to H100: the credits grant takes it.
    assert [r.grant_id for r in meter(use(at(2), at(2, 3)), at(3), CARD, [hours, *MONTH])] == [1]


def test_a_credits_grant_needs_a_price_in_its_currency() -> None:
    dollars = GrantTerms(8, GrantKind.CREDITS, Decimal(1000), "USD", APR, at(31))
    records = meter(use(at(2), at(2, 1), gpu_milli=1000), at(3), CARD, [dollars])
    assert summary(records) == [(at(2), at(2, 1), None, "1000.000000", "JPY")]  # unfunded, at list price
    unpriced = meter(use(at(2), at(2, 1), gpu_milli=1000, flavor=H100), at(3), CARD, MONTH)
    assert summary(unpriced) == [(at(2), at(2, 1), None, "0.000000", UNPRICED)]


def test_requested_denied_and_revoked_grants() -> None:
    requested = credits(1, APR, at(31), status=GrantStatus.REQUESTED)
    denied = credits(2, APR, at(31), status=GrantStatus.DENIED)
    revoked = credits(3, APR, at(31), status=GrantStatus.REVOKED, revoked_at=at(2, 12))
    exhausted = credits(4, APR, at(31), status=GrantStatus.EXHAUSTED)
    job = use(at(2, 10), at(2, 14), gpu_milli=1000)
    # The revoked grant takes use until its revocation (it ends first); then the exhausted one,
    # which still takes the charges of its period (metering never looks at what was used).
    assert [(r.start, r.end, r.grant_id) for r in meter(job, at(3), CARD, [requested, denied, revoked, exhausted])] == [
        (at(2, 10), at(2, 12), 3),
        (at(2, 12), at(2, 14), 4),
    ]


def test_metering_is_deterministic() -> None:
    grants = [credits(1, APR, at(15)), credits(2, at(10), at(31)), credits(3, at(12, 7), at(20))]
    job = use(at(9, 5), at(21, 17), gpu_milli=1500, tier=Tier.PREEMPTIBLE)
    first = meter(job, at(25), CARD, grants)
    for _ in range(5):
        random.shuffle(grants)
        assert meter(job, at(25), CARD, grants) == first
    # Records tile the attempt exactly, and their GPU-seconds add up to the whole.
    assert [r.start for r in first[1:]] == [r.end for r in first[:-1]]
    assert (first[0].start, first[-1].end) == (at(9, 5), at(21, 17))
    assert sum(r.gpu_seconds for r in first) == pytest.approx(1.5 * (12 * 24 + 12) * 3600)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gpu_milli": 0}, "gpu_milli must be a positive integer"),
        ({"attempt": -1}, "attempt must be a positive integer"),
        ({"flavor": "cpu"}, "not a GPU flavor"),
        ({"tier": "spot"}, "'spot' is not one of"),
        ({"start": datetime(2025, 4, 2)}, "timezone-aware"),
        ({"end": APR}, "is before start"),
    ],
)
def test_bad_attempts_are_refused(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "job_id": "j-000001", "attempt": 1, "project": "sakura", "user": "alice", "flavor": H200, "gpu_milli": 1000,
        "tier": "guaranteed", "start": at(2), "end": at(3),
    }  # fmt: skip
    args.update(kwargs)
    with pytest.raises(InvalidValueError, match=message):
        AttemptUse(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"amount": Decimal(-5)}, "must be positive"),
        ({"amount": Decimal(0)}, "must be positive"),
        ({"end": APR}, "is not after start"),
        ({"currency": "EUR"}, "needs one of"),
        ({"flavors": ("cpu",)}, "not a GPU flavor"),
        ({"flavors": ()}, "non-empty list"),
    ],
)
def test_bad_grant_terms_are_refused(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"id": 1, "kind": "credits", "amount": Decimal(10), "currency": "JPY",
                               "start": APR, "end": at(31)}  # fmt: skip
    args.update(kwargs)
    with pytest.raises(InvalidValueError, match=message):
        GrantTerms(**args)  # type: ignore[arg-type]
