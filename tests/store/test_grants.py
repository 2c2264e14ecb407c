"""GrantRepository on SQLite and PostgreSQL: the rate card, grants and requests, idempotent
metering of stored attempts, usage reports clipped in SQL, statuses and alerts."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event, func, select

from kumo.core.errors import InvalidValueError
from kumo.grants import GrantKind as PureGrantKind
from kumo.grants import GrantStatus as PureGrantStatus
from kumo.grants import GrantTerms, RateCard, Tier, UsageRecord, forecast, meter
from kumo.store import ConflictError, JobRepository, NotFoundError, StaleWriteError, Store, TenancyRepository
from kumo.store.errors import ForbiddenError
from kumo.store.models import (
    Grant,
    GrantAlert,
    GrantKind,
    GrantRequest,
    GrantStatus,
    RatePrice,
    RateVersion,
    RequestStatus,
    UsageEntry,
)
from kumo.store.repos import GrantRepository
from tests.store.conftest import Tenancy

APR = datetime(2025, 4, 1, tzinfo=UTC)
H200 = "gpu.h200"
PLACEMENT_8 = {"model": "h200", "region": "japan-east",
               "workers": [{"rank": 0, "node": "a1", "gpus": list(range(8)), "gpu_milli": 1000}]}  # fmt: skip


def at(day: float, hour: float = 0) -> datetime:
    """April ``day`` at ``hour`` o'clock, UTC."""
    return APR + timedelta(days=day - 1, hours=hour)


def count(store: Store, model: type[Any]) -> int:
    with store.session(readonly=True) as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
def setup(store: Store, tenancy: Tenancy) -> Store:
    """The tenancy fixture, a programme manager ``pam``, and 1,000 JPY per H200-hour from April."""
    with store.session() as s:
        t = TenancyRepository(s)
        t.create_user("pam")
        t.add_membership("pam", "programme_manager", programme=tenancy.programme)
        GrantRepository(s).add_rate_version(APR, None, "JPY", {(H200, "guaranteed"): 1000}, now=APR)
    return store


def test_the_store_enums_match_kumo_grants() -> None:
    assert {k.value for k in GrantKind} == {k.value for k in PureGrantKind}
    assert {s.value for s in GrantStatus} == {s.value for s in PureGrantStatus}


# --------------------------------------------------------------------------- rate card


def test_rate_card_versions_and_the_card_they_make(setup: Store) -> None:
    with setup.session() as s:
        repo = GrantRepository(s)
        # From Apr 10 the price rises; close_previous ends the open-ended first version there.
        repo.add_rate_version(at(10), None, "JPY", {(H200, "guaranteed"): "1200", (H200, "preemptible"): "500"},
                              now=APR, created_by="pam", close_previous=True)  # fmt: skip
    with setup.session(readonly=True) as s:
        repo = GrantRepository(s)
        versions = repo.rate_versions()
        assert [(v.effective_from, v.effective_to) for v in versions] == [(APR, at(10)), (at(10), None)]
        assert versions[1].prices == {(H200, "guaranteed"): Decimal(1200), (H200, "preemptible"): Decimal(500)}
        assert repo.rate_version_at(at(9)) is versions[0] and repo.rate_version_at(at(30)) is versions[1]
        assert repo.rate_version_at(APR - timedelta(seconds=1)) is None
        card = RateCard(versions)
        assert card.price(H200, Tier.PREEMPTIBLE, at(5)) == Decimal(600)  # 1,000 × 0.6 (no preemptible price)
        assert card.price(H200, Tier.PREEMPTIBLE, at(11)) == Decimal(500)


