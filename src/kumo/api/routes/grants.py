"""Grants, their requests, the rate card and usage reports (``docs/concepts/grants.md``).

- rate card: ``GET /ratecard`` (anyone with a role), ``POST /ratecard/versions`` (admins);
- grants: ``GET /grants``, ``GET /grants/{id}`` (with used, remaining, forecast and pace),
  ``GET /grants/{id}/burndown`` (JSON, or ``?format=png``), ``POST /grants`` and
  ``POST /grants/{id}/revoke`` (the project's programme manager or an admin);
- requests: ``POST /grant-requests`` (``new``, ``renewal`` or ``topup``; a member of the project,
  its programme manager or an admin), ``GET /grant-requests``, ``POST /grant-requests/{id}/approve``
  and ``/deny`` (the programme manager or an admin; never one's own request);
- reports: ``GET /usage/report`` (JSON, CSV or Parquet) and ``GET /usage/report/plot`` (PNG).

A grant or request of a project the caller may not read answers 404, as a job does. Listings and
reports cover only what the caller may read. Every change appends an audit entry (``grant/<id>``,
``grant-request/<id>``, ``ratecard/<id>``) in its transaction; refused input writes nothing.
Money is a decimal string in JSON (:mod:`kumo.api.schemas_grants`). Plots (matplotlib) and
Parquet (pyarrow) are imported only when asked for.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Response, status
from pydantic import AwareDatetime
from sqlalchemy import select
from sqlalchemy.orm import Session

from kumo.api import authz
from kumo.api.authz import Principal
from kumo.api.deps import CurrentPrincipal, NowDep, ReadSessionDep, RemoteAddr, SessionDep
from kumo.api.problems import Problem
from kumo.api.routes._common import audit
from kumo.api.schemas import NAME_PATTERN
from kumo.api.schemas_grants import (
    AnyGrantRequest,
    BurndownPublic,
    BurnPointPublic,
    ComputeGrantCreate,
    ComputeGrantDetail,
    ComputeGrantPublic,
    Decision,
    Denial,
    ForecastPublic,
    GrantRequestPublic,
    GrantRevoke,
    GrantStatusName,
    NewGrantRequest,
    RateCardPublic,
    RatePricePublic,
    RateVersionCreate,
    RateVersionPublic,
    RenewalRequest,
    RequestStatusName,
    UsageReportPublic,
    UsageReportRow,
    UsageReportTotal,
)
from kumo.grants import RateCardVersion, Tier, burn_down, forecast
from kumo.grants.pacing import scheduling_pace
from kumo.store import ForbiddenError, Grant, GrantRepository, GrantRequest, NotFoundError, TenancyRepository, User
from kumo.store.models import RateVersion
from kumo.store.repos.grant_reports import GrantReports, total_by_currency
from kumo.store.repos.grants import GROUP_KEYS, UsageTotal

router = APIRouter(tags=["grants"])
NameFilter = Annotated[str | None, Query(pattern=NAME_PATTERN)]
GrantId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the grant's id")]
RequestId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the request's id")]
PNG = "image/png"
CSV = "text/csv; charset=utf-8"
PARQUET = "application/vnd.apache.parquet"
PNG_RESPONSE: dict[int | str, dict[str, Any]] = {200: {"content": {PNG: {}}, "description": "JSON, or a PNG plot"}}


# --------------------------------------------------------------------------- shapes


def grant_public(grant: Grant, used: Decimal) -> ComputeGrantPublic:
    return ComputeGrantPublic(**_grant_fields(grant, used))


def _grant_fields(grant: Grant, used: Decimal) -> dict[str, Any]:
    used = used.quantize(Decimal("0.000001"))
    return {
        "id": grant.id, "name": grant.name, "project": grant.project.name,
        "programme": grant.project.programme.name, "kind": grant.kind.value, "amount": str(grant.amount),
        "currency": grant.currency, "flavors": None if grant.flavors is None else list(grant.flavors),
        "start": grant.start, "end": grant.end, "status": grant.status.value, "created_by": grant.created_by.name,
        "created_at": grant.created_at, "revoked_at": grant.revoked_at, "version": grant.version,
        "used": str(used), "remaining": str(grant.amount - used),
        "percent_used": round(float(used / grant.amount) * 100, 4),
    }  # fmt: skip


def request_public(request: GrantRequest, used: Decimal) -> GrantRequestPublic:
    grant = request.grant
    amount = request.amount if request.amount is not None else (grant.amount if request.kind.value == "new" else None)
    return GrantRequestPublic(
        id=request.id, kind=request.kind.value, grant_id=grant.id, project=grant.project.name,
        programme=grant.project.programme.name, amount=None if amount is None else str(amount),
        new_end=request.new_end, comment=request.comment, requested_by=request.requested_by.name,
        requested_at=request.requested_at, status=request.status.value,
        decided_by=None if request.decided_by is None else request.decided_by.name, decided_at=request.decided_at,
        decision_comment=request.decision_comment, grant=grant_public(grant, used),
    )  # fmt: skip


def version_public(row: RateVersion, who: dict[int, str]) -> RateVersionPublic:
    listed = {(e.flavor, e.tier) for e in row.entries}
    prices = [RatePricePublic(flavor=e.flavor, tier=e.tier, price=str(e.price)) for e in row.entries]
    effective = RateCardVersion.of(row)
    for flavor, tier in sorted(listed):
        if tier == Tier.GUARANTEED.value and (flavor, Tier.PREEMPTIBLE.value) not in listed:
            derived = effective.price(flavor, Tier.PREEMPTIBLE)
            prices.append(RatePricePublic(flavor=flavor, tier=Tier.PREEMPTIBLE.value, price=str(derived), derived=True))
    prices.sort(key=lambda p: (p.flavor, p.tier))
    return RateVersionPublic(
        id=row.id, label=row.label, effective_from=row.effective_from, effective_to=row.effective_to,
        currency=row.currency, preemptible_discount=str(row.preemptible_discount), prices=prices,
        created_by=None if row.created_by_id is None else who.get(row.created_by_id), created_at=row.created_at,
    )  # fmt: skip


# --------------------------------------------------------------------------- access


WHAT = {
    "ratecard.read": "read the rate card",
    "ratecard.write": "change the rate card",
    "grants.read": "read grants",
    "grants.write": "create or revoke grants",
    "grants.request": "request grants, renewals or top-ups",
    "grants.decide": "approve or deny grant requests",
    "reports.read": "read usage reports",
}


def require_to(who: Principal, action: str, programme: str | None = None, project: str | None = None) -> None:
    """``deps.require`` with a sentence about grants: ``user 'mo' may not approve or deny grant
    requests of project 'sakura': it needs admin, or programme manager of 'geniac'``."""
    if authz.allowed(who, action, programme, project):
        return
    needs = authz.denial(who, action, programme, project).split(": it needs ", 1)[-1]
    of = f" of project {project!r}" if project is not None else ""
    raise Problem(403, f"user {who.user!r} may not {WHAT[action]}{of}: it needs {needs}")


def readable_grant(session: Session, who: Principal, grant_id: int, action: str = "grants.read") -> Grant:
    """The grant, if ``who`` may read it (404 otherwise, as for a missing one) and may do ``action`` (403)."""
    grant = GrantRepository(session).get_grant(grant_id)
    programme, project = grant.project.programme.name, grant.project.name
    if not authz.allowed(who, "grants.read", programme, project):
        raise NotFoundError("grant", grant_id)
    require_to(who, action, programme, project)
    return grant


def readable_request(session: Session, who: Principal, request_id: int, action: str = "grants.read") -> GrantRequest:
    request = GrantRepository(session).get_request(request_id)
    programme, project = request.grant.project.programme.name, request.grant.project.name
    if not authz.allowed(who, "grants.read", programme, project):
        raise NotFoundError("grant request", request_id)
    require_to(who, action, programme, project)
    return request


def _visible(session: Session, who: Principal, action: str, project: str | None) -> list[str] | None:
    """The projects a listing covers: ``[project]`` (checked: 403), the visible ones, or None (every
    project, for admins and viewers)."""
    tenancy = TenancyRepository(session)
    if project is not None:
        row = tenancy.get_project(project)
        require_to(who, action, row.programme.name, row.name)
        return [row.name]
    if not who.grants:
        require_to(who, action)
    return _sorted(authz.visible_projects(who, {p.name: p.programme.name for p in tenancy.list_projects()}))


def _sorted(names: set[str] | None) -> list[str] | None:
    return None if names is None else sorted(names)


def _used(session: Session, grants: Sequence[Grant]) -> dict[int, Decimal]:
    return GrantRepository(session).used_by_grant([g.id for g in grants]) if grants else {}


def _unit(unit: str) -> tuple[str, str | None]:
    """(kind, currency) of a grant counted in ``unit``."""
    return ("gpu_hours", None) if unit == "gpu_hours" else ("credits", unit)


def _json(value: Any) -> Any:
    """Request data for the audit log: decimals as strings, date-times in ISO 8601."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return value


