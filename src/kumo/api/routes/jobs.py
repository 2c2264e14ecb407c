"""Jobs: submit (one, an array of copies, or a batch), list, get, cancel, events, why, logs.

A caller sees only the jobs of projects it may read (``authz.visible_projects``): listings are
filtered in the query, and a job of another project answers 404 exactly as a missing one does,
so its existence is not confirmed.

Submissions are committed in groups (:class:`GroupCommit`): submissions that arrive while the
previous group is being written wait for it to finish and are then written together, in one
transaction, each with its own audit entry; each answers 201 only once that transaction has
committed. A submission that is refused (403, 404, 422) is checked before anything of it is
written and leaves nothing; if writing a group fails, each of its submissions is written again
on its own, so one bad submission never takes the others with it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, get_type_hints

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

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
    get_principal,
    remote_addr,
    request_now,
    request_store,
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
    JobSpec,
    JobsPublic,
    JobsSubmitted,
    JobWhy,
)
from kumo.core.errors import KumoError
from kumo.executors.base import log_path
from kumo.store import AuditRepository, Job, JobRepository, JobState, NotFoundError, Store
from kumo.store.repos.audit import NewEntry
from kumo.store.repos.jobs import MAX_PAGE, CheckedSubmission, KnownNames, decode_cursor, encode_cursor

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


def _span(ids: list[str]) -> str:
    return ids[0] if len(ids) == 1 else f"{ids[0]}..{ids[-1]}"


# The two submission routes are the API's hot path. They take the store, the clock and the
# client's address from the request rather than as dependencies, and answer with the JSON they
# build (``response_model`` documents it) rather than a model FastAPI would validate again; and
# their common case skips FastAPI's generic request handling altogether (``_FastSubmit``).


class _FastSubmit(APIRoute):
    """A submission route whose common case — a body sent as ``application/json`` that validates —
    is handled in one pass: the caller's principal, then ``model_validate_json`` (decoding and
    validation together), then the endpoint. Every other request (a body that does not validate,
    another content type) goes FastAPI's generic way, so its answer is exactly what it always was;
    so does the OpenAPI description, which comes from the endpoint's signature."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        generic = super().get_route_handler()
        endpoint = self.endpoint
        model: type[BaseModel] = get_type_hints(endpoint)["body"]

        async def handler(request: Request) -> Response:
            if request.headers.get("content-type") != "application/json":
                return await generic(request)
            who = await get_principal(request, None)  # a 401 before anything else, as the generic way
            try:
                body = model.model_validate_json(await request.body())
            except ValidationError:
                return await generic(request)  # which answers 422 as it always has
            response: Response = await endpoint(body, who, request)
            return response

        return handler


_submissions = APIRouter(route_class=_FastSubmit)


@_submissions.post("/jobs", status_code=status.HTTP_201_CREATED, response_model=JobsSubmitted)
async def submit_job(body: JobCreate, who: CurrentPrincipal, request: Request) -> Response:
    """Submit one job, or ``array`` copies of it in one transaction (at most 100,000)."""
    copies = 1 if body.array is None else body.array
    return await _submit(request, Submission(who, body.project, body.queue, body.spec, copies, request_now(request),
                                             remote_addr(request)))


@_submissions.post("/jobs/batch", status_code=status.HTTP_201_CREATED, response_model=JobsSubmitted)
async def submit_batch(body: JobBatchCreate, who: CurrentPrincipal, request: Request) -> Response:
    """Submit different jobs to one project and queue in one transaction (at most 100,000)."""
    return await _submit(request, Submission(who, body.project, body.queue, body.specs, 0, request_now(request),
                                             remote_addr(request)))


async def _submit(request: Request, submission: Submission) -> Response:
    ids = await group_commit(request, request_store(request)).submit(submission)
    body = json.dumps({"count": len(ids), "ids": ids}, separators=(",", ":")).encode()
    return Response(body, status_code=status.HTTP_201_CREATED, media_type="application/json")


router.include_router(_submissions)


# --------------------------------------------------------------------------- group commit


@dataclass(frozen=True, slots=True)
class Submission:
    """One submission request: ``copies`` of ``spec`` (``POST /jobs``), or the list ``spec`` with
    ``copies`` 0 (``POST /jobs/batch``, whose audit entry does not repeat every spec)."""

    who: Principal
    project: str
    queue: str
    spec: JobSpec | Sequence[JobSpec]
    copies: int
    now: datetime
    addr: str | None

    @property
    def jobs(self) -> int:
        return len(self.spec) if isinstance(self.spec, Sequence) else self.copies