def test_an_overlapping_rate_version_is_refused_and_nothing_is_written(setup: Store) -> None:
    before = (count(setup, RateVersion), count(setup, RatePrice))
    overlap = r"overlaps version #1 \[2025-04-01T00:00:00\+00:00, open-ended\)"
    with pytest.raises(ConflictError, match=overlap), setup.session() as s:
        GrantRepository(s).add_rate_version(at(10), at(20), "JPY", {(H200, "guaranteed"): 1}, now=APR)
    with pytest.raises(InvalidValueError, match="currency 'EUR'"), setup.session() as s:
        GrantRepository(s).add_rate_version(at(40), None, "EUR", {(H200, "guaranteed"): 1}, now=APR)
    with pytest.raises(InvalidValueError, match="must not be negative"), setup.session() as s:
        repo = GrantRepository(s)
        repo.add_rate_version(at(10), None, "JPY", {(H200, "guaranteed"): -1}, now=APR, close_previous=True)
    assert (count(setup, RateVersion), count(setup, RatePrice)) == before == (1, 1)
    with setup.session(readonly=True) as s:
        assert GrantRepository(s).rate_versions()[0].effective_to is None  # close_previous did not happen


# --------------------------------------------------------------------------- grants and requests


def test_create_list_and_revoke_grants(setup: Store, tenancy: Tenancy) -> None:
    with setup.session() as s:
        repo = GrantRepository(s)
        credits = repo.create_grant(tenancy.project, "credits", "10000000", APR, at(31), currency="JPY",
                                    created_by="pam", now=APR, name="JST 2025")  # fmt: skip
        hours = repo.create_grant(tenancy.other_project, GrantKind.GPU_HOURS, 500, APR, at(31),
                                  flavors=["gpu.h100"], created_by="pam", now=APR)  # fmt: skip
        assert (credits.amount, credits.currency, credits.status, credits.version) == (
            Decimal("10000000"), "JPY", GrantStatus.ACTIVE, 1,
        )  # fmt: skip
        assert (hours.currency, hours.flavors) == ("gpu_hours", ["gpu.h100"])
    with setup.session() as s:
        repo = GrantRepository(s)
        assert [g.id for g in repo.list_grants(programme=tenancy.programme)] == [1, 2]
        assert [g.id for g in repo.list_grants(project=tenancy.other_project)] == [2]
        assert list(repo.grants_by_project()) == [tenancy.project, tenancy.other_project]
        with pytest.raises(StaleWriteError):
            repo.revoke(1, by="pam", now=at(5), expected_version=7)
        revoked = repo.revoke(1, by="pam", now=at(5), expected_version=1)
        assert (revoked.status, revoked.revoked_at, revoked.version) == (GrantStatus.REVOKED, at(5), 2)
        with pytest.raises(ConflictError, match="already revoked"):
            repo.revoke(1, by="pam", now=at(6))
        with pytest.raises(NotFoundError):
            repo.get_grant(99)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"amount": -5}, InvalidValueError, "must be positive"),
        ({"amount": 0}, InvalidValueError, "must be positive"),
        ({"end": at(1) - timedelta(days=1)}, InvalidValueError, "is not after start"),
        ({"end": at(1)}, InvalidValueError, "is not after start"),
        ({"currency": "EUR"}, InvalidValueError, "needs one of"),
        ({"kind": "gpu_hours"}, InvalidValueError, "counted in GPU-hours"),
        ({"kind": "money"}, InvalidValueError, "'money' is not one of"),
        ({"flavors": ["cpu"]}, InvalidValueError, "not a GPU flavor"),
        ({"start": datetime(2025, 4, 1)}, InvalidValueError, "timezone-aware"),
        ({"project": "nowhere"}, NotFoundError, "project 'nowhere' not found"),
    ],
)
def test_bad_grants_are_refused_and_nothing_is_written(
    setup: Store, tenancy: Tenancy, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    args: dict[str, Any] = {"project": tenancy.project, "kind": "credits", "amount": 100, "start": APR,
                            "end": at(31), "currency": "JPY", "created_by": "pam", "now": APR}  # fmt: skip
    args.update(kwargs)
    with pytest.raises(error, match=message), setup.session() as s:
        GrantRepository(s).create_grant(**args)
    assert count(setup, Grant) == 0


def test_a_new_grant_request_is_approved_by_someone_else(setup: Store, tenancy: Tenancy) -> None:
    with setup.session() as s:
        request = GrantRepository(s).request_grant(
            tenancy.project, "credits", 5_000_000, APR, at(31), currency="USD", requested_by=tenancy.user,
            now=APR, comment="pre-training run",
        )  # fmt: skip
        assert (request.kind.value, request.status) == ("new", RequestStatus.REQUESTED)
        assert request.amount == Decimal(5_000_000)
        assert request.grant.status is GrantStatus.REQUESTED
        assert GrantRepository(s).grants_by_project() == {}  # a requested grant is never charged
    with setup.session(readonly=True) as s:
        assert [r.id for r in GrantRepository(s).list_requests(status="requested", programme=tenancy.programme)] == [1]

    # Approving one's own request: refused, nothing written.
    own = "'alice' may not approve their own grant request 1"
    with pytest.raises(ForbiddenError, match=own), setup.session() as s:
        GrantRepository(s).approve(1, decided_by=tenancy.user, now=at(2))
    with setup.session(readonly=True) as s:
        request = GrantRepository(s).get_request(1)
        assert (request.status, request.decided_by_id, request.decided_at, request.grant.status) == (
            RequestStatus.REQUESTED, None, None, GrantStatus.REQUESTED,
        )  # fmt: skip
        assert request.grant.version == 1

    with setup.session() as s:
        approved = GrantRepository(s).approve(1, decided_by="pam", now=at(2), comment="go")
        assert (approved.status, approved.decision_comment) == (RequestStatus.APPROVED, "go")
        assert approved.decided_at == at(2)
        assert approved.grant.status is GrantStatus.ACTIVE
    with pytest.raises(ConflictError, match="already approved"), setup.session() as s:
        GrantRepository(s).deny(1, decided_by="pam", now=at(3))


def test_a_denied_new_grant_is_never_charged(setup: Store, tenancy: Tenancy) -> None:
    with setup.session() as s:
        repo = GrantRepository(s)
        request = repo.request_grant(tenancy.project, "gpu_hours", 100, APR, at(31), requested_by=tenancy.user, now=APR)
        with pytest.raises(ForbiddenError):
            repo.deny(request.id, decided_by=tenancy.user, now=at(2))
        denied = repo.deny(request.id, decided_by="pam", now=at(2), comment="no budget left")
        assert (denied.status, denied.grant.status) == (RequestStatus.DENIED, GrantStatus.DENIED)
        with pytest.raises(ConflictError, match="only a granted one"):
            repo.request_topup(denied.grant_id, 10, requested_by=tenancy.user, now=at(3))
        assert repo.grants_by_project() == {}


def test_renewal_and_top_up(setup: Store, tenancy: Tenancy) -> None:
    with setup.session() as s:
        repo = GrantRepository(s)
        grant = repo.create_grant(tenancy.project, "credits", 1000, APR, at(31), currency="JPY", created_by="pam",
                                  now=APR)  # fmt: skip
        with pytest.raises(InvalidValueError, match="is not after the grant's end"):
            repo.request_renewal(grant.id, at(30), requested_by=tenancy.user, now=at(2))
        with pytest.raises(InvalidValueError, match="must be positive"):
            repo.request_topup(grant.id, -100, requested_by=tenancy.user, now=at(2))
        with pytest.raises(InvalidValueError, match=r"renewal amount.*must be positive"):
            repo.request_renewal(grant.id, at(61), amount=0, requested_by=tenancy.user, now=at(2))
        renewal = repo.request_renewal(grant.id, at(61), requested_by=tenancy.user, now=at(2))
        topup = repo.request_topup(grant.id, "250.5", requested_by=tenancy.other_user, now=at(2))
    assert count(setup, GrantRequest) == 2
    with setup.session() as s:
        repo = GrantRepository(s)
        repo.approve(renewal.id, decided_by="pam", now=at(3))
        repo.approve(topup.id, decided_by=tenancy.user, now=at(3))  # anyone but the requester (roles: the API's job)
        grant = repo.get_grant(grant.id)
        assert (grant.end, grant.amount, grant.version) == (at(61), Decimal("1250.5"), 3)
        # a renewal that also asks for more: the end moves and the amount grows, in one change
        longer = repo.request_renewal(grant.id, at(91), amount="500", requested_by=tenancy.user, now=at(4))
        assert (longer.new_end, longer.amount) == (at(91), Decimal("500"))
        repo.approve(longer.id, decided_by="pam", now=at(5))
        grant = repo.get_grant(grant.id)
        assert (grant.end, grant.amount, grant.version) == (at(91), Decimal("1750.5"), 4)


# --------------------------------------------------------------------------- metering


def _run(store: Store, tenancy: Tenancy, spans: list[tuple[datetime, datetime | None, str]],
         spec: dict[str, Any] | None = None, placement: dict[str, Any] = PLACEMENT_8) -> list[str]:  # fmt: skip
    """Submit one job per span and run attempts: (start, end or None, outcome); returns the job ids."""
    ids = []
    with store.session() as s:
        jobs = JobRepository(s)
        for start, end, outcome in spans:
            job = jobs.submit(tenancy.project, tenancy.queue, tenancy.user, spec or {"gpus": 8, "preemptible": False},
                              now=start)  # fmt: skip
            jobs.start_attempt(job.id, job.version, placement, 1, now=start)
            if end is not None:
                jobs.end_attempt(job.id, job.version, outcome, now=end)
            ids.append(job.id)
    return ids


def _meter(store: Store, now: datetime, since: datetime = APR, shuffle: bool = False) -> list[UsageRecord]:
    with store.session(readonly=True) as s:
        repo = GrantRepository(s)
        card, spans = RateCard(repo.rate_versions()), repo.attempt_uses(since)
        # Plain values: the rows expire when the read-only session ends.
        grants = {p: [GrantTerms.of(g) for g in gs] for p, gs in repo.grants_by_project().items()}
    if shuffle:
        random.shuffle(spans)
    return [r for span in spans for r in meter(span, now, card, grants.get(span.project, []))]


def _ledger(store: Store) -> list[tuple[Any, ...]]:
    with store.session(readonly=True) as s:
        return [
            (u.job_id, u.attempt, u.t0, u.t1, u.start, u.end, u.grant_id, u.tier, u.gpu_seconds, u.charge, u.currency,
             u.final)
            for u in GrantRepository(s).usage()
        ]  # fmt: skip


def test_attempts_are_read_for_metering(setup: Store, tenancy: Tenancy) -> None:
    (done,) = _run(setup, tenancy, [(at(2, 10), at(2, 12), "succeeded")])
    with setup.session() as s:
        jobs = JobRepository(s)
        sliced = jobs.submit(tenancy.project, tenancy.queue, tenancy.other_user, {"workers": 2, "gpu_milli": 500},
                             now=at(3))  # fmt: skip
        jobs.start_attempt(sliced.id, 1, {"model": "h200", "region": "r", "workers": []}, 1, now=at(3))
        sliced.spec = {**sliced.spec, "grant": 7}  # the spec field a job names its grant by
    with setup.session(readonly=True) as s:
        repo = GrantRepository(s)
        spans = repo.attempt_uses(APR)
        assert [(p.job_id, p.flavor, p.gpu_milli, p.tier, p.start, p.end, p.grant) for p in spans] == [
            (done, H200, 8000, "guaranteed", at(2, 10), at(2, 12), None),
            # no workers in the placement: from the spec, 2 × 500; preemptible by default
            (sliced.id, H200, 1000, "preemptible", at(3), None, 7),
        ]
        assert [p.job_id for p in repo.attempt_uses(at(2, 12))] == [sliced.id]  # ended by then
        assert repo.attempt_uses(APR, until=at(2, 10)) == []


def test_metering_twice_and_in_any_order_charges_once(setup: Store, tenancy: Tenancy) -> None:
    with setup.session() as s:
        GrantRepository(s).create_grant(tenancy.project, "credits", 10_000_000, APR, at(31), currency="JPY",
                                        created_by="pam", now=APR)  # fmt: skip
    _run(setup, tenancy, [(at(2, 10), at(2, 12), "succeeded"), (at(3, 22), at(4, 2), "preempted"),
                          (at(5), at(5, 1), "failed")])  # fmt: skip
    records = _meter(setup, at(10))
    # 8 GPUs × (2 h + 2 h + 2 h + 1 h) = 56 GPU-hours × 1,000 = 56,000 JPY, in 4 records (one crosses midnight).
    assert len(records) == 4
    with setup.session() as s:
        first = GrantRepository(s).record_usage(records)
    assert (first.attempts, first.replaced, first.stale, first.written) == (3, 0, 0, 4)
    ledger = _ledger(setup)
    for _ in range(3):  # again, shuffled, and with every record duplicated
        again = _meter(setup, at(10), shuffle=True)
        random.shuffle(again)
        with setup.session() as s:
            GrantRepository(s).record_usage(again + again[::-1])
        assert _ledger(setup) == ledger
    assert count(setup, UsageEntry) == 4
    with setup.session(readonly=True) as s:
        assert GrantRepository(s).used(1) == Decimal(56_000)


def test_bad_usage_records_are_refused_and_nothing_changes(setup: Store, tenancy: Tenancy) -> None:
    _run(setup, tenancy, [(at(2, 10), at(2, 12), "succeeded")])
    records = _meter(setup, at(10))
    with setup.session() as s:
        GrantRepository(s).record_usage(records)
    ledger = _ledger(setup)
    cases: list[tuple[list[UsageRecord], type[Exception], str]] = [
        ([replace(r, grant_id=99, charge=Decimal(1)) for r in records], NotFoundError, "grant 99"),
        ([replace(r, project="nowhere") for r in records], NotFoundError, "project 'nowhere'"),
        ([replace(r, user="nobody") for r in records], NotFoundError, "user 'nobody'"),
        ([replace(r, tier="spot") for r in records], InvalidValueError, "bad job id, tier or currency"),
        ([replace(r, currency="EUR") for r in records], InvalidValueError, "bad job id, tier or currency"),
    ]
    for bad, error, message in cases:
        with pytest.raises(error, match=message), setup.session() as s:
            GrantRepository(s).record_usage(bad)
        assert _ledger(setup) == ledger


def test_a_stale_provisional_replay_never_replaces_newer_records(setup: Store, tenancy: Tenancy) -> None:
    (job,) = _run(setup, tenancy, [(at(2, 10), None, "")])
    early = _meter(setup, at(2, 11))  # running: 8 GPU-hours so far
    later = _meter(setup, at(2, 13))
    with setup.session() as s:
        repo = GrantRepository(s)
        repo.record_usage(later)
        assert repo.record_usage(early).stale == 1  # out of order: the older reading is ignored
        assert repo.used_by_grant() == {}  # no grant: unfunded, valued at the list price
        assert [u.charge for u in repo.usage(job_id=job)] == [Decimal(24_000)]  # 8 × 3 h × 1,000
    with setup.session() as s:
        JobRepository(s).end_attempt(job, 2, "succeeded", now=at(2, 12))  # the stop event arrives late
    final = _meter(setup, at(2, 14))
    with setup.session() as s:
        repo = GrantRepository(s)
        assert repo.record_usage(final).replaced == 1  # the final records replace longer provisional ones
        assert repo.record_usage(later).stale == 1
        assert [(u.end, u.charge, u.final) for u in repo.usage(job_id=job)] == [(at(2, 12), Decimal(16_000), True)]


def test_a_job_across_its_grants_end_and_fractional_use(setup: Store, tenancy: Tenancy) -> None:
    with setup.session() as s:
        repo = GrantRepository(s)
        repo.create_grant(tenancy.project, "credits", 20_000, APR, at(15), currency="JPY", created_by="pam", now=APR)
        repo.create_grant(tenancy.project, "gpu_hours", 100, at(15, 1), at(31), created_by="pam", now=APR)
    _run(setup, tenancy, [(at(14, 22), at(15, 3), "succeeded")])
    half = {"model": "h200", "region": "r", "workers": [{"rank": 0, "node": "a1", "gpus": [3], "gpu_milli": 500}]}
    _run(setup, tenancy, [(at(20), at(20, 3), "succeeded")], spec={"gpu_milli": 500}, placement=half)
    with setup.session() as s:
        repo = GrantRepository(s)
        repo.record_usage(_meter(setup, at(25)))
        rows = [(u.start, u.end, u.grant_id, u.charge, u.currency) for u in repo.usage()]
        assert rows == [
            # 8 GPUs × 2 h = 16 GPU-hours × 1,000 = 16,000 JPY to the credits grant (ends at midnight)
            (at(14, 22), at(15), 1, Decimal(16_000), "JPY"),
            # 00:00-01:00: no grant: unfunded, 8 GPU-hours at the list price
            (at(15), at(15, 1), None, Decimal(8_000), "JPY"),
            # 01:00-03:00: 16 GPU-hours to the GPU-hours grant
            (at(15, 1), at(15, 3), 2, Decimal(16), "gpu_hours"),
            # half a GPU for 3 h: 1.5 GPU-hours
            (at(20), at(20, 3), 2, Decimal("1.5"), "gpu_hours"),
        ]
        assert repo.used_by_grant() == {1: Decimal(16_000), 2: Decimal("17.5")}
        assert repo.daily_usage(2) == {date(2025, 4, 15): Decimal(16), date(2025, 4, 20): Decimal("1.5")}


def test_statuses_follow_use_and_time(setup: Store, tenancy: Tenancy) -> None:
    with setup.session() as s:
        repo = GrantRepository(s)
        repo.create_grant(tenancy.project, "credits", 16_000, APR, at(31), currency="JPY", created_by="pam", now=APR)
        repo.create_grant(tenancy.other_project, "credits", 5, APR, at(3), currency="JPY", created_by="pam", now=APR)
    _run(setup, tenancy, [(at(2, 10), at(2, 12), "succeeded")])  # 16 GPU-hours: 16,000 JPY
    with setup.session() as s:
        repo = GrantRepository(s)
        repo.record_usage(_meter(setup, at(5)))
        changed = repo.refresh_statuses(at(5))
        assert [(g.id, g.status) for g in changed] == [(1, GrantStatus.EXHAUSTED), (2, GrantStatus.EXPIRED)]
        assert repo.refresh_statuses(at(5)) == []
        topup = repo.request_topup(1, 1000, requested_by=tenancy.user, now=at(6))
        repo.approve(topup.id, decided_by="pam", now=at(6))  # more to spend: active again
        assert repo.get_grant(1).status is GrantStatus.ACTIVE
        # Exhausted or expired grants still take the charges of their period (metering never looks at use).
        assert {g.id for gs in repo.grants_by_project().values() for g in gs} == {1, 2}


# --------------------------------------------------------------------------- reports


@contextmanager
def statements(store: Store) -> Iterator[list[str]]:
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        seen.append(sql)

    event.listen(store.engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", note)


def test_usage_report_groups_and_clips_in_one_query(setup: Store, tenancy: Tenancy) -> None:
    with setup.session() as s:
        repo = GrantRepository(s)
        repo.create_grant(tenancy.project, "credits", 10**7, APR, at(31), currency="JPY", created_by="pam", now=APR)
    _run(setup, tenancy, [(at(2, 10), at(2, 14), "succeeded"), (at(3, 6), at(3, 7), "succeeded")])
    with setup.session() as s:
        jobs = JobRepository(s)
        job = jobs.submit(tenancy.other_project, tenancy.queue, tenancy.other_user, {"gpus": 1}, now=at(2))
        jobs.start_attempt(job.id, 1, {"model": "h200", "region": "r", "workers": []}, 1, now=at(2, 12))
        jobs.end_attempt(job.id, 2, "succeeded", now=at(2, 15))
    with setup.session() as s:
        GrantRepository(s).record_usage(_meter(setup, at(10)))
    with setup.session(readonly=True) as s:
        repo = GrantRepository(s)
        full = repo.usage_report(APR, at(31), ["programme", "project", "grant", "user", "flavor", "tier"])
        assert [(t.group, t.currency, t.gpu_seconds, t.charge, t.records) for t in full] == [
            # fuji: 1 GPU × 3 h, preemptible (600/h), no grant: 1,800 at the list price
            ({"programme": "geniac", "project": "fuji", "grant": None, "user": "bob", "flavor": H200,
              "tier": "preemptible"}, "JPY", 10_800.0, Decimal(1800), 1),
            # sakura: 8 GPUs × (4 h + 1 h) = 40 GPU-hours × 1,000
            ({"programme": "geniac", "project": "sakura", "grant": 1, "user": "alice", "flavor": H200,
              "tier": "guaranteed"}, "JPY", 144_000.0, Decimal(40_000), 2),
        ]  # fmt: skip
        # Apr 2 13:00 to Apr 3 06:30: the last hour of sakura's first job (8,000), half of its second
        # (4,000); the last two hours of fuji's (2 × 600 = 1,200).
        with statements(setup) as seen:
            clipped = repo.usage_report(at(2, 13), at(3, 6.5), ["project"])
        assert [(t.group["project"], t.charge, t.gpu_seconds) for t in clipped] == [
            ("fuji", Decimal(1200), 7_200.0),
            ("sakura", Decimal(12_000), 8 * 1.5 * 3600),
        ]
        assert len([q for q in seen if not q.startswith("SET LOCAL")]) == 1  # aggregated in the database, one query
        by_grant = repo.usage_report(APR, at(31), ["grant"], programme="geniac")
        assert [(t.group, t.charge) for t in by_grant] == [({"grant": None}, Decimal(1800)),
                                                            ({"grant": 1}, Decimal(40_000))]  # fmt: skip
        assert [t.charge for t in repo.usage_report(APR, at(31), [], project="sakura")] == [Decimal(40_000)]
        with pytest.raises(InvalidValueError, match="group_by"):
            repo.usage_report(APR, at(31), ["queue"])
        with pytest.raises(InvalidValueError, match="is not after start"):
            repo.usage_report(at(31), APR)


def test_forecast_from_the_stored_daily_usage(setup: Store, tenancy: Tenancy) -> None:
    with setup.session() as s:
        GrantRepository(s).create_grant(tenancy.project, "credits", 3_000_000, APR, at(31), currency="JPY",
                                        created_by="pam", now=APR)  # fmt: skip
    # 8 GPUs for 2 h a day on Apr 1-10: 16,000 a day.
    _run(setup, tenancy, [(at(d, 8), at(d, 10), "succeeded") for d in range(1, 11)])
    with setup.session() as s:
        repo = GrantRepository(s)
        repo.record_usage(_meter(setup, at(11)))
        f = forecast(repo.get_grant(1), repo.daily_usage(1), at(11))
    assert (f.used, f.burn_rate_per_day) == (Decimal(160_000), Decimal(16_000))
    assert f.projected_spend_at_end == Decimal(480_000)  # 160,000 + 20 days × 16,000
    assert f.under_spend and f.pace == pytest.approx(0.16)  # 160,000 of the 1,000,000 expected


# --------------------------------------------------------------------------- alerts


def test_alerts_are_due_once_per_grant_and_kind(setup: Store, tenancy: Tenancy) -> None:
    with setup.session() as s:
        GrantRepository(s).create_grant(tenancy.project, "credits", 20_000, APR, at(91), currency="JPY",
                                        created_by="pam", now=APR)  # fmt: skip  (ends June 30)
    _run(setup, tenancy, [(at(2, 10), at(2, 12), "succeeded")])  # 16,000 of 20,000: 80%
    with setup.session() as s:
        repo = GrantRepository(s)
        repo.record_usage(_meter(setup, at(5)))
        assert [kind for _, kind in repo.due_alerts(at(5))] == ["used_50", "used_80"]
        assert [kind for _, kind in repo.due_alerts(at(70))] == ["used_50", "used_80", "ends_30d"]  # 21 days left
        assert [kind for _, kind in repo.due_alerts(at(85))] == ["used_50", "used_80", "ends_30d", "ends_7d"]
        repo.record_alert(1, "used_50", now=at(5), delivered=True)
        failed = repo.record_alert(1, "used_80", now=at(5), delivered=False)
        assert [kind for _, kind in repo.due_alerts(at(5))] == []
        assert [a.kind for a in repo.alerts(undelivered=True)] == ["used_80"]
        retried = repo.record_alert(1, "used_80", now=at(5, 1), delivered=True)
        assert (retried.id, retried.attempts, retried.delivered, retried.sent_at) == (failed.id, 2, True, at(5, 1))
        with pytest.raises(InvalidValueError, match="'used_90' is not one of"):
            repo.record_alert(1, "used_90", now=at(5), delivered=True)
    assert count(setup, GrantAlert) == 2
