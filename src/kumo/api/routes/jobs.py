"""Jobs: submit (one, an array of copies, or a batch), list, get, cancel, events, why, logs.

A caller sees only the jobs of projects it may read (``authz.visible_projects``): listings are
filtered in the query, and a job of another project answers 404 exactly as a missing one does,
so its existence is not confirmed.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from kumo.api import authz
from kumo.api.authz import Principal
from kumo.api.deps import (
    CurrentPrincipal,
    LogDirDep,
    NowDep,
    ReadSessionDep,
    RemoteAddr,
    SessionDep,
    StoreDep,
    require,
)
from kumo.api.problems import Problem
from kumo.api.routes._common import audit, project_scopes
from kumo.api.routes._logs import TEXT, follow_log, read_log
from kumo.api.schemas import (
    JOB_ID_PATTERN,
    NAME_PATTERN,
    JobBatchCreate,
    JobCreate,
    JobEventPublic,
    JobEventsPublic,
    JobPublic,
    JobsPublic,
    JobsSubmitted,
    JobWhy,
)
from kumo.executors.base import log_path
from kumo.store import Job, JobRepository, JobState, NotFoundError, Project, TenancyRepository
from kumo.store.repos.jobs import MAX_PAGE, decode_cursor, encode_cursor

router = APIRouter(tags=["jobs"])
JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="the job's id, e.g. j-000042")]
NameFilter = Annotated[str | None, Query(pattern=NAME_PATTERN)]


def job_public(job: Job) -> JobPublic:
    return JobPublic(
        id=job.id, project=job.project.name, programme=job.project.programme.name, queue=job.queue.name,
        user=job.submitted_by.name, state=job.state.value, reason=job.reason, spec=dict(job.spec),
        submit_time=job.submit_time, started_at=job.started_at, ended_at=job.ended_at, attempts=job.attempts,
        attained_gpu_s=job.attained_gpu_s, exit_code=job.exit_code, cancel_requested=job.cancel_requested,
    )  # fmt: skip


def readable_job(session: Session, who: Principal, job_id: str, action: str = "jobs.read") -> Job:
    """The job, if ``who`` may read it (404 otherwise, as for a missing job) and may do ``action`` (403)."""
    job = JobRepository(session).get(job_id)
    programme, project = job.project.programme.name, job.project.name
    if not authz.allowed(who, "jobs.read", programme, project):
        raise NotFoundError("job", job_id)
    require(who, action, programme, project)
    return job


def _submittable(session: Session, who: Principal, name: str) -> Project:
    project = TenancyRepository(session).get_project(name)
    require(who, "jobs.submit", project.programme.name, project.name)
    return project


def _span(ids: list[str]) -> str:
    return ids[0] if len(ids) == 1 else f"{ids[0]}..{ids[-1]}"


@router.post("/jobs", status_code=status.HTTP_201_CREATED)
def submit_job(
    body: JobCreate, who: CurrentPrincipal, session: SessionDep, now: NowDep, addr: RemoteAddr
) -> JobsSubmitted:
    """Submit one job, or ``array`` copies of it in one transaction (at most 100,000)."""
    project = _submittable(session, who, body.project)
    spec = body.spec.stored()
    repo = JobRepository(session)
    if body.array is None:
        ids = [repo.submit(project, body.queue, who.user, spec, now=now).id]
    else:
        ids = [job.id for job in repo.submit_many(project, body.queue, who.user, [spec] * body.array, now=now)]
    audit(session, who, "jobs.submit", f"job/{_span(ids)}", now=now, remote_addr=addr,
          data={"project": project.name, "queue": body.queue, "count": len(ids), "spec": spec})
    return JobsSubmitted(count=len(ids), ids=ids)


@router.post("/jobs/batch", status_code=status.HTTP_201_CREATED)
def submit_batch(
    body: JobBatchCreate, who: CurrentPrincipal, session: SessionDep, now: NowDep, addr: RemoteAddr
) -> JobsSubmitted:
    """Submit different jobs to one project and queue in one transaction (at most 100,000)."""
    project = _submittable(session, who, body.project)
    specs = [spec.stored() for spec in body.specs]
    jobs = JobRepository(session).submit_many(project, body.queue, who.user, specs, now=now)
    ids = [job.id for job in jobs]
    audit(session, who, "jobs.submit", f"job/{_span(ids)}", now=now, remote_addr=addr,
          data={"project": project.name, "queue": body.queue, "count": len(ids)})
    return JobsSubmitted(count=len(ids), ids=ids)


@router.get("/jobs")
def list_jobs(
    who: CurrentPrincipal,
    session: ReadSessionDep,
    state: Annotated[list[JobState] | None, Query()] = None,
    project: NameFilter = None,
    queue: NameFilter = None,
    user: NameFilter = None,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> JobsPublic:
    """One page of the jobs the caller may read, in submission order, and the next page's cursor."""
    repo = JobRepository(session)
    rows: list[Job] = []
    more = False
    _check_cursor(cursor)
    for scope in project_scopes(session, who, "jobs.read", project):  # one keyset query per visible project
        page, after = repo.list(state=state, project=scope, queue=queue, user=user, cursor=cursor, limit=limit)
        rows += page
        more = more or after is not None
    rows.sort(key=lambda job: job.seq)
    more = more or len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1].seq) if more and rows else None
    return JobsPublic(items=[job_public(job) for job in rows], next_cursor=next_cursor)


