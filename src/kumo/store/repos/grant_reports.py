"""Queries the API's grant and report routes need beyond :class:`~kumo.store.repos.grants.GrantRepository`:
grants and requests of a *set* of projects (what a caller may read) in one query each, a usage
report over several projects, and GPU use per project and UTC day (the report's plot).

``projects=None`` everywhere means every project (admins and viewers); an empty collection means
none. Names that do not exist are simply not matched (the caller resolved them already).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Float, case, cast, func, select
from sqlalchemy.orm import selectinload

from kumo.core.errors import InvalidValueError
from kumo.store.columns import as_utc
from kumo.store.models import (
    Attempt,
    Grant,
    GrantRequest,
    GrantStatus,
    Job,
    Programme,
    Project,
    RequestStatus,
    UsageEntry,
)
from kumo.store.repos._common import Repository, resolve
from kumo.store.repos.grants import GROUP_KEYS, GrantRepository, UsageTotal

_EPOCH = date(1970, 1, 1)
_GRANT_LOADS = (selectinload(Grant.project).selectinload(Project.programme), selectinload(Grant.created_by))


@dataclass(frozen=True, slots=True)
class DailyUse:
    """GPU-seconds of one project on one UTC day inside a period (records clipped to it)."""

    day: date
    programme: str
    project: str
    gpu_seconds: float

    @property
    def gpu_hours(self) -> float:
        return self.gpu_seconds / 3600


class GrantReports(Repository):
    """Scoped reads of grants, requests and usage (see the module docstring)."""

    def _project_ids(self, projects: Collection[str] | None, programme: Programme | str | None) -> Any:
        """A subquery of project ids in ``projects`` and ``programme`` (None: no limit), or None for all."""
        if projects is None and programme is None:
            return None
        stmt = select(Project.id)
        if projects is not None:
            stmt = stmt.where(Project.name.in_(sorted(projects)))
        if programme is not None:
            stmt = stmt.where(Project.programme_id == resolve(self.session, Programme, "programme", programme).id)
        return stmt

    def grants(
        self,
        projects: Collection[str] | None = None,
        *,
        programme: Programme | str | None = None,
        status: Sequence[GrantStatus | str] | None = None,
    ) -> list[Grant]:
        """Grants of ``projects`` (None: all), of ``programme``'s projects, in ``status``, by id (with
        their project, programme and creator loaded in a few queries, not one per grant)."""
        stmt = select(Grant).options(*_GRANT_LOADS)
        ids = self._project_ids(projects, programme)
        if ids is not None:
            stmt = stmt.where(Grant.project_id.in_(ids))
        if status is not None:
            stmt = stmt.where(Grant.status.in_([_status(GrantStatus, s, "grant status") for s in status]))
        return list(self.session.scalars(stmt.order_by(Grant.id)))

    def requests(
        self,
        projects: Collection[str] | None = None,
        *,
        programme: Programme | str | None = None,
        status: RequestStatus | str | None = None,
        grant_id: int | None = None,
    ) -> list[GrantRequest]:
        """Requests about grants of ``projects`` (None: all), by id (their grants and people loaded with them)."""
        stmt = select(GrantRequest).join(Grant, GrantRequest.grant_id == Grant.id).options(
            *(selectinload(GrantRequest.grant).options(load) for load in _GRANT_LOADS),
            selectinload(GrantRequest.requested_by), selectinload(GrantRequest.decided_by),
        )
        ids = self._project_ids(projects, programme)
        if ids is not None:
            stmt = stmt.where(Grant.project_id.in_(ids))
        if status is not None:
            stmt = stmt.where(GrantRequest.status == _status(RequestStatus, status, "request status"))
        if grant_id is not None:
            stmt = stmt.where(GrantRequest.grant_id == grant_id)
        return list(self.session.scalars(stmt.order_by(GrantRequest.id)))

    def usage_report(
        self,
        start: datetime,
        end: datetime,
        group_by: Sequence[str],
        projects: Collection[str] | None = None,
        *,
        programme: Programme | str | None = None,
    ) -> list[UsageTotal]:
        """:meth:`GrantRepository.usage_report` over several projects: one report per project, the
        rows of equal groups and currency summed, sorted as the store sorts them (unfunded first)."""
        repo = GrantRepository(self.session)
        if projects is None:
            return repo.usage_report(start, end, group_by, programme=programme)
        keys = list(group_by)
        wanted = set(projects)
        if programme is not None:
            prog = resolve(self.session, Programme, "programme", programme)
            wanted &= {p.name for p in self.session.scalars(select(Project).where(Project.programme_id == prog.id))}
        if not wanted:
            _check_period(keys, start, end)
            return []
        merged: dict[tuple[Any, ...], UsageTotal] = {}
        for name in sorted(wanted):
            for row in repo.usage_report(start, end, keys, project=name):
                key = (*(row.group[k] for k in keys), row.currency)
                seen = merged.get(key)
                merged[key] = row if seen is None else UsageTotal(
                    dict(seen.group), seen.currency, seen.gpu_seconds + row.gpu_seconds, seen.charge + row.charge,
                    seen.records + row.records,
                )  # fmt: skip
        return [merged[key] for key in sorted(merged, key=_order)]

    def daily_use(self, start: datetime, end: datetime, projects: Collection[str] | None = None) -> list[DailyUse]:
        """GPU-seconds per project and UTC day in ``[start, end)``, records clipped to the period
        (usage records never cross a midnight, so each belongs to the day it starts on)."""
        a, b = as_utc(start, "start"), as_utc(end, "end")
        if b <= a:
            raise InvalidValueError("usage report", f"end {b} is not after start {a}")
        p0, p1 = a.timestamp(), b.timestamp()
        u = UsageEntry.__table__.c
        share = (case((u.t1 < p1, u.t1), else_=p1) - case((u.t0 > p0, u.t0), else_=p0)) / (u.t1 - u.t0)
        seconds = func.sum(case((u.t1 > u.t0, u.gpu_seconds * share), else_=cast(u.gpu_seconds, Float)))
        if self.session.get_bind().dialect.name == "sqlite":
            day = cast(u.t0 / 86400, BigInteger)  # truncation is the floor: t0 is positive
        else:
            day = cast(func.floor(u.t0 / 86400), BigInteger)
        inner = (
            select(u.project_id.label("project_id"), day.label("day"), seconds.label("gpu_s"))
            .where(u.t1 > p0, u.t0 < p1)
            .group_by(u.project_id, day)
        )
        ids = self._project_ids(projects, None)
        if ids is not None:
            inner = inner.where(u.project_id.in_(ids))
        sub = inner.subquery()
        stmt = (
            select(sub.c.day, Programme.name, Project.name, sub.c.gpu_s)
            .join(Project, Project.id == sub.c.project_id)
            .join(Programme, Programme.id == Project.programme_id)
            .order_by(sub.c.day, Programme.name, Project.name)
        )
        return [DailyUse(_EPOCH + timedelta(days=int(n)), prog, proj, float(gpu_s or 0.0))
                for n, prog, proj, gpu_s in self.session.execute(stmt)]  # fmt: skip


    def attempt_spans(self, until: datetime, since: datetime | None = None,
                      projects: Collection[str] | None = None) -> list[tuple[str, dict[str, Any], datetime,
                                                                            datetime | None]]:
        """``(project, placement, started_at, ended_at)`` of every attempt that ran inside
        ``[since, until)`` (running ones have ``ended_at`` None), in one query: what ``GET /usage``
        sums straight from the attempts, without waiting for metering."""
        stmt = (select(Project.name, Attempt.placement, Attempt.started_at, Attempt.ended_at)
                .join(Job, Attempt.job_id == Job.id).join(Project, Job.project_id == Project.id)
                .where(Attempt.started_at < as_utc(until, "until")))
        if since is not None:
            stmt = stmt.where((Attempt.ended_at.is_(None)) | (Attempt.ended_at > as_utc(since, "since")))
        if projects is not None:
            stmt = stmt.where(Project.name.in_(list(projects)))
        return [(p, dict(pl), a, b) for p, pl, a, b in self.session.execute(stmt)]


def _order(key: tuple[Any, ...]) -> tuple[Any, ...]:
    """None (unfunded) first, then values; strings in byte order, as the store's report sorts them."""
    return tuple((0, "") if v is None else (1, v.encode() if isinstance(v, str) else v) for v in key)


def _status(kind: Any, value: object, where: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise InvalidValueError(where, f"{value!r} is not one of {[s.value for s in kind]}") from None


def _check_period(keys: list[str], start: datetime, end: datetime) -> None:
    """The checks the store's report makes, for a report that asks the store nothing."""
    unknown = [k for k in keys if k not in GROUP_KEYS]
    if unknown or len(set(keys)) != len(keys):
        raise InvalidValueError("group_by", f"must be distinct names from {list(GROUP_KEYS)}, got {keys}")
    a, b = as_utc(start, "start"), as_utc(end, "end")
    if b <= a:
        raise InvalidValueError("usage report", f"end {b} is not after start {a}")


def total_by_currency(rows: Sequence[UsageTotal]) -> dict[str, tuple[Decimal, float, int]]:
    """``{currency: (charge, gpu_seconds, records)}`` over a report's rows, by currency."""
    out: dict[str, tuple[Decimal, float, int]] = {}
    for row in rows:
        charge, seconds, records = out.get(row.currency, (Decimal(0), 0.0, 0))
        out[row.currency] = (charge + row.charge, seconds + row.gpu_seconds, records + row.records)
    return dict(sorted(out.items()))
