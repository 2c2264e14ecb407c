"""Jobs: submission (one or in bulk), listing with keyset pagination, optimistic transitions,
the control loop's views, attempts and events.

Every change to a job goes through :meth:`JobRepository.transition` (or an equally guarded
``UPDATE``) and raises its ``version`` by one; a writer that read an older version gets a
:class:`~kumo.store.errors.StaleWriteError` instead of overwriting someone else's change.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Select, Table, Update, bindparam, select, update
from sqlalchemy.orm import Session, defer, load_only
from sqlalchemy.orm.attributes import set_committed_value

from kumo.core.errors import InvalidValueError
from kumo.core.model import Placement
from kumo.store.columns import as_utc
from kumo.store.errors import ConflictError, NotFoundError, StaleWriteError
from kumo.store.jobspec import copy_spec, normalize_specs
from kumo.store.models import Attempt, AttemptOutcome, Job, JobEvent, JobState, Programme, Project, Queue, User
from kumo.store.repos._bulk import allocate, insert_rows
from kumo.store.repos._common import Repository, check_text, resolve

MAX_BULK = 100_000
MAX_PAGE = 1_000
_ACTIVE = (JobState.PENDING, JobState.RUNNING)
_NEXT: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.PENDING, JobState.RUNNING, JobState.CANCELLED, JobState.REJECTED}),
    JobState.RUNNING: frozenset(
        {JobState.RUNNING, JobState.PENDING, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}
    ),
}
_CHANGEABLE = frozenset(
    {"state", "reason", "started_at", "ended_at", "attempts", "attained_gpu_s", "work_done_s", "exit_code",
     "cancel_requested"}
)  # fmt: skip
# How an attempt's outcome leaves its job: preempted and lost jobs wait again.
OUTCOME_STATE: dict[AttemptOutcome, JobState] = {
    AttemptOutcome.SUCCEEDED: JobState.SUCCEEDED,
    AttemptOutcome.FAILED: JobState.FAILED,
    AttemptOutcome.WALLTIME: JobState.FAILED,
    AttemptOutcome.CANCELLED: JobState.CANCELLED,
    AttemptOutcome.PREEMPTED: JobState.PENDING,
    AttemptOutcome.LOST: JobState.PENDING,
}


def job_id(seq: int) -> str:
    """``j-000042``: the id of the job numbered ``seq`` (seven digits and more past a million)."""
    return f"j-{seq:06d}"


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"after:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, seq = text.partition(":")
        if kind == "after" and seq.isdigit():
            return int(seq)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise InvalidValueError("cursor", f"{cursor!r} is not a cursor kumo handed out")


class KnownNames:
    """Ids of projects, queues and users (and projects' programmes) by name, kept across
    transactions for ``ttl_s`` seconds, for a caller that submits continuously (the API's group
    commit), which would otherwise look the same few names up in every transaction. Kumo neither
    renames nor deletes these rows; the bound keeps any surprise short. Not thread-safe: one writer."""

    def __init__(self, ttl_s: float = 1.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s, self.clock = ttl_s, clock
        self.ids: dict[tuple[type[Any], str], int] = {}
        self.programmes: dict[str, str] = {}
        self._expires = 0.0

    def fresh(self) -> KnownNames:
        """Itself, emptied first if its ``ttl_s`` has passed."""
        now = self.clock()
        if now >= self._expires:
            self.ids.clear()
            self.programmes.clear()
            self._expires = now + self.ttl_s
        return self


@dataclass(frozen=True, slots=True)
class CheckedSubmission:
    """Jobs ready to be written (:meth:`JobRepository.check`): their rows less their ids."""

    project_id: int
    queue_id: int
    user_id: int
    specs: list[dict[str, Any]]
    at: datetime


class JobRepository(Repository):
    """Jobs, their attempts and their events."""

    def __init__(self, session: Session, *, known: KnownNames | None = None) -> None:
        super().__init__(session)
        known = known if known is not None else KnownNames()
        self._ids = known.ids  # ids of rows looked up by name (in this transaction, or longer: KnownNames)
        self._programmes = known.programmes  # programme of each project looked up by name
        self._specs: dict[str, dict[str, Any]] = {}  # normalised specs by _spec_key

    # ---- submission ------------------------------------------------------------------
    def submit(
        self, project: Project | str, queue: Queue | str, user: User | str, spec: Mapping[str, Any], *, now: datetime
    ) -> Job:
        """Store one pending job; its spec is checked and normalised first."""
        values = self._rows(project, queue, user, [spec], now)[0]
        job = Job(**values)
        self.session.add(job)
        self.session.flush()
        return job

    def submit_many(
        self,
        project: Project | str,
        queue: Queue | str,
        user: User | str,
        specs: Iterable[Mapping[str, Any]],
        *,
        now: datetime,
    ) -> list[Job]:
        """Store up to ``MAX_BULK`` pending jobs at once: one counter update allocates their ids,
        one executemany ``INSERT`` writes them (see ``_bulk.py``). Returns them in submission order."""
        rows = self._rows(project, queue, user, list(specs), now)
        if not rows:
            return []
        insert_rows(self.session, Job, rows)
        stmt = select(Job).options(defer(Job.spec)).where(Job.seq.between(rows[0]["seq"], rows[-1]["seq"]))
        jobs = list(self.session.scalars(stmt.order_by(Job.seq)))
        for job, row in zip(jobs, rows, strict=True):
            set_committed_value(job, "spec", copy_spec(row["spec"]))  # as stored, without decoding it again
        return jobs

    def _rows(
        self, project: Project | str, queue: Queue | str, user: User | str, specs: list[Mapping[str, Any]],
        now: datetime,
    ) -> list[dict[str, Any]]:  # fmt: skip
        checked = self.check(project, queue, user, specs, now=now)
        if not checked.specs:
            return []
        return _job_rows(checked, allocate(self.session, "jobs", len(checked.specs)))

    def check(
        self, project: Project | str, queue: Queue | str, user: User | str, specs: Sequence[Mapping[str, Any]],
        *, now: datetime,
    ) -> CheckedSubmission:  # fmt: skip
        """Check a submission without writing anything: the project, queue and user exist, every
        spec is valid (normalised), at most ``MAX_BULK`` jobs. Raises as ``submit_many`` would.

        Names are looked up once per repository (one transaction), and equal specs are checked
        once and share one normalised dict (read-only), across the submissions it checks."""
        if len(specs) > MAX_BULK:
            raise InvalidValueError("submit_many", f"at most {MAX_BULK} jobs at once, got {len(specs)}")
        project_id = self._id(Project, "project", project)
        queue_id = self._id(Queue, "queue", queue)
        user_id = self._id(User, "user", user)
        return CheckedSubmission(project_id, queue_id, user_id, self._normalized(specs), as_utc(now, "now"))

    def project_scope(self, name: str) -> tuple[str, str]:
        """``(project, programme)`` names of the project called ``name`` (``NotFoundError`` if none),
        for authorization before :meth:`check`; remembers its id for it."""
        programme = self._programmes.get(name)
        if programme is None or (Project, name) not in self._ids:
            projects, programmes = cast(Table, Project.__table__), cast(Table, Programme.__table__)
            stmt = (select(projects.c.id, programmes.c.name)
                    .join(programmes, programmes.c.id == projects.c.programme_id).where(projects.c.name == name))
            self.session.flush()
            row = self.session.execute(stmt).one_or_none()
            if row is None:
                raise NotFoundError("project", name)
            self._ids[(Project, name)] = int(row[0])
            programme = self._programmes[name] = str(row[1])
        return name, programme

    def insert(self, submissions: Sequence[CheckedSubmission]) -> list[list[str]]:
        """Write checked submissions, in order: one counter update numbers all their jobs (each
        submission's ids consecutive), one executemany ``INSERT`` writes them. Their ids, per
        submission. Nothing is read back: use :meth:`get` for the rows."""
        total = sum(len(sub.specs) for sub in submissions)
        if total == 0:
            return [[] for _ in submissions]
        first = allocate(self.session, "jobs", total)
        rows: list[dict[str, Any]] = []
        ids: list[list[str]] = []
        for sub in submissions:
            mine = _job_rows(sub, first + len(rows))
            rows += mine
            ids.append([row["id"] for row in mine])
        insert_rows(self.session, Job, rows)
        return ids

    def _id(self, model: type[Project] | type[Queue] | type[User], kind: str, ref: Any) -> int:
        if isinstance(ref, model):
            return int(ref.id)
        key = (model, str(ref))
        found = self._ids.get(key)
        if found is None:
            table = cast(Table, model.__table__)
            self.session.flush()
            found = self.session.execute(select(table.c.id).where(table.c.name == str(ref))).scalar_one_or_none()
            if found is None:
                raise NotFoundError(kind, str(ref))
            self._ids[key] = found = int(found)
        return found

    def _normalized(self, specs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for spec in specs:
            key = _spec_key(spec)
            if key is None:
                out.append(normalize_specs([spec])[0])
                continue
            checked = self._specs.get(key)
            if checked is None:
                checked = self._specs[key] = normalize_specs([spec])[0]
            out.append(checked)
        return out

    # ---- reading ---------------------------------------------------------------------
    def get(self, job_id: str) -> Job:
        job = self.session.get(Job, job_id)
        if job is None:
            raise NotFoundError("job", job_id)
        return job

    def _filtered(
        self,
        stmt: Select[Any],
        state: JobState | str | Collection[JobState | str] | None,
        project: Project | str | None,
        queue: Queue | str | None,
        user: User | str | None,
    ) -> Select[Any]:
        if state is not None:
            states = [state] if isinstance(state, str) else state
            stmt = stmt.where(Job.state.in_([_job_state(s) for s in states]))
        if project is not None:
            stmt = stmt.where(Job.project_id == resolve(self.session, Project, "project", project).id)
        if queue is not None:
            stmt = stmt.where(Job.queue_id == resolve(self.session, Queue, "queue", queue).id)
        if user is not None:
            stmt = stmt.where(Job.submitted_by_id == resolve(self.session, User, "user", user).id)
        return stmt

    def pending(self) -> list[Job]:
        """Every waiting job, oldest first: what the control loop schedules.

        Only what the loop reads of each — id, state, reason, version, cancellation — is loaded
        at first; any other attribute is read when first asked for. The loop goes through every
        waiting job at every step to keep its reason current, and converting thousands of specs
        and timestamps it does not look at was most of that."""
        loaded = load_only(Job.id, Job.seq, Job.state, Job.reason, Job.version, Job.cancel_requested)
        stmt = select(Job).options(loaded).where(Job.state == JobState.PENDING).order_by(Job.seq)
        return list(self.session.scalars(stmt))

    def running(self) -> list[Job]:
        """Every running job, oldest first."""
        return self._in_state(JobState.RUNNING)

    def cancel_requested(self) -> list[Job]:
        """Active jobs whose cancellation was asked for, oldest first: what the control loop stops."""
        stmt = select(Job).where(Job.state.in_(_ACTIVE), Job.cancel_requested.is_(True)).order_by(Job.seq)
        return list(self.session.scalars(stmt))

    def _in_state(self, state: JobState) -> list[Job]:
        return list(self.session.scalars(select(Job).where(Job.state == state).order_by(Job.seq)))

    # ---- changes ---------------------------------------------------------------------
    def transition(self, job_id: str, expected_version: int, **changes: Any) -> Job:
        """Apply ``changes`` if the job is still at ``expected_version``; raise its version by one.

        Raises ``StaleWriteError`` if the version moved, ``ConflictError`` for a state change
        the job's state forbids (a final state never changes).
        """
        unknown = sorted(set(changes) - _CHANGEABLE)
        if unknown:
            raise InvalidValueError("transition", f"cannot change {unknown}; changeable: {sorted(_CHANGEABLE)}")
        job = self.get(job_id)
        if job.version != expected_version:
            raise StaleWriteError("job", job_id, expected_version, job.version)
        values = _checked_changes(job, changes)
        self.session.flush()  # what an ORM UPDATE would flush first
        # A Core UPDATE of the table, then the loaded row set to what was written: an ORM UPDATE
        # would match its criteria against every object of the session (the control loop's
        # session holds every active job), which made a step quadratic in the number of jobs.
        params = {**values, "_id": job_id, "_version": expected_version, "_next": expected_version + 1}
        result = self.session.connection().execute(_update_statement(tuple(sorted(values))), params)
        if cast(CursorResult[Any], result).rowcount != 1:
            self.session.refresh(job)
            raise StaleWriteError("job", job_id, expected_version, job.version)
        for key, value in values.items():
            set_committed_value(job, key, value)
        set_committed_value(job, "version", expected_version + 1)
        return job

    def request_cancel(self, job_id: str) -> Job:
        """Ask for the job to be cancelled (the control loop stops it); a no-op if already asked.
        ``ConflictError`` if the job has ended."""
        stmt = (
            update(Job)
            .where(Job.id == job_id, Job.state.in_(_ACTIVE), Job.cancel_requested.is_(False))
            .values(cancel_requested=True, version=Job.version + 1)
            .execution_options(synchronize_session="fetch")
        )
        self.session.execute(stmt)
        job = self.get(job_id)
        if job.state.final:
            raise ConflictError(f"job {job_id!r} has already ended ({job.state.value}); nothing to cancel")
        return job

    # ---- attempts --------------------------------------------------------------------
    def start_attempt(
        self,
        job_id: str,
        expected_version: int,
        placement: Placement | Mapping[str, Any],
        fencing_token: int,
        *,
        now: datetime,
    ) -> Attempt:
        """Mark the pending job running and record its next attempt (placement and the leader's
        fencing token). Call ``LeaseRepository.check`` first, in the same transaction."""
        where = placement_json(placement)
        job = self.get(job_id)
        if job.version != expected_version:
            raise StaleWriteError("job", job_id, expected_version, job.version)
        if job.state is not JobState.PENDING:
            raise ConflictError(f"job {job_id!r} is {job.state.value}; only a pending job can start")
        at = as_utc(now, "now")
        number = job.attempts + 1
        self.transition(job_id, expected_version, state=JobState.RUNNING, started_at=at, attempts=number, reason="")
        attempt = Attempt(
            job_id=job_id, number=number, placement=where, fencing_token=fencing_token,
            started_at=at, ended_at=None, outcome=None, exit_code=None,
        )  # fmt: skip
        self.session.add(attempt)
        self.session.flush()
        return attempt

    def end_attempt(
        self,
        job_id: str,
        expected_version: int,
        outcome: AttemptOutcome | str,
        *,
        now: datetime,
        exit_code: int | None = None,
        reason: str = "",
        attained_gpu_s: float | None = None,
        work_done_s: float | None = None,
    ) -> Attempt:
        """Close the running attempt and move the job on (``OUTCOME_STATE``): it ends, or waits
        again after a preemption or a lost node."""
        outcome = _outcome(outcome)
        at = as_utc(now, "now")
        attempt = self._open_attempt(job_id)
        state = OUTCOME_STATE[outcome]
        changes: dict[str, Any] = {"state": state, "reason": reason, "exit_code": exit_code}
        changes.update({"ended_at": at} if state.final else {"started_at": None})
        if attained_gpu_s is not None:
            changes["attained_gpu_s"] = attained_gpu_s
        if work_done_s is not None:
            changes["work_done_s"] = work_done_s
        self.transition(job_id, expected_version, **changes)
        attempt.ended_at, attempt.outcome, attempt.exit_code = at, outcome, exit_code
        self.session.flush()
        return attempt

    def attempts(self, job_id: str) -> list[Attempt]:
        self.get(job_id)
        stmt = select(Attempt).where(Attempt.job_id == job_id).order_by(Attempt.number)
        return list(self.session.scalars(stmt))

    def _open_attempt(self, job_id: str) -> Attempt:
        job = self.get(job_id)
        stmt = select(Attempt).where(Attempt.job_id == job_id, Attempt.number == job.attempts)
        attempt = self.session.scalars(stmt).one_or_none()
        if job.state is not JobState.RUNNING or attempt is None or attempt.ended_at is not None:
            raise ConflictError(f"job {job_id!r} has no running attempt (it is {job.state.value})")
        return attempt

    # ---- events ----------------------------------------------------------------------
    def add_event(
        self, job_id: str, kind: str, message: str, *, now: datetime, data: Mapping[str, Any] | None = None
    ) -> JobEvent:
        """Append an event (``submitted``, ``started``, ``preempted``, ...) to the job's history."""
        self.get(job_id)
        event = JobEvent(
            job_id=job_id, at=as_utc(now, "now"), kind=check_text("event kind", kind, 64), message=message,
            data=dict(data or {}),
        )  # fmt: skip
        self.session.add(event)
        self.session.flush()
        return event

    def events(self, job_id: str) -> list[JobEvent]:
        """The job's events, oldest first."""
        self.get(job_id)
        stmt = select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
        return list(self.session.scalars(stmt))

    # Last in the class: a method named list would shadow the builtin in later annotations.
    def list(
        self,
        *,
        state: JobState | str | Collection[JobState | str] | None = None,
        project: Project | str | None = None,
        queue: Queue | str | None = None,
        user: User | str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> tuple[list[Job], str | None]:
        """One page of jobs in submission order, and the cursor of the next page (None: last page).

        The cursor is opaque; pages are cut on the job number (keyset pagination), so jobs
        submitted while a client pages through are never skipped nor repeated.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise InvalidValueError("limit", f"must be an integer from 1 to {MAX_PAGE}, got {limit!r}")
        stmt = self._filtered(select(Job), state, project, queue, user)
        if cursor is not None:
            stmt = stmt.where(Job.seq > decode_cursor(cursor))
        rows = list(self.session.scalars(stmt.order_by(Job.seq).limit(limit + 1)))
        more = len(rows) > limit
        return rows[:limit], encode_cursor(rows[limit - 1].seq) if more else None


@functools.cache
def _update_statement(keys: tuple[str, ...]) -> Update:
    """``UPDATE jobs SET <keys>, version = :_next WHERE id = :_id AND version = :_version``, built
    once per set of changed columns (building and keying a statement cost more than running it)."""
    table = cast(Table, Job.__table__)
    return (update(table).where(table.c.id == bindparam("_id"), table.c.version == bindparam("_version"))
            .values({**{key: bindparam(key, type_=table.c[key].type) for key in keys},
                     "version": bindparam("_next", type_=table.c.version.type)}))


def _spec_key(spec: object) -> str | None:
    """What ``jobspec.normalize_specs`` tells equal specs by (1, 1.0 and True differ); None: unkeyable."""
    try:
        return json.dumps(spec, sort_keys=True)
    except (TypeError, ValueError):
        return None


def _job_rows(sub: CheckedSubmission, first: int) -> list[dict[str, Any]]:
    common = _new_job(sub.project_id, sub.queue_id, sub.user_id, sub.at)
    return [{**common, "id": job_id(seq), "seq": seq, "spec": spec} for seq, spec in enumerate(sub.specs, first)]


def _new_job(project_id: int, queue_id: int, user_id: int, now: datetime) -> dict[str, Any]:
    return {
        "project_id": project_id, "queue_id": queue_id, "submitted_by_id": user_id, "state": JobState.PENDING,
        "reason": "", "submit_time": now, "started_at": None, "ended_at": None, "attempts": 0,
        "attained_gpu_s": 0.0, "work_done_s": 0.0, "exit_code": None, "cancel_requested": False, "version": 1,
    }  # fmt: skip


def _checked_changes(job: Job, changes: dict[str, Any]) -> dict[str, Any]:
    values = dict(changes)
    if "state" in values:
        new = values["state"] = _job_state(values["state"])
        if new not in _NEXT.get(job.state, frozenset()):
            raise ConflictError(f"job {job.id!r} cannot go from {job.state.value} to {new.value}")
    for key in ("started_at", "ended_at"):
        if values.get(key) is not None:
            values[key] = as_utc(values[key], key)
    return values


def _job_state(state: JobState | str) -> JobState:
    try:
        return JobState(state)
    except ValueError:
        raise InvalidValueError("job state", f"{state!r} is not one of {[s.value for s in JobState]}") from None


def _outcome(outcome: AttemptOutcome | str) -> AttemptOutcome:
    try:
        return AttemptOutcome(outcome)
    except ValueError:
        known = [o.value for o in AttemptOutcome]
        raise InvalidValueError("attempt outcome", f"{outcome!r} is not one of {known}") from None


def placement_json(placement: Placement | Mapping[str, Any]) -> dict[str, Any]:
    """``{"model", "region", "workers": [{"rank", "node", "gpus", "gpu_milli"}]}``."""
    if isinstance(placement, Placement):
        workers = [
            {"rank": w.rank, "node": w.node, "gpus": list(w.gpus), "gpu_milli": w.gpu_milli} for w in placement.workers
        ]
        return {"model": placement.model, "region": placement.region, "workers": workers}
    missing = sorted({"model", "region", "workers"} - set(placement))
    if missing or not isinstance(placement["workers"], list):
        raise InvalidValueError("placement", f"needs model, region and a list of workers; missing {missing}")
    return dict(placement)