def _check_cursor(cursor: str | None) -> None:
    """A cursor must be one kumo handed out (a job number a database column can hold)."""
    if cursor is not None and not 0 <= decode_cursor(cursor) < 2**63:
        raise Problem(422, f"cursor: {cursor!r} is not a cursor kumo handed out")


@router.get("/jobs/{job_id}")
def get_job(job_id: JobId, who: CurrentPrincipal, session: ReadSessionDep) -> JobPublic:
    return job_public(readable_job(session, who, job_id))


@router.post("/jobs/{job_id}/cancel", status_code=status.HTTP_202_ACCEPTED)
def cancel_job(job_id: JobId, who: CurrentPrincipal, session: SessionDep, now: NowDep, addr: RemoteAddr) -> JobPublic:
    """Ask for the job to be cancelled; the control loop ends it (409 if it has already ended)."""
    readable_job(session, who, job_id, "jobs.cancel")
    repo = JobRepository(session)
    job = repo.request_cancel(job_id)
    repo.add_event(job_id, "cancel-requested", f"cancellation asked by {who.user}", now=now)
    audit(session, who, "jobs.cancel", f"job/{job_id}", now=now, remote_addr=addr)
    return job_public(job)


@router.get("/jobs/{job_id}/events")
def job_events(job_id: JobId, who: CurrentPrincipal, session: ReadSessionDep) -> JobEventsPublic:
    """The job's history, oldest first."""
    readable_job(session, who, job_id)
    events = JobRepository(session).events(job_id)
    items = [JobEventPublic(at=e.at, kind=e.kind, message=e.message, data=dict(e.data)) for e in events]
    return JobEventsPublic(job=job_id, items=items)


@router.get("/jobs/{job_id}/why")
def job_why(job_id: JobId, who: CurrentPrincipal, session: ReadSessionDep) -> JobWhy:
    """Why the job is where it is: the scheduler's explanation for a waiting job."""
    job = readable_job(session, who, job_id)
    return JobWhy(job=job.id, state=job.state.value, reason=job.reason)


@router.get("/jobs/{job_id}/logs", response_class=StreamingResponse,
            responses={200: {"content": {TEXT: {}}, "description": "the worker's output"}})
def job_logs(
    request: Request,
    job_id: JobId,
    who: CurrentPrincipal,
    session: ReadSessionDep,
    store: StoreDep,
    log_dir: LogDirDep,
    attempt: Annotated[int | None, Query(ge=1, le=1_000_000, description="default: the latest")] = None,
    rank: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    follow: Annotated[bool, Query(description="stream new output until the attempt ends")] = False,
) -> StreamingResponse:
    """One worker's stdout and stderr as plain text; ``follow=true`` keeps streaming until the attempt ends."""
    job = readable_job(session, who, job_id)
    number = job.attempts if attempt is None else attempt
    if number == 0:
        raise Problem(404, f"job {job_id!r} has not started yet, so it has no logs")
    if number > job.attempts:
        raise Problem(404, f"job {job_id!r} has no attempt {number}; it has had {job.attempts}")
    path = log_path(log_dir, job_id, number, rank)
    if not path.is_file():
        raise Problem(404, f"no log yet for job {job_id!r}, attempt {number}, rank {rank}")
    if not follow:
        return StreamingResponse(read_log(path), media_type=TEXT)
    poll_s = float(request.app.state.log_poll_s)
    return StreamingResponse(follow_log(store, path, job_id, number, poll_s=poll_s), media_type=TEXT)