class GroupCommit:
    """Writes the submissions waiting at one moment together, in one transaction (see the module).

    Runs on the server's event loop: :meth:`submit` queues a submission and, if no group is being
    written, starts writing; a group is written in a worker thread, and whatever queued meanwhile
    (up to ``max_jobs`` jobs, at least one submission) is the next group. A lone submission waits
    for nothing.
    """

    def __init__(self, store: Store, loop: asyncio.AbstractEventLoop, max_jobs: int = 5_000) -> None:
        self.store, self.loop, self.max_jobs = store, loop, max_jobs
        self.known = KnownNames()  # project, queue and user ids, looked up once a second at most
        self._queue: list[tuple[Submission, asyncio.Future[list[str]]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.groups = 0  # groups written, for tests and curiosity

    async def submit(self, submission: Submission) -> list[str]:
        """Its job ids once committed; raises what refused it."""
        future: asyncio.Future[list[str]] = self.loop.create_future()
        self._queue.append((submission, future))
        if self._writer is None:
            self._writer = self.loop.create_task(self._write_all())
        return await asyncio.shield(future)  # a client that leaves does not stop its group

    async def _write_all(self) -> None:
        try:
            while self._queue:
                size, n = 0, 0
                for sub, _ in self._queue:
                    if n and size + sub.jobs > self.max_jobs:
                        break
                    size, n = size + sub.jobs, n + 1
                group, self._queue = self._queue[:n], self._queue[n:]
                try:
                    outcomes = await run_in_threadpool(self.write, [sub for sub, _ in group])
                except Exception as exc:  # every submission of the group learns of it
                    outcomes = [exc] * len(group)
                except BaseException:  # the server stops: nobody waits for an answer that will not come
                    self._queue = group + self._queue
                    raise
                self.groups += 1
                _answer(group, outcomes)
        finally:
            self._writer = None
            _answer(self._queue, [RuntimeError("the server stopped before this submission was written")]
                    * len(self._queue))
            self._queue = []

    def write(self, group: list[Submission]) -> list[list[str] | BaseException]:
        """Write ``group`` in one transaction: each submission's ids, or what refused it. If the
        transaction fails, each submission is written again alone."""
        try:
            with self.store.session() as session:
                return write_submissions(session, group, self.known.fresh())
        except Exception as exc:
            if len(group) == 1:
                return [exc]
        return [self.write([sub])[0] for sub in group]


def _answer(waiting: list[tuple[Submission, asyncio.Future[list[str]]]],
            outcomes: Sequence[list[str] | BaseException]) -> None:
    for (_, future), outcome in zip(waiting, outcomes, strict=True):
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def write_submissions(session: Session, group: Sequence[Submission],
                      known: KnownNames | None = None) -> list[list[str] | BaseException]:
    """Check every submission (authorization, names, specs), then write those that passed and
    their audit entries. A refusal is returned in its place, having written nothing."""
    jobs = JobRepository(session, known=known)
    outcomes: list[list[str] | BaseException] = []
    checked: list[tuple[int, Submission, dict[str, Any] | None, CheckedSubmission]] = []
    for i, sub in enumerate(group):
        try:
            require(sub.who, "jobs.submit", jobs.project_scope(sub.project)[1], sub.project)
            if isinstance(sub.spec, JobSpec):
                spec = sub.spec.stored()
                specs = [spec] * sub.copies
            else:
                spec, specs = None, [s.stored() for s in sub.spec]
            checked.append((i, sub, spec, jobs.check(sub.project, sub.queue, sub.who.user, specs, now=sub.now)))
            outcomes.append([])
        except (KumoError, Problem) as exc:
            outcomes.append(exc)
    ids = jobs.insert([c for *_, c in checked])
    entries = []
    for (i, sub, spec, _), mine in zip(checked, ids, strict=True):
        outcomes[i] = mine
        data: dict[str, Any] = {"project": sub.project, "queue": sub.queue, "count": len(mine)}
        if spec is not None:
            data["spec"] = spec
        entries.append(NewEntry(sub.who.user, "jobs.submit", f"job/{_span(mine)}"[:255], sub.now, sub.addr, data))
    AuditRepository(session).append_many(entries)
    return outcomes


def group_commit(request: Request, store: Store) -> GroupCommit:
    """The app's group commit (made on first use, again if the store or the event loop changed)."""
    loop = asyncio.get_running_loop()
    state = request.app.state
    gc: GroupCommit | None = getattr(state, "group_commit", None)
    if gc is None or gc.store is not store or gc.loop is not loop:
        gc = state.group_commit = GroupCommit(store, loop)
    return gc


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
