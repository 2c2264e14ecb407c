"""Usage: GPU-hours per project and GPU model, from the jobs' attempts (running ones up to now)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from kumo.api.deps import CurrentPrincipal, NowDep, ReadSessionDep
from kumo.api.problems import Problem
from kumo.api.routes._common import project_scopes
from kumo.api.schemas import NAME_PATTERN, UsagePublic, UsageRow
from kumo.core import GPU_MILLI
from kumo.store import Attempt, Job, JobRepository

router = APIRouter(tags=["usage"])


def placement_gpus(placement: dict[str, Any]) -> float:
    """GPUs an attempt held: every worker's GPUs, a slice counting as its fraction."""
    milli = sum(len(w.get("gpus", ())) * int(w.get("gpu_milli", GPU_MILLI)) for w in placement.get("workers", ()))
    return milli / GPU_MILLI


def attempt_gpu_hours(attempt: Attempt, since: datetime | None, until: datetime, now: datetime) -> float:
    """The attempt's GPU-hours inside ``[since, until]``; a running attempt counts up to ``now``."""
    start = attempt.started_at if since is None else max(attempt.started_at, since)
    end = min(attempt.ended_at or now, until)
    if end <= start:
        return 0.0
    return placement_gpus(attempt.placement) * (end - start).total_seconds() / 3600.0


def _jobs(repo: JobRepository, project: str | None) -> Iterator[Job]:
    cursor: str | None = None
    while True:
        page, cursor = repo.list(project=project, cursor=cursor, limit=1000)
        yield from page
        if cursor is None:
            return


@router.get("/usage")
def usage(
    who: CurrentPrincipal,
    session: ReadSessionDep,
    now: NowDep,
    project: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    since: Annotated[AwareDatetime | None, Query(description="ISO 8601 with a time zone")] = None,
    until: Annotated[AwareDatetime | None, Query(description="default: now")] = None,
) -> UsagePublic:
    """GPU-hours of the projects the caller may read, per project and GPU model, in ``[since, until]``."""
    end = now if until is None else until
    if since is not None and since >= end:
        raise Problem(422, f"since ({since.isoformat()}) must be before until ({end.isoformat()})")
    repo = JobRepository(session)
    hours: dict[tuple[str, str], float] = defaultdict(float)
    for scope in project_scopes(session, who, "usage.read", project):
        for job in _jobs(repo, scope):
            if job.attempts == 0 or job.submit_time >= end or (since and job.ended_at and job.ended_at <= since):
                continue
            for attempt in repo.attempts(job.id):
                model = str(attempt.placement.get("model", "unknown"))
                hours[(job.project.name, model)] += attempt_gpu_hours(attempt, since, end, now)
    items = [UsageRow(project=p, gpu_model=m, gpu_hours=round(h, 6)) for (p, m), h in sorted(hours.items())]
    return UsagePublic(since=since, until=end, items=items)