# --------------------------------------------------------------------------- rate card


@router.get("/ratecard")
def get_ratecard(who: CurrentPrincipal, session: ReadSessionDep, now: NowDep) -> RateCardPublic:
    """Every version of the rate card, oldest first, with its prices (derived preemptible prices marked)."""
    require_to(who, "ratecard.read")
    repo = GrantRepository(session)
    versions = repo.rate_versions()
    users = _user_names(session, {v.created_by_id for v in versions if v.created_by_id is not None})
    current = repo.rate_version_at(now)
    return RateCardPublic(current=None if current is None else current.id,
                          versions=[version_public(v, users) for v in versions])


def _user_names(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return {id_: name for id_, name in session.execute(select(User.id, User.name).where(User.id.in_(sorted(ids))))}


@router.post("/ratecard/versions", status_code=status.HTTP_201_CREATED)
def add_rate_version(
    body: RateVersionCreate, who: CurrentPrincipal, session: SessionDep, now: NowDep, addr: RemoteAddr
) -> RateVersionPublic:
    """Add a version (admins). One that overlaps a stored version is a 409 naming both."""
    require_to(who, "ratecard.write")
    prices: dict[tuple[str, str], Decimal] = {}
    for p in body.prices:
        if (p.flavor, p.tier) in prices:
            raise Problem(422, f"prices: {p.flavor} ({p.tier}) is listed twice")
        prices[p.flavor, p.tier] = p.price
    row = GrantRepository(session).add_rate_version(
        body.effective_from, body.effective_to, body.currency, prices, now=now,
        preemptible_discount=body.preemptible_discount, created_by=who.user, close_previous=body.close_previous,
    )  # fmt: skip
    audit(session, who, "ratecard.add", f"ratecard/{row.id}", now=now, remote_addr=addr, data=_json(body))
    return version_public(row, {row.created_by_id: who.user} if row.created_by_id is not None else {})


# --------------------------------------------------------------------------- grants


@router.get("/grants")
def list_grants(
    who: CurrentPrincipal,
    session: ReadSessionDep,
    project: NameFilter = None,
    programme: NameFilter = None,
    status: Annotated[list[GrantStatusName] | None, Query(description="repeatable")] = None,
) -> list[ComputeGrantPublic]:
    """The grants the caller may read, by id (filters: project, programme, status)."""
    projects = _visible(session, who, "grants.read", project)
    grants = GrantReports(session).grants(projects, programme=programme, status=status)
    used = _used(session, grants)
    return [grant_public(g, used.get(g.id, Decimal(0))) for g in grants]


@router.get("/grants/{grant_id}")
def get_grant(grant_id: GrantId, who: CurrentPrincipal, session: ReadSessionDep, now: NowDep) -> ComputeGrantDetail:
    """One grant: used, remaining, its forecast and pace at the burn rate of the last 7 days, its requests."""
    grant = readable_grant(session, who, grant_id)
    repo = GrantRepository(session)
    daily = repo.daily_usage(grant.id)
    used = sum(daily.values(), Decimal(0))
    outlook = forecast(grant, daily, now)
    pace = ForecastPublic(
        now=outlook.now, window_days=outlook.window_days, fraction_used=outlook.fraction_used,
        expected_fraction=outlook.expected_fraction, pace=outlook.pace,
        scheduling_pace=scheduling_pace(grant, used, now), burn_rate_per_day=str(outlook.burn_rate_per_day),
        projected_exhaustion=outlook.projected_exhaustion,
        projected_spend_at_end=str(outlook.projected_spend_at_end), exhausted=outlook.exhausted,
        under_spend=outlook.under_spend,
    )  # fmt: skip
    requests = [request_public(r, used) for r in repo.list_requests(grant_id=grant.id)]
    return ComputeGrantDetail(**_grant_fields(grant, used), forecast=pace, requests=requests)


@router.get("/grants/{grant_id}/burndown", response_model=BurndownPublic, responses=PNG_RESPONSE)
def get_burndown(
    grant_id: GrantId, who: CurrentPrincipal, session: ReadSessionDep, now: NowDep,
    format: Annotated[Literal["json", "png"], Query()] = "json",
) -> Any:  # fmt: skip
    """One point per UTC day from the start to now (or the end): used, remaining and the linear plan.
    ``format=png``: the same as a plot."""
    grant = readable_grant(session, who, grant_id)
    points = burn_down(grant, GrantRepository(session).daily_usage(grant.id), now)
    body = BurndownPublic(
        grant_id=grant.id, currency=grant.currency, amount=str(grant.amount),
        points=[BurnPointPublic(day=p.day, used=str(p.used), remaining=str(p.remaining), planned=str(p.planned))
                for p in points],
    )  # fmt: skip
    if format == "json":
        return body
    label = grant.name or f"grant #{grant.id}"
    unit = "GPU-hours" if grant.currency == "gpu_hours" else grant.currency

    def draw(ax: Any) -> None:
        days = [p.day for p in points]
        ax.plot(days, [float(p.used) for p in points], label="used", color="tab:red")
        ax.plot(days, [float(p.remaining) for p in points], label="remaining", color="tab:blue")
        ax.plot(days, [float(p.planned) for p in points], label="planned", color="tab:gray", linestyle="--")
        ax.axhline(float(grant.amount), color="black", linewidth=0.5)
        ax.set_title(f"{label} ({grant.project.name}): {grant.amount:,.0f} {unit}, "
                     f"{grant.start:%Y-%m-%d} to {grant.end:%Y-%m-%d}")
        ax.set_ylabel(unit)
        if not points:
            ax.text(0.5, 0.5, "the grant has not started", transform=ax.transAxes, ha="center")
        ax.legend(loc="best")

    return Response(_png(draw), media_type=PNG)


@router.post("/grants", status_code=status.HTTP_201_CREATED)
def create_grant(
    body: ComputeGrantCreate, who: CurrentPrincipal, session: SessionDep, now: NowDep, addr: RemoteAddr
) -> ComputeGrantPublic:
    """An active grant, made directly by the project's programme manager or an admin."""
    project = TenancyRepository(session).get_project(body.project)
    require_to(who, "grants.write", project.programme.name, project.name)
    kind, currency = _unit(body.unit)
    repo = GrantRepository(session)
    grant = repo.create_grant(project, kind, body.amount, body.start, body.end, created_by=who.user, now=now,
                              currency=currency, flavors=body.flavors, name=body.name)  # fmt: skip
    repo.refresh_statuses(now, [grant.id])
    audit(session, who, "grants.create", f"grant/{grant.id}", now=now, remote_addr=addr, data=_json(body))
    return grant_public(grant, Decimal(0))


@router.post("/grants/{grant_id}/revoke")
def revoke_grant(
    grant_id: GrantId, who: CurrentPrincipal, session: SessionDep, now: NowDep, addr: RemoteAddr,
    body: GrantRevoke | None = None,
) -> ComputeGrantPublic:  # fmt: skip
    """Stop the grant taking charges from now on (usage before stays charged to it); 409 if already revoked."""
    grant = readable_grant(session, who, grant_id, "grants.write")
    repo = GrantRepository(session)
    repo.revoke(grant.id, by=who.user, now=now)
    comment = "" if body is None else body.comment
    audit(session, who, "grants.revoke", f"grant/{grant.id}", now=now, remote_addr=addr,
          data={"comment": comment, "project": grant.project.name})
    return grant_public(grant, repo.used_by_grant([grant.id]).get(grant.id, Decimal(0)))


# --------------------------------------------------------------------------- requests


@router.post("/grant-requests", status_code=status.HTTP_201_CREATED)
def create_request(
    body: Annotated[AnyGrantRequest, Body(discriminator="kind")],
    who: CurrentPrincipal, session: SessionDep, now: NowDep, addr: RemoteAddr,
) -> GrantRequestPublic:  # fmt: skip
    """Ask for a new grant (``kind: new``), a renewal or a top-up; a programme manager decides."""
    repo = GrantRepository(session)
    if isinstance(body, NewGrantRequest):
        project = TenancyRepository(session).get_project(body.project)
        require_to(who, "grants.request", project.programme.name, project.name)
        kind, currency = _unit(body.unit)
        request = repo.request_grant(
            project, kind, body.amount, body.start, body.end, requested_by=who.user, now=now, currency=currency,
            flavors=body.flavors, name=body.name, comment=body.comment,
        )  # fmt: skip
    else:
        grant = readable_grant(session, who, body.grant_id, "grants.request")
        if isinstance(body, RenewalRequest):
            request = repo.request_renewal(grant.id, body.new_end, requested_by=who.user, now=now, comment=body.comment,
                                           amount=body.amount)
        else:
            request = repo.request_topup(grant.id, body.amount, requested_by=who.user, now=now, comment=body.comment)
    audit(session, who, "grants.request", f"grant-request/{request.id}", now=now, remote_addr=addr,
          data={**_json(body), "grant_id": request.grant_id})
    return request_public(request, repo.used_by_grant([request.grant_id]).get(request.grant_id, Decimal(0)))


@router.get("/grant-requests")
def list_requests(
    who: CurrentPrincipal,
    session: ReadSessionDep,
    status: Annotated[RequestStatusName | None, Query()] = None,
    project: NameFilter = None,
    programme: NameFilter = None,
    grant_id: Annotated[int | None, Query(ge=1)] = None,
) -> list[GrantRequestPublic]:
    """Requests about grants the caller may read, by id (a programme manager's queue: ``?status=requested``)."""
    projects = _visible(session, who, "grants.read", project)
    found = GrantReports(session).requests(projects, programme=programme, status=status, grant_id=grant_id)
    used = GrantRepository(session).used_by_grant({r.grant_id for r in found}) if found else {}
    return [request_public(r, used.get(r.grant_id, Decimal(0))) for r in found]


def _decide(
    session: Session, who: Principal, request_id: int, verb: Literal["approve", "deny"], comment: str, now: datetime,
    addr: str | None,
) -> GrantRequestPublic:  # fmt: skip
    request = readable_request(session, who, request_id, "grants.decide")
    repo = GrantRepository(session)
    decide = repo.approve if verb == "approve" else repo.deny
    try:
        decided = decide(request.id, decided_by=who.user, now=now, comment=comment)
    except ForbiddenError as exc:
        programme = request.grant.project.programme.name
        raise Problem(403, f"{exc}: another programme manager of {programme!r} or an admin must decide it") from None
    audit(session, who, f"grants.{verb}", f"grant-request/{request.id}", now=now, remote_addr=addr,
          data={"comment": comment, "kind": decided.kind.value, "grant_id": decided.grant_id})
    return request_public(decided, repo.used_by_grant([decided.grant_id]).get(decided.grant_id, Decimal(0)))


@router.post("/grant-requests/{request_id}/approve")
def approve_request(
    request_id: RequestId, who: CurrentPrincipal, session: SessionDep, now: NowDep, addr: RemoteAddr,
    body: Decision | None = None,
) -> GrantRequestPublic:  # fmt: skip
    """Grant it (a programme manager of the grant's programme, or an admin; never one's own request):
    a new grant becomes active, a renewal moves the end (and adds its amount, if any), a top-up adds to
    the amount."""
    return _decide(session, who, request_id, "approve", "" if body is None else body.comment, now, addr)


@router.post("/grant-requests/{request_id}/deny")
def deny_request(
    request_id: RequestId, body: Denial, who: CurrentPrincipal, session: SessionDep, now: NowDep, addr: RemoteAddr
) -> GrantRequestPublic:
    """Refuse it, saying why (``comment`` is required)."""
    return _decide(session, who, request_id, "deny", body.comment, now, addr)


# --------------------------------------------------------------------------- reports


def parse_by(by: str) -> list[str]:
    """``by=programme,project`` as a list of report keys; a 422 naming a bad or repeated key."""
    keys = [k.strip() for k in by.split(",")]
    known = ", ".join(GROUP_KEYS)
    for key in keys:
        if key not in GROUP_KEYS:
            raise Problem(422, f"by: unknown key {key!r}; use a comma-separated list of {known}")
    if len(set(keys)) != len(keys):
        raise Problem(422, f"by: lists a key twice: {by!r}")
    return keys


def _period(since: datetime, until: datetime) -> tuple[datetime, datetime]:
    if since >= until:
        raise Problem(422, f"since ({since.isoformat()}) must be before until ({until.isoformat()})")
    return since.astimezone(UTC), until.astimezone(UTC)


Since = Annotated[AwareDatetime, Query(description="ISO 8601 with a time zone: the period's start (included)")]
Until = Annotated[AwareDatetime, Query(description="ISO 8601 with a time zone: the period's end (excluded)")]


@router.get("/usage/report", response_model=UsageReportPublic,
            responses={200: {"content": {CSV: {}, PARQUET: {}}, "description": "JSON, CSV or Parquet"}})
def usage_report(
    who: CurrentPrincipal,
    session: ReadSessionDep,
    since: Since,
    until: Until,
    by: Annotated[str, Query(max_length=200, description=f"comma-separated, of {', '.join(GROUP_KEYS)}")] = "project",
    project: NameFilter = None,
    programme: NameFilter = None,
    format: Annotated[Literal["json", "csv", "parquet"], Query()] = "json",
) -> Any:
    """GPU-hours and charges in ``[since, until)`` of the projects the caller may read, grouped by
    ``by`` and always by currency; records crossing the period's ends are clipped to it."""
    start, end = _period(since, until)
    keys = parse_by(by)
    projects = _visible(session, who, "reports.read", project)
    rows = GrantReports(session).usage_report(start, end, keys, projects, programme=programme)
    if format == "csv":
        return _download(_csv(keys, rows), CSV, start, end, "csv")
    if format == "parquet":
        return _download(_parquet(keys, rows), PARQUET, start, end, "parquet")
    items = [UsageReportRow(group=dict(r.group), currency=r.currency, gpu_hours=r.gpu_hours, charge=str(r.charge),
                            records=r.records) for r in rows]  # fmt: skip
    totals = [UsageReportTotal(currency=c, gpu_hours=s / 3600, charge=str(charge), records=n)
              for c, (charge, s, n) in total_by_currency(rows).items()]  # fmt: skip
    return UsageReportPublic(since=start, until=end, by=keys, items=items, totals=totals)


def _download(content: bytes, media_type: str, start: datetime, end: datetime, ext: str) -> Response:
    name = f"kumo-usage-{start:%Y%m%dT%H%M%SZ}-{end:%Y%m%dT%H%M%SZ}.{ext}"
    return Response(content, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{name}"'})


REPORT_COLUMNS = ("currency", "gpu_hours", "gpu_seconds", "charge", "records")


def _csv(keys: list[str], rows: Sequence[UsageTotal]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*keys, *REPORT_COLUMNS])
    for r in rows:
        group = ["" if r.group[k] is None else r.group[k] for k in keys]
        writer.writerow([*group, r.currency, f"{r.gpu_hours:.6f}", f"{r.gpu_seconds:.3f}", str(r.charge), r.records])
    return out.getvalue().encode()


def _parquet(keys: list[str], rows: Sequence[UsageTotal]) -> bytes:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a dev dependency
        raise Problem(501, "Parquet reports need pyarrow: pip install 'kumo[parquet]'", "Not implemented") from None
    columns: dict[str, Any] = {}
    for key in keys:
        kind = pa.int64() if key == "grant" else pa.string()
        columns[key] = pa.array([r.group[key] for r in rows], type=kind)
    columns["currency"] = pa.array([r.currency for r in rows], type=pa.string())
    columns["gpu_hours"] = pa.array([r.gpu_hours for r in rows], type=pa.float64())
    columns["gpu_seconds"] = pa.array([r.gpu_seconds for r in rows], type=pa.float64())
    columns["charge"] = pa.array([r.charge for r in rows], type=pa.decimal128(38, 6))
    columns["records"] = pa.array([r.records for r in rows], type=pa.int64())
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


@router.get("/usage/report/plot", response_class=Response, responses={200: {"content": {PNG: {}}}})
def usage_plot(
    who: CurrentPrincipal,
    session: ReadSessionDep,
    since: Since,
    until: Until,
    project: NameFilter = None,
) -> Response:
    """A PNG of GPU-hours per UTC day in ``[since, until)``, stacked by programme (what the caller may read)."""
    start, end = _period(since, until)
    if end - start > timedelta(days=3660):
        raise Problem(422, "the plot covers at most ten years of days; shorten the period")
    projects = _visible(session, who, "reports.read", project)
    daily = GrantReports(session).daily_use(start, end, projects)
    days = []
    day = start.date()
    while day < end.date() or (day == end.date() and end.time() != datetime.min.time()):
        days.append(day)
        day += timedelta(days=1)
    programmes = sorted({d.programme for d in daily})
    hours: dict[tuple[date, str], float] = {}
    for d in daily:
        hours[d.day, d.programme] = hours.get((d.day, d.programme), 0.0) + d.gpu_hours

    def draw(ax: Any) -> None:
        bottom = [0.0] * len(days)
        for programme in programmes:
            heights = [hours.get((day, programme), 0.0) for day in days]
            ax.bar(days, heights, bottom=bottom, label=programme, width=0.8)
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        ax.set_title(f"GPU-hours per day by programme, {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC")
        ax.set_ylabel("GPU-hours")
        if programmes:
            ax.legend(loc="best")
        else:
            ax.text(0.5, 0.5, "no usage in this period", transform=ax.transAxes, ha="center")

    return Response(_png(draw), media_type=PNG)


def _png(draw: Callable[[Any], None]) -> bytes:
    """A PNG of one set of axes that ``draw`` fills (matplotlib's object API: no global state)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - matplotlib is a dev dependency
        raise Problem(501, "plots need matplotlib: pip install 'kumo[plots]'", "Not implemented") from None
    figure = Figure(figsize=(9, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    draw(ax)
    figure.autofmt_xdate()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
