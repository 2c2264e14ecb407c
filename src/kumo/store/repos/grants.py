"""Grants and metering: the rate card, grants and their requests, usage records, reports and alerts.

The rules — prices and tiers, which grant a moment of use is charged to, rounding, forecasts —
are pure functions in :mod:`kumo.grants`, which the store may not import (it sits below the
shells and imports only the core). Its rows have the shapes those functions read, so the metering
step of the control loop is, in one session::

    card = RateCard(repo.rate_versions())
    grants = repo.grants_by_project()  # rows: use them inside the session, or GrantTerms.of(row)
    records = [r for span in repo.attempt_uses(since) for r in meter(span, now, card, grants.get(span.project, []))]
    repo.record_usage(records)
    repo.refresh_statuses(now)

Money and GPU-hours are six-place ``Decimal`` values, stored as integer micro-units (``Micro``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Protocol
from typing import cast as cast_type

from sqlalchemy import (
    ARRAY,
    BigInteger,
    ColumnElement,
    Float,
    Integer,
    Text,
    and_,
    any_,
    case,
    cast,
    delete,
    false,
    func,
    insert,
    or_,
    select,
    text,
    tuple_,
    type_coerce,
    update,
)
from sqlalchemy.exc import IntegrityError

from kumo.core.errors import InvalidValueError
from kumo.core.resources import GPU_MILLI, check_name, gpu_flavor, is_gpu_flavor
from kumo.grants.grant import check_terms
from kumo.grants.money import money
from kumo.store.columns import as_utc
from kumo.store.errors import ConflictError, ForbiddenError, NotFoundError, StaleWriteError
from kumo.store.models import (
    MICRO,
    NAME,
    Attempt,
    Grant,
    GrantAlert,
    GrantKind,
    GrantRequest,
    GrantStatus,
    Job,
    Programme,
    Project,
    RatePrice,
    RateVersion,
    RequestKind,
    RequestStatus,
    UsageEntry,
    User,
    micro_to_decimal,
)
from kumo.store.repos._common import Repository, check_text, resolve

CURRENCIES = ("JPY", "USD")
GPU_HOURS = "gpu_hours"
TIERS = ("guaranteed", "preemptible")
DEFAULT_PREEMPTIBLE_DISCOUNT = Decimal("0.4")
GROUP_KEYS = ("programme", "project", "grant", "user", "flavor", "tier")
"""What :meth:`GrantRepository.usage_report` can group by (it always splits by currency too)."""
USED_ALERTS = (("used_50", Decimal("0.5")), ("used_80", Decimal("0.8")), ("used_100", Decimal("1")))
ENDS_ALERTS = (("ends_30d", timedelta(days=30)), ("ends_7d", timedelta(days=7)))
ALERT_KINDS = ("used_50", "used_80", "used_100", "ends_30d", "ends_7d")
_CHUNK = 2_000  # keys per IN (...) list: well under SQLite's 32,766 bound variables
_MICROS = type_coerce(UsageEntry.__table__.c.charge, BigInteger)  # the stored integer, for sums in SQL
_PREEMPTIBLE_DEFAULT = True  # a job's spec without "preemptible" is preemptible (kumo.core.Job's default)
_COPY_NULL = "\\N"
_PLAIN = re.compile(r"[A-Za-z0-9_.:/-]{1,128}")
_UNITS = frozenset({*CURRENCIES, GPU_HOURS, ""})
_KEYS_PG = "unnest(CAST(:jobs AS text[]), CAST(:attempts AS integer[])) AS k(job_id, attempt)"
_STATE_PG = text(
    f"SELECT u.job_id, u.attempt, bool_or(u.final), max(u.t1) FROM usage_records u JOIN {_KEYS_PG}"
    " ON u.job_id = k.job_id AND u.attempt = k.attempt GROUP BY u.job_id, u.attempt"
)
_DELETE_PG = text(
    f"DELETE FROM usage_records u USING {_KEYS_PG} WHERE u.job_id = k.job_id AND u.attempt = k.attempt"
)


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class AttemptSpan:
    """One stored attempt as metering reads it (``kumo.grants.AttemptLike``): the gang's
    ``gpu_milli`` of ``flavor`` in ``tier`` over ``[start, end)``, and the grant its job names."""

    job_id: str
    attempt: int
    project: str
    user: str
    flavor: str
    gpu_milli: int
    tier: str
    start: datetime
    end: datetime | None
    grant: int | None


class UsageLike(Protocol):
    """What :meth:`GrantRepository.record_usage` reads from a record (``kumo.grants.UsageRecord``)."""

    @property
    def job_id(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def project(self) -> str: ...
    @property
    def user(self) -> str: ...
    @property
    def flavor(self) -> str: ...
    @property
    def tier(self) -> str: ...
    @property
    def grant_id(self) -> int | None: ...
    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime: ...
    @property
    def gpu_seconds(self) -> float: ...
    @property
    def charge(self) -> Decimal: ...
    @property
    def currency(self) -> str: ...
    @property
    def final(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Metered:
    """What :meth:`GrantRepository.record_usage` did: of ``attempts`` attempts, ``replaced`` had
    records already (now replaced), ``stale`` were skipped (older than what is stored), and
    ``written`` records were inserted."""

    attempts: int
    replaced: int
    stale: int
    written: int


@dataclass(frozen=True, slots=True)
class UsageTotal:
    """One row of a usage report: the ``group`` (``{"project": "sakura", "grant": 3, ...}``; grant
    None is unfunded use), its ``currency`` (JPY, USD, ``gpu_hours`` or ``""`` unpriced), the
    GPU-seconds and charges inside the period, and how many records contributed."""

    group: dict[str, str | int | None]
    currency: str
    gpu_seconds: float
    charge: Decimal
    records: int

    @property
    def gpu_hours(self) -> float:
        return self.gpu_seconds / 3600


# --------------------------------------------------------------------------- repository


class GrantRepository(Repository):
    """The rate card, grants, requests, usage records, reports and alerts."""

    # ---- rate card ---------------------------------------------------------------------
    def add_rate_version(
        self,
        effective_from: datetime,
        effective_to: datetime | None,
        currency: str,
        prices: Mapping[tuple[str, str], Decimal | int | str],
        *,
        now: datetime,
        preemptible_discount: Decimal | int | str = DEFAULT_PREEMPTIBLE_DISCOUNT,
        created_by: User | str | None = None,
        close_previous: bool = False,
    ) -> RateVersion:
        """Add a version of the rate card: ``prices`` maps ``(flavor, tier)`` to a price per GPU-hour.

        It may not overlap a stored version (``ConflictError`` naming both; nothing is written).
        ``close_previous=True`` first ends the open-ended version that started before it at its
        ``effective_from`` (the usual way to change prices from a date on).
        """
        start = as_utc(effective_from, "effective_from")
        end = None if effective_to is None else as_utc(effective_to, "effective_to")
        if end is not None and end <= start:
            raise InvalidValueError("rate card version", f"effective_to {end} is not after effective_from {start}")
        if currency not in CURRENCIES:
            raise InvalidValueError("rate card version", f"currency {currency!r} is not one of {list(CURRENCIES)}")
        discount = _money(preemptible_discount, "preemptible_discount")
        if not Decimal(0) <= discount <= Decimal(1):
            raise InvalidValueError("rate card version", f"preemptible_discount must be from 0 to 1, got {discount}")
        entries = _price_entries(prices)
        who = None if created_by is None else resolve(self.session, User, "user", created_by)
        overlapping = self._overlapping(start, end)
        previous = None
        if close_previous:
            previous = next((v for v in overlapping if v.effective_to is None and v.effective_from < start), None)
            overlapping = [v for v in overlapping if v is not previous]
        if overlapping:
            clash = overlapping[0]
            raise ConflictError(
                f"rate card version {_span(start, end)} overlaps version {clash.label} "
                f"{_span(clash.effective_from, clash.effective_to)}"
            )
        if previous is not None:
            previous.effective_to = start
        row = RateVersion(
            effective_from=start, effective_to=end, currency=currency, preemptible_discount=discount,
            created_by_id=None if who is None else who.id, created_at=as_utc(now, "now"),
            entries=[RatePrice(flavor=f, tier=t, price=p) for (f, t), p in entries.items()],
        )  # fmt: skip
        self.session.add(row)
        self.session.flush()
        return row

    def _overlapping(self, start: datetime, end: datetime | None) -> list[RateVersion]:
        stmt = select(RateVersion).where(or_(RateVersion.effective_to.is_(None), RateVersion.effective_to > start))
        if end is not None:
            stmt = stmt.where(RateVersion.effective_from < end)
        return list(self.session.scalars(stmt.order_by(RateVersion.effective_from)))

    def rate_versions(self) -> list[RateVersion]:
        """Every version, oldest first: ``kumo.grants.RateCard(repo.rate_versions())`` is the card."""
        return list(self.session.scalars(select(RateVersion).order_by(RateVersion.effective_from)))

    def rate_version_at(self, at: datetime) -> RateVersion | None:
        """The version in force at ``at`` (the current one for ``at=now``), or None."""
        when = as_utc(at, "at")
        stmt = select(RateVersion).where(
            RateVersion.effective_from <= when, or_(RateVersion.effective_to.is_(None), RateVersion.effective_to > when)
        )
        return self.session.scalars(stmt).one_or_none()

    # ---- grants ------------------------------------------------------------------------
    def create_grant(
        self,
        project: Project | str,
        kind: GrantKind | str,
        amount: Decimal | int | str,
        start: datetime,
        end: datetime,
        *,
        created_by: User | str,
        now: datetime,
        currency: str | None = None,
        flavors: Sequence[str] | None = None,
        name: str = "",
    ) -> Grant:
        """An active grant (made by a programme manager or an admin; members use :meth:`request_grant`).

        ``InvalidValueError`` for a zero or negative amount, an end not after the start, a
        currency that does not fit the kind (JPY/USD for credits; none for gpu_hours) or a
        flavor that is not ``gpu.<model>``; nothing is written then.
        """
        return self._new_grant(project, kind, amount, start, end, created_by, now, currency, flavors, name,
                               GrantStatus.ACTIVE)  # fmt: skip

    def _new_grant(
        self, project: Project | str, kind: GrantKind | str, amount: Decimal | int | str, start: datetime,
        end: datetime, created_by: User | str, now: datetime, currency: str | None, flavors: Sequence[str] | None,
        name: str, status: GrantStatus,
    ) -> Grant:  # fmt: skip
        k, value, unit, a, b, limited = _check_terms(kind, amount, currency, start, end, flavors)
        if name != "":
            check_text("grant name", name, NAME)
        proj = resolve(self.session, Project, "project", project)
        who = resolve(self.session, User, "user", created_by)
        row = Grant(
            name=name, project_id=proj.id, kind=k, amount=value, currency=unit, flavors=limited, start=a, end=b,
            status=status, created_by_id=who.id, created_at=as_utc(now, "now"), revoked_at=None, version=1,
        )  # fmt: skip
        self.session.add(row)
        self.session.flush()
        return row

    def get_grant(self, grant_id: int) -> Grant:
        row = self.session.get(Grant, grant_id)
        if row is None:
            raise NotFoundError("grant", grant_id)
        return row

    def list_grants(
        self,
        *,
        project: Project | str | None = None,
        programme: Programme | str | None = None,
        status: GrantStatus | str | Collection[GrantStatus | str] | None = None,
    ) -> list[Grant]:
        """Grants by id, of one project, of one programme's projects, in some statuses."""
        stmt = select(Grant)
        if project is not None:
            stmt = stmt.where(Grant.project_id == resolve(self.session, Project, "project", project).id)
        if programme is not None:
            prog = resolve(self.session, Programme, "programme", programme)
            stmt = stmt.where(Grant.project_id.in_(select(Project.id).where(Project.programme_id == prog.id)))
        if status is not None:
            statuses = [status] if isinstance(status, str) else status
            stmt = stmt.where(Grant.status.in_([_grant_status(s) for s in statuses]))
        return list(self.session.scalars(stmt.order_by(Grant.id)))

    def grants_by_project(self, projects: Collection[str] | None = None) -> dict[str, list[Grant]]:
        """The grants usage may be charged to (every status but requested and denied), by project
        name: what ``kumo.grants.meter`` takes as ``grants_of_project``."""
        stmt = select(Project.name, Grant).join(Project, Grant.project_id == Project.id)
        stmt = stmt.where(Grant.status.notin_([GrantStatus.REQUESTED, GrantStatus.DENIED]))
        if projects is not None:
            stmt = stmt.where(Project.name.in_(list(projects)))
        out: dict[str, list[Grant]] = {}
        for name, grant in self.session.execute(stmt.order_by(Grant.id)):
            out.setdefault(name, []).append(grant)
        return out

    def revoke(self, grant_id: int, *, by: User | str, now: datetime, expected_version: int | None = None) -> Grant:
        """Stop a grant taking charges from ``now`` on (usage before stays charged to it).
        ``ConflictError`` if it was already revoked or denied."""
        resolve(self.session, User, "user", by)
        grant = self.get_grant(grant_id)
        if grant.status in (GrantStatus.REVOKED, GrantStatus.DENIED):
            raise ConflictError(f"grant {grant_id} is already {grant.status.value}")
        return self._change(grant, expected_version, status=GrantStatus.REVOKED, revoked_at=as_utc(now, "now"))

    def _change(self, grant: Grant, expected_version: int | None, **values: Any) -> Grant:
        """Apply ``values`` if the grant is still at ``expected_version`` (its current one if None)."""
        version = grant.version if expected_version is None else expected_version
        stmt = update(Grant).where(Grant.id == grant.id, Grant.version == version)
        result = self.session.execute(
            stmt.values(**values, version=version + 1).execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            self.session.refresh(grant)
            raise StaleWriteError("grant", grant.id, version, grant.version)
        self.session.refresh(grant)
        return grant

    def refresh_statuses(self, now: datetime, grant_ids: Collection[int] | None = None) -> list[Grant]:
        """Bring grants' statuses up to date at ``now`` and return those that changed: ``expired``
        from the end on, else ``exhausted`` once used ≥ amount, else ``active`` (a top-up or a
        renewal makes an exhausted or expired grant active again). Requested, revoked and denied
        grants keep their status."""
        when = as_utc(now, "now")
        stmt = select(Grant).where(Grant.status.in_([GrantStatus.ACTIVE, GrantStatus.EXHAUSTED, GrantStatus.EXPIRED]))
        if grant_ids is not None:
            stmt = stmt.where(Grant.id.in_(list(grant_ids)))
        grants = list(self.session.scalars(stmt.order_by(Grant.id)))
        used = self.used_by_grant([g.id for g in grants])
        changed = []
        for grant in grants:
            status = _status_at(grant, used.get(grant.id, Decimal(0)), when)
            if status is not grant.status:
                changed.append(self._change(grant, None, status=status))
        return changed

    # ---- requests ----------------------------------------------------------------------
    def request_grant(
        self,
        project: Project | str,
        kind: GrantKind | str,
        amount: Decimal | int | str,
        start: datetime,
        end: datetime,
        *,
        requested_by: User | str,
        now: datetime,
        currency: str | None = None,
        flavors: Sequence[str] | None = None,
        name: str = "",
        comment: str = "",
    ) -> GrantRequest:
        """Ask for a new grant: it is stored as ``requested`` (never charged) until approved."""
        grant = self._new_grant(project, kind, amount, start, end, requested_by, now, currency, flavors, name,
                                GrantStatus.REQUESTED)  # fmt: skip
        return self._new_request(grant, RequestKind.NEW, grant.amount, None, requested_by, now, comment)

    def request_renewal(
        self, grant_id: int, new_end: datetime, *, requested_by: User | str, now: datetime, comment: str = "",
        amount: Decimal | int | str | None = None,
    ) -> GrantRequest:  # fmt: skip
        """Ask for the grant to end later, at ``new_end`` (``InvalidValueError`` if not after its end),
        and, with ``amount``, for that much more for the longer period (in the grant's currency or
        GPU-hours; positive) — the next year of a multi-year grant, say."""
        value = None if amount is None else _positive_money(amount, "renewal amount")
        grant = self._open_grant(grant_id)
        end = as_utc(new_end, "new_end")
        if end <= grant.end:
            raise InvalidValueError("renewal", f"new end {end} is not after the grant's end {grant.end}")
        return self._new_request(grant, RequestKind.RENEWAL, value, end, requested_by, now, comment)

    def request_topup(
        self, grant_id: int, amount: Decimal | int | str, *, requested_by: User | str, now: datetime,
        comment: str = "",
    ) -> GrantRequest:  # fmt: skip
        """Ask for ``amount`` more (in the grant's currency or GPU-hours; positive)."""
        value = _positive_money(amount, "top-up amount")
        grant = self._open_grant(grant_id)
        return self._new_request(grant, RequestKind.TOPUP, value, None, requested_by, now, comment)

    def _open_grant(self, grant_id: int) -> Grant:
        grant = self.get_grant(grant_id)
        if grant.status in (GrantStatus.REQUESTED, GrantStatus.REVOKED, GrantStatus.DENIED):
            raise ConflictError(
                f"grant {grant_id} is {grant.status.value}; only a granted one can be renewed or topped up"
            )
        return grant

    def _new_request(
        self, grant: Grant, kind: RequestKind, amount: Decimal | None, new_end: datetime | None,
        requested_by: User | str, now: datetime, comment: str,
    ) -> GrantRequest:  # fmt: skip
        who = resolve(self.session, User, "user", requested_by)
        row = GrantRequest(
            grant_id=grant.id, kind=kind, amount=amount, new_end=new_end, comment=_comment(comment),
            requested_by_id=who.id, requested_at=as_utc(now, "now"), status=RequestStatus.REQUESTED,
            decided_by_id=None, decided_at=None, decision_comment="",
        )  # fmt: skip
        self.session.add(row)
        self.session.flush()
        return row

    def get_request(self, request_id: int) -> GrantRequest:
        row = self.session.get(GrantRequest, request_id)
        if row is None:
            raise NotFoundError("grant request", request_id)
        return row

    def list_requests(
        self,
        *,
        status: RequestStatus | str | None = None,
        grant_id: int | None = None,
        project: Project | str | None = None,
        programme: Programme | str | None = None,
    ) -> list[GrantRequest]:
        """Requests by id (a programme manager's queue: ``status="requested", programme=...``)."""
        stmt = select(GrantRequest).join(Grant, GrantRequest.grant_id == Grant.id)
        if status is not None:
            stmt = stmt.where(GrantRequest.status == _request_status(status))
        if grant_id is not None:
            stmt = stmt.where(GrantRequest.grant_id == grant_id)
        if project is not None:
            stmt = stmt.where(Grant.project_id == resolve(self.session, Project, "project", project).id)
        if programme is not None:
            prog = resolve(self.session, Programme, "programme", programme)
            stmt = stmt.where(Grant.project_id.in_(select(Project.id).where(Project.programme_id == prog.id)))
        return list(self.session.scalars(stmt.order_by(GrantRequest.id)))

    def approve(self, request_id: int, *, decided_by: User | str, now: datetime, comment: str = "") -> GrantRequest:
        """Grant the request: a new grant becomes active, a renewal moves the end (and adds its
        amount, if it asked for one), a top-up adds to the amount; the grant's status is then
        brought up to date at ``now``.

        ``ForbiddenError`` if ``decided_by`` made the request; ``ConflictError`` if it was decided
        already, or a renewal no longer extends the grant. Nothing is written then.
        """
        request, who, when = self._decidable(request_id, decided_by, now, "approve")
        grant = request.grant
        changes: dict[str, Any] = {}
        if request.kind is RequestKind.NEW:
            changes["status"] = GrantStatus.ACTIVE
        else:
            if grant.status in (GrantStatus.REVOKED, GrantStatus.DENIED):
                raise ConflictError(f"grant {grant.id} is {grant.status.value}; the request can only be denied")
            if request.kind is RequestKind.RENEWAL:
                assert request.new_end is not None
                if request.new_end <= grant.end:
                    raise ConflictError(f"grant {grant.id} already ends at {grant.end}, not before {request.new_end}")
                changes["end"] = request.new_end
                if request.amount is not None:
                    changes["amount"] = grant.amount + request.amount
            else:
                assert request.amount is not None
                changes["amount"] = grant.amount + request.amount
        self._change(grant, None, **changes)
        self.refresh_statuses(when, [grant.id])
        return self._decide(request, RequestStatus.APPROVED, who, when, comment)

    def deny(self, request_id: int, *, decided_by: User | str, now: datetime, comment: str = "") -> GrantRequest:
        """Refuse the request (a new grant's row becomes ``denied``). Same errors as :meth:`approve`."""
        request, who, when = self._decidable(request_id, decided_by, now, "deny")
        if request.kind is RequestKind.NEW:
            self._change(request.grant, None, status=GrantStatus.DENIED)
        return self._decide(request, RequestStatus.DENIED, who, when, comment)

    def _decidable(
        self, request_id: int, decided_by: User | str, now: datetime, verb: str
    ) -> tuple[GrantRequest, User, datetime]:
        when = as_utc(now, "now")
        request = self.get_request(request_id)
        who = resolve(self.session, User, "user", decided_by)
        if request.status is not RequestStatus.REQUESTED:
            raise ConflictError(f"grant request {request_id} is already {request.status.value}")
        if request.requested_by_id == who.id:
            raise ForbiddenError(who.name, f"{verb} their own grant request {request_id}")
        return request, who, when

    def _decide(
        self, request: GrantRequest, status: RequestStatus, who: User, when: datetime, comment: str
    ) -> GrantRequest:
        request.status, request.decided_by_id, request.decided_at = status, who.id, when
        request.decision_comment = _comment(comment)
        self.session.flush()
        return request

    # ---- metering ----------------------------------------------------------------------
    def attempt_uses(self, since: datetime, *, until: datetime | None = None) -> list[AttemptSpan]:
        """Attempts that ran at some time in ``[since, until)`` (still running, or ended after
        ``since``; started before ``until``), as metering reads them, by job and attempt number.

        The flavor and GPUs come from the placement (the gang's GPUs × each worker's share),
        else from the spec; the tier from the spec's ``preemptible`` (default: preemptible); the
        named grant from the spec's ``grant``, if any.
        """
        lo = as_utc(since, "since")
        stmt = (
            select(Attempt.job_id, Attempt.number, Attempt.placement, Attempt.started_at, Attempt.ended_at, Job.spec,
                   Project.name, User.name)
            .join(Job, Attempt.job_id == Job.id)
            .join(Project, Job.project_id == Project.id)
            .join(User, Job.submitted_by_id == User.id)
            .where(or_(Attempt.ended_at.is_(None), Attempt.ended_at > lo))
        )  # fmt: skip
        if until is not None:
            stmt = stmt.where(Attempt.started_at < as_utc(until, "until"))
        out = []
        for job_id, number, placement, started, ended, spec, project, user in self.session.execute(
            stmt.order_by(Attempt.job_id, Attempt.number)
        ):
            flavor, milli = _gang(placement, spec)
            tier = placement.get("tier")  # the tier the controller started it in (kumo.control.loop)
            if tier not in TIERS:
                tier = "preemptible" if spec.get("preemptible", _PREEMPTIBLE_DEFAULT) else "guaranteed"
            named = spec.get("grant")
            grant = named if isinstance(named, int) and not isinstance(named, bool) else None
            out.append(AttemptSpan(job_id, number, project, user, flavor, milli, tier, started, ended, grant))
        return out

    def record_usage(self, records: Iterable[UsageLike]) -> Metered:
        """Store usage records, replacing every stored record of each ``(job_id, attempt)`` they
        cover, so metering an attempt again never counts it twice.

        Replays in any order end in the same state: an attempt's records are skipped (``stale``)
        when they are provisional (``final=False``) and the stored ones are final, or end earlier
        than the stored provisional ones. Within one call, duplicates count once, and where one
        attempt comes metered more than once the final metering wins over provisional ones and,
        among those, the longer one.
        """
        groups: dict[tuple[str, int], list[UsageLike]] = {}
        for record in records:
            groups.setdefault((record.job_id, record.attempt), []).append(record)
        if not groups:
            return Metered(0, 0, 0, 0)
        for key, batch in groups.items():
            groups[key] = _latest(batch)
        stored = self._stored_state(list(groups))
        replace: list[tuple[str, int]] = []
        write: list[UsageLike] = []
        stale = 0
        for key, rows in groups.items():
            state = stored.get(key)
            if state is not None:
                stored_final, stored_t1 = state
                new_t1 = max(r.end for r in rows).timestamp()
                if not rows[0].final and (stored_final or new_t1 < stored_t1):
                    stale += 1
                    continue
                replace.append(key)
            write.extend(rows)
        checked = self._usage_rows(write)  # checked and resolved before anything is deleted
        self._delete_usage(replace)
        self._insert_usage(checked)
        return Metered(len(groups), len(replace), stale, len(write))

    def _postgres(self) -> bool:
        return self.session.get_bind().dialect.name == "postgresql"

    def _stored_state(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], tuple[bool, float]]:
        """``{(job_id, attempt): (final, last t1)}`` of the stored records of those attempts.

        PostgreSQL joins the keys as two arrays (one statement; ``IN`` lists of thousands of values
        are slow to send and, on a table loaded in the same transaction, planned as scans). SQLite
        looks up chunks of job ids in the primary key."""
        out: dict[tuple[str, int], tuple[bool, float]] = {}
        if self._postgres():
            params = {"jobs": [job for job, _ in keys], "attempts": [attempt for _, attempt in keys]}
            for job_id, attempt, final, t1 in self.session.execute(_STATE_PG, params):
                out[job_id, attempt] = (bool(final), float(t1))
            return out
        wanted = set(keys)
        u = UsageEntry
        for chunk in _chunks(sorted({job for job, _ in keys})):
            stmt = (
                select(u.job_id, u.attempt, func.max(case((u.final, 1), else_=0)), func.max(u.t1))
                .where(u.job_id.in_(chunk))
                .group_by(u.job_id, u.attempt)
            )
            for job_id, attempt, final, t1 in self.session.execute(stmt):
                if (job_id, attempt) in wanted:
                    out[job_id, attempt] = (bool(final), float(t1))
        return out

    def _delete_usage(self, keys: list[tuple[str, int]]) -> None:
        if not keys:
            return
        if self._postgres():
            params = {"jobs": [job for job, _ in keys], "attempts": [attempt for _, attempt in keys]}
            self.session.execute(_DELETE_PG, params)
            return
        for chunk in _chunks(keys):
            stmt = delete(UsageEntry).where(tuple_(UsageEntry.job_id, UsageEntry.attempt).in_(chunk))
            self.session.execute(stmt.execution_options(synchronize_session=False))

    def _usage_rows(self, records: list[UsageLike]) -> list[tuple[Any, ...]]:
        """The records as rows of ``usage_records`` (in its column order), checked: project and user
        names are resolved, grant ids must exist, names and units must be plain."""
        if not records:
            return []
        projects = self._ids(Project, {r.project for r in records})
        users = self._ids(User, {r.user for r in records})
        self._check_grants({r.grant_id for r in records if r.grant_id is not None})
        rows = []
        for r in records:
            if r.tier not in TIERS or r.currency not in _UNITS or not _PLAIN.fullmatch(r.job_id):
                raise InvalidValueError("usage record", f"bad job id, tier or currency in {r!r}")
            if not _PLAIN.fullmatch(r.flavor):
                raise InvalidValueError("usage record", f"flavor {r.flavor!r} is not a flavor name")
            start, end = r.start, r.end
            if start.tzinfo is not UTC or end.tzinfo is not UTC:
                start, end = as_utc(start, "usage start"), as_utc(end, "usage end")
            rows.append((
                r.job_id, r.attempt, start.timestamp(), end.timestamp(), start, end, projects[r.project],
                users[r.user], r.grant_id, r.flavor, str(r.tier), float(r.gpu_seconds), _micro(r.charge),
                r.currency, bool(r.final),
            ))  # fmt: skip
        return rows

    def _insert_usage(self, rows: list[tuple[Any, ...]]) -> None:
        """Insert rows in bulk: ``COPY`` on PostgreSQL, one executemany on SQLite."""
        if not rows:
            return
        self.session.flush()
        connection = self.session.connection()
        table = UsageEntry.__table__
        columns = [c.name for c in table.columns]
        if connection.dialect.name == "postgresql":
            names = ", ".join(f'"{c}"' for c in columns)
            raw = connection.connection.driver_connection
            with raw.cursor() as cursor, cursor.copy(f"COPY usage_records ({names}) FROM STDIN") as copy:  # type: ignore[union-attr]
                for i in range(0, len(rows), 10_000):
                    copy.write("".join(map(_copy_line, rows[i : i + 10_000])))
            return
        dialect = connection.dialect
        compiled = insert(UsageEntry).compile(dialect=dialect)
        if list(compiled.positiontup or ()) != columns:
            raise AssertionError(f"unexpected column order {compiled.positiontup}")
        # Datetimes as SQLite's DATETIME processor writes them (checked against it once), the rest
        # as they are: one executemany with no per-value type processing.
        stamp = _sqlite_datetime if _sqlite_format_ok(table, dialect) else _processor(table, dialect)
        params = [(*row[:4], stamp(row[4]), stamp(row[5]), *row[6:]) for row in rows]
        connection.exec_driver_sql(compiled.string, params)

    def _ids(self, model: type[Project] | type[User], names: set[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        table = model.__table__
        if self._postgres():
            stmt = select(table.c.name, table.c.id).where(table.c.name == any_(cast(sorted(names), ARRAY(Text))))
            out.update({name: id_ for name, id_ in self.session.execute(stmt)})
        else:
            for chunk in _chunks(sorted(names)):
                rows = self.session.execute(select(table.c.name, table.c.id).where(table.c.name.in_(chunk)))
                out.update({name: id_ for name, id_ in rows})
        missing = sorted(names - set(out))
        if missing:
            raise NotFoundError("project" if model is Project else "user", missing[0])
        return out

    def _check_grants(self, ids: set[int]) -> None:
        """``NotFoundError`` for a grant id that is not stored (usage_records has no foreign keys)."""
        found: set[int] = set()
        if self._postgres():
            wanted = cast(sorted(ids), ARRAY(Integer))
            found.update(self.session.scalars(select(Grant.id).where(Grant.id == any_(wanted))))
        else:
            for chunk in _chunks(sorted(ids)):
                found.update(self.session.scalars(select(Grant.id).where(Grant.id.in_(chunk))))
        missing = sorted(ids - found)
        if missing:
            raise NotFoundError("grant", missing[0])

    def usage(
        self, *, job_id: str | None = None, attempt: int | None = None, grant_id: int | None = None,
        project: Project | str | None = None,
    ) -> list[UsageEntry]:  # fmt: skip
        """Stored usage records, by job, attempt and start."""
        stmt = select(UsageEntry)
        if job_id is not None:
            stmt = stmt.where(UsageEntry.job_id == job_id)
        if attempt is not None:
            stmt = stmt.where(UsageEntry.attempt == attempt)
        if grant_id is not None:
            stmt = stmt.where(UsageEntry.grant_id == grant_id)
        if project is not None:
            stmt = stmt.where(UsageEntry.project_id == resolve(self.session, Project, "project", project).id)
        return list(self.session.scalars(stmt.order_by(UsageEntry.job_id, UsageEntry.attempt, UsageEntry.t0)))

    # ---- what grants used ----------------------------------------------------------------
    def used(self, grant_id: int) -> Decimal:
        """Everything charged to the grant (money or GPU-hours; may exceed its amount)."""
        self.get_grant(grant_id)
        return self.used_by_grant([grant_id]).get(grant_id, Decimal(0)).quantize(MICRO)

    def used_by_grant(self, grant_ids: Collection[int] | None = None) -> dict[int, Decimal]:
        """``{grant id: charged so far}`` for those grants (every charged grant if None); a grant
        never charged is absent. One aggregate query per 2,000 ids."""
        u = UsageEntry
        gid_ = type_coerce(u.grant_id, Integer)  # never NULL here
        stmt = select(gid_, func.sum(_MICROS)).where(u.grant_id.is_not(None)).group_by(u.grant_id)
        if grant_ids is None:
            return {gid: micro_to_decimal(total) for gid, total in self.session.execute(stmt)}
        out: dict[int, Decimal] = {}
        for chunk in _chunks(sorted(grant_ids)):
            for gid, total in self.session.execute(stmt.where(u.grant_id.in_(chunk))):
                out[gid] = micro_to_decimal(total)
        return out

    def daily_usage(self, grant_id: int) -> dict[date, Decimal]:
        """The grant's charges per UTC day (records are cut at midnights): ``kumo.grants.forecast`` and
        ``burn_down`` read it."""
        self.get_grant(grant_id)
        u = UsageEntry.__table__.c
        day = self._day_number(u.t0)
        stmt = select(day, func.sum(_MICROS)).where(u.grant_id == grant_id).group_by(day).order_by(day)
        epoch = date(1970, 1, 1)
        return {epoch + timedelta(days=int(n)): micro_to_decimal(total) for n, total in self.session.execute(stmt)}

    def _day_number(self, t0: Any) -> ColumnElement[Any]:
        """Days since the epoch of epoch seconds ``t0`` (floor; SQLite may lack ``floor``)."""
        if self.session.get_bind().dialect.name == "sqlite":
            return cast(t0 / 86400, BigInteger)  # truncation is the floor: t0 is positive
        return cast(func.floor(t0 / 86400), BigInteger)

    # ---- reports -------------------------------------------------------------------------
    def usage_report(
        self,
        start: datetime,
        end: datetime,
        group_by: Sequence[str] = ("project",),
        *,
        programme: Programme | str | None = None,
        project: Project | str | None = None,
        grant_id: int | None = None,
    ) -> list[UsageTotal]:
        """GPU-seconds and charges in ``[start, end)``, grouped by some of :data:`GROUP_KEYS` and
        always by currency, sorted by group (names in byte order, unfunded use first).

        Records are clipped to the period in SQL — a record half inside counts half its
        GPU-seconds and charge, the charge rounded to the micro-unit; records are cut at UTC
        midnights, so a period of whole days clips nothing and only records crossing its ends are
        scaled — and aggregated in the database in one query: by ids first, then joined to names
        (and summed again by programme when projects are not a key).
        """
        keys = list(group_by)
        unknown = [k for k in keys if k not in GROUP_KEYS]
        if unknown or len(set(keys)) != len(keys):
            raise InvalidValueError("group_by", f"must be distinct names from {list(GROUP_KEYS)}, got {keys}")
        a, b = as_utc(start, "start"), as_utc(end, "end")
        if b <= a:
            raise InvalidValueError("usage report", f"end {b} is not after start {a}")
        where = [UsageEntry.t1 > a.timestamp(), UsageEntry.t0 < b.timestamp()]
        if programme is not None:
            prog = resolve(self.session, Programme, "programme", programme)
            where.append(UsageEntry.project_id.in_(select(Project.id).where(Project.programme_id == prog.id)))
        if project is not None:
            where.append(UsageEntry.project_id == resolve(self.session, Project, "project", project).id)
        if grant_id is not None:
            where.append(UsageEntry.grant_id == grant_id)
        postgres = self._postgres()
        if postgres:  # one large aggregate: no JIT compilation, and room to hash its groups in memory
            self.session.execute(text("SET LOCAL jit = off"))
            self.session.execute(text("SET LOCAL work_mem = '64MB'"))
        stmt = _report_statement(keys, a.timestamp(), b.timestamp(), where, postgres)
        n = len(keys)
        return [
            UsageTotal(dict(zip(keys, row[:n], strict=True)), row[n], float(row[n + 2] or 0.0),
                       micro_to_decimal(row[n + 1] or 0), int(row[n + 3]))
            for row in self.session.connection().execute(stmt)  # Core rows: no ORM loading to pay for
        ]  # fmt: skip

    # ---- alerts --------------------------------------------------------------------------
    def due_alerts(self, now: datetime) -> list[tuple[Grant, str]]:
        """Alerts active and exhausted grants should get at ``now`` and have not got yet:
        ``used_50``/``used_80``/``used_100`` once that share of the amount is charged,
        ``ends_30d``/``ends_7d`` once the end is that near. By grant, then kind."""
        when = as_utc(now, "now")
        grants = self.list_grants(status=[GrantStatus.ACTIVE, GrantStatus.EXHAUSTED])
        used = self.used_by_grant([g.id for g in grants])
        sent = {(a.grant_id, a.kind) for a in self.alerts()}
        due = []
        for grant in grants:
            spent = used.get(grant.id, Decimal(0))
            kinds = [kind for kind, share in USED_ALERTS if spent >= grant.amount * share]
            kinds += [kind for kind, span in ENDS_ALERTS if when < grant.end and grant.end - when <= span]
            due += [(grant, kind) for kind in kinds if (grant.id, kind) not in sent]
        return due

    def record_alert(self, grant_id: int, kind: str, *, now: datetime, delivered: bool) -> GrantAlert:
        """Note one try at sending an alert: the first creates its row (the alert is then no longer
        due), later ones count ``attempts``; ``delivered`` stays true once true."""
        if kind not in ALERT_KINDS:
            raise InvalidValueError("alert kind", f"{kind!r} is not one of {list(ALERT_KINDS)}")
        self.get_grant(grant_id)
        when = as_utc(now, "now")
        row = self.session.scalars(
            select(GrantAlert).where(GrantAlert.grant_id == grant_id, GrantAlert.kind == kind)
        ).one_or_none()
        if row is None:
            row = GrantAlert(grant_id=grant_id, kind=kind, sent_at=when, delivered=delivered, attempts=1)
            try:
                with self.session.begin_nested():
                    self.session.add(row)
            except IntegrityError as exc:
                raise ConflictError(f"alert {kind!r} of grant {grant_id} was recorded concurrently") from exc
            return row
        row.sent_at, row.delivered, row.attempts = when, row.delivered or delivered, row.attempts + 1
        self.session.flush()
        return row

    def alerts(self, *, grant_id: int | None = None, undelivered: bool = False) -> list[GrantAlert]:
        stmt = select(GrantAlert)
        if grant_id is not None:
            stmt = stmt.where(GrantAlert.grant_id == grant_id)
        if undelivered:
            stmt = stmt.where(GrantAlert.delivered.is_(false()))
        return list(self.session.scalars(stmt.order_by(GrantAlert.id)))


# --------------------------------------------------------------------------- checks and helpers


def _report_statement(keys: list[str], p0: float, p1: float, where: list[Any], postgres: bool) -> Any:
    """The report's one statement (see :meth:`GrantRepository.usage_report`)."""
    u = UsageEntry.__table__.c
    inside = and_(u.t0 >= p0, u.t1 <= p1)
    share = (case((u.t1 < p1, u.t1), else_=p1) - case((u.t0 > p0, u.t0), else_=p0)) / (u.t1 - u.t0)
    clipped = cast(func.round(cast(_MICROS, Float) * share), BigInteger)
    # Whole records need no arithmetic; only those crossing the period's ends are scaled.
    charge = func.coalesce(func.sum(_MICROS).filter(inside), 0) + func.coalesce(func.sum(clipped).filter(~inside), 0)
    gpu_s = func.coalesce(func.sum(u.gpu_seconds).filter(inside), 0.0) + func.coalesce(
        func.sum(u.gpu_seconds * share).filter(~inside), 0.0
    )
    by_project = "programme" in keys or "project" in keys
    inner_cols: dict[str, Any] = {"project_id": u.project_id} if by_project else {}
    for key, column in (("grant", u.grant_id), ("user", u.user_id), ("flavor", u.flavor), ("tier", u.tier)):
        if key in keys:
            inner_cols[key] = column
    inner_cols["currency"] = u.currency
    labelled = [c.label(name) for name, c in inner_cols.items()]
    inner = (
        select(*labelled, charge.label("charge"), gpu_s.label("gpu_s"), func.count().label("n"))
        .where(*where)
        .group_by(*labelled)
        .subquery()
    )
    projects, programmes, users = Project.__table__, Programme.__table__, User.__table__
    joined: Any = inner
    if by_project:
        joined = joined.join(projects, projects.c.id == inner.c.project_id)
    if "programme" in keys:
        joined = joined.join(programmes, programmes.c.id == projects.c.programme_id)
    if "user" in keys:
        joined = joined.join(users, users.c.id == inner.c.user)
    names = {"programme": programmes.c.name, "project": projects.c.name, "user": users.c.name}
    group = [names[key] if key in names else inner.c[key] for key in keys] + [inner.c.currency]
    totals: list[Any] = [inner.c.charge, inner.c.gpu_s, inner.c.n]
    regroup = "programme" in keys and "project" not in keys  # several projects per row
    if regroup:
        totals = [func.sum(t) for t in totals]
    stmt = select(*group, cast(totals[0], BigInteger), *totals[1:]).select_from(joined)
    if regroup:
        stmt = stmt.group_by(*group)
    order = [c.collate("C") if postgres and c.type.python_type is str else c for c in group]
    return stmt.order_by(*[c.asc().nulls_first() for c in order])


def _sqlite_datetime(value: datetime) -> str:
    """A UTC datetime as SQLAlchemy stores it in SQLite: naive, ``YYYY-MM-DD HH:MM:SS.ffffff``."""
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _processor(table: Any, dialect: Any) -> Callable[[datetime], Any]:
    process = table.c.start.type.dialect_impl(dialect).bind_processor(dialect)
    return cast_type(Callable[[datetime], Any], process)


def _sqlite_format_ok(table: Any, dialect: Any) -> bool:
    sample = datetime(2025, 4, 1, 9, 30, 5, 120, tzinfo=UTC)
    return bool(_processor(table, dialect)(sample) == _sqlite_datetime(sample))


def _copy_line(row: tuple[Any, ...]) -> str:
    """One row in PostgreSQL's COPY text format. No field needs escaping: names, flavors, tiers and
    currencies are checked (letters, digits and ``_.:/-``); the rest are numbers and datetimes."""
    job, attempt, t0, t1, start, end, project, user, grant, flavor, tier, gpu_s, charge, currency, final = row
    grant_text = _COPY_NULL if grant is None else grant
    return (
        f"{job}\t{attempt}\t{t0!r}\t{t1!r}\t{start.isoformat()}\t{end.isoformat()}\t{project}\t{user}\t"
        f"{grant_text}\t{flavor}\t{tier}\t{gpu_s!r}\t{charge}\t{currency}\t{'t' if final else 'f'}\n"
    )


def _chunks(items: Sequence[Any]) -> Iterable[list[Any]]:
    for i in range(0, len(items), _CHUNK):
        yield list(items[i : i + _CHUNK])


def _latest(rows: list[UsageLike]) -> list[UsageLike]:
    """The records of one attempt's latest metering among ``rows`` (duplicates once, by start):
    final records if any, else the provisional ones; for each start the one that ends last."""
    if any(r.final for r in rows):
        rows = [r for r in rows if r.final]
    by_start: dict[datetime, UsageLike] = {}
    for r in rows:
        seen = by_start.get(r.start)
        if seen is None or _rank(r) > _rank(seen):
            by_start[r.start] = r
    return [by_start[start] for start in sorted(by_start)]


def _rank(r: UsageLike) -> tuple[Any, ...]:
    """Orders two records of one attempt and start: the longer wins; the rest only makes it total."""
    return (r.end, r.charge, r.currency, -1 if r.grant_id is None else r.grant_id, r.gpu_seconds, r.flavor, r.tier)


def _money(value: object, where: str) -> Decimal:
    return money(value, where)


def _positive_money(value: object, where: str) -> Decimal:
    number = money(value, where)
    if number <= 0:
        raise InvalidValueError(where, f"must be positive, got {number}")
    return number


def _micro(value: Decimal) -> int:
    return int(value.quantize(MICRO, rounding=ROUND_HALF_EVEN).scaleb(6))


def _price_entries(prices: Mapping[tuple[str, str], object]) -> dict[tuple[str, str], Decimal]:
    if not isinstance(prices, Mapping):
        raise InvalidValueError("rate card prices", f"must map (flavor, tier) to a price, got {prices!r}")
    out = {}
    for key, value in prices.items():
        if not isinstance(key, tuple) or len(key) != 2:
            raise InvalidValueError("rate card prices", f"a key must be (flavor, tier), got {key!r}")
        flavor, tier = key
        if not is_gpu_flavor(check_name("rate card flavor", flavor)):
            raise InvalidValueError("rate card prices", f"{flavor!r} is not a GPU flavor (gpu.<model>)")
        if tier not in TIERS:
            raise InvalidValueError("rate card prices", f"tier {tier!r} is not one of {list(TIERS)}")
        price = _money(value, f"price of {flavor} ({tier})")
        if price < 0:
            raise InvalidValueError("rate card prices", f"price of {flavor} ({tier}) must not be negative, got {price}")
        out[str(flavor), str(tier)] = price
    return out


def _span(start: datetime, end: datetime | None) -> str:
    return f"[{start.isoformat()}, {'open-ended' if end is None else end.isoformat()})"


def _check_terms(
    kind: GrantKind | str, amount: object, currency: str | None, start: datetime, end: datetime,
    flavors: Sequence[str] | None,
) -> tuple[GrantKind, Decimal, str, datetime, datetime, list[str] | None]:  # fmt: skip
    """``kumo.grants.check_terms``, with a JSON-ready list of flavors."""
    k, value, unit, a, b, limited = check_terms(kind, amount, currency, start, end, flavors)
    return k, value, unit, a, b, None if limited is None else list(limited)


def _grant_status(status: GrantStatus | str) -> GrantStatus:
    try:
        return GrantStatus(status)
    except ValueError:
        raise InvalidValueError("grant status", f"{status!r} is not one of {[s.value for s in GrantStatus]}") from None


def _request_status(status: RequestStatus | str) -> RequestStatus:
    try:
        return RequestStatus(status)
    except ValueError:
        known = [s.value for s in RequestStatus]
        raise InvalidValueError("request status", f"{status!r} is not one of {known}") from None


def _status_at(grant: Grant, used: Decimal, now: datetime) -> GrantStatus:
    if now >= grant.end:
        return GrantStatus.EXPIRED
    if used >= grant.amount:
        return GrantStatus.EXHAUSTED
    return GrantStatus.ACTIVE


def _comment(text: str) -> str:
    if not isinstance(text, str) or len(text) > 4000:
        raise InvalidValueError("comment", "must be a string of at most 4,000 characters")
    return text


def _gang(placement: Mapping[str, Any], spec: Mapping[str, Any]) -> tuple[str, int]:
    """The flavor and milli-GPUs of a whole gang: from its placement, else from its spec."""
    flavor = gpu_flavor(str(placement.get("model", "")))
    workers = placement.get("workers") or []
    milli = sum(len(w.get("gpus", ())) * int(w.get("gpu_milli", GPU_MILLI)) for w in workers)
    if milli <= 0:
        per_worker = int(spec.get("gpus", 0)) * GPU_MILLI or int(spec.get("gpu_milli", 0))
        milli = int(spec.get("workers", 1)) * per_worker
    return flavor, milli
