"""Usage: GPU-hours per project and GPU model, from the jobs' attempts (running ones up to now)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from kumo.api.deps import CurrentPrincipal, NowDep, ReadSessionDep
from kumo.api.problems import Problem
from kumo.api.routes._common import project_scopes
from kumo.api.schemas import NAME_PATTERN, UsagePublic, UsageRow
from kumo.core import GPU_MILLI
from kumo.store.repos.grant_reports import GrantReports

router = APIRouter(tags=["usage"])


def placement_gpus(placement: dict[str, Any]) -> float:
    """GPUs an attempt held: every worker's GPUs, a slice counting as its fraction."""
    milli = sum(len(w.get("gpus", ())) * int(w.get("gpu_milli", GPU_MILLI)) for w in placement.get("workers", ()))
    return milli / GPU_MILLI


def span_gpu_hours(placement: dict[str, Any], started: datetime, ended: datetime | None, since: datetime | None,
                   until: datetime, now: datetime) -> float:
    """An attempt's GPU-hours inside ``[since, until]``; a running attempt counts up to ``now``."""
    start = started if since is None else max(started, since)
    end = min(ended or now, until)
    if end <= start:
        return 0.0
    return placement_gpus(placement) * (end - start).total_seconds() / 3600.0


@router.get("/usage")
def usage(
    who: CurrentPrincipal,
    session: ReadSessionDep,
    now: NowDep,
    project: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    since: Annotated[AwareDatetime | None, Query(description="ISO 8601 with a time zone")] = None,
    until: Annotated[AwareDatetime | None, Query(description="default: now")] = None,
) -> UsagePublic:
    """GPU-hours of the projects the caller may read, per project and GPU model, in ``[since, until]``,
    straight from the jobs' attempts (charges against grants: ``GET /usage/report``)."""
    end = now if until is None else until
    if since is not None and since >= end:
        raise Problem(422, f"since ({since.isoformat()}) must be before until ({end.isoformat()})")
    scopes = project_scopes(session, who, "usage.read", project)
    projects = None if scopes == [None] else [p for p in scopes if p is not None]
    hours: dict[tuple[str, str], float] = defaultdict(float)
    for name, placement, started, ended in GrantReports(session).attempt_spans(end, since, projects):
        model = str(placement.get("model", "unknown"))
        hours[(name, model)] += span_gpu_hours(placement, started, ended, since, end, now)
    items = [UsageRow(project=p, gpu_model=m, gpu_hours=round(h, 6)) for (p, m), h in sorted(hours.items())]
    return UsagePublic(since=since, until=end, items=items)
