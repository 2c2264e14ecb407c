"""The database's picture as the scheduling core sees it: store rows -> a core ``Snapshot``.

Times become seconds since the Unix epoch (UTC). Nodes keep their state (a cordoned node that is
up is drained: it keeps its jobs, takes no new ones). Pending jobs whose cancellation was asked
for are left out; running jobs come with their open attempt's placement and start time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumo.core import (
    Allocation,
    Cohort,
    GrantStanding,
    Job,
    Placement,
    Programme,
    Project,
    Queue,
    Quota,
    Snapshot,
    UsageSample,
    WorkerPlacement,
    gpu_flavor,
)
from kumo.store import models as m
from kumo.store.jobspec import core_job
from kumo.store.repos import NodeRepository, TenancyRepository


def epoch(dt: datetime | None) -> float:
    return 0.0 if dt is None else dt.timestamp()


def core_quota(raw: dict[str, Any]) -> dict[str, Quota]:
    return {f: Quota(q["nominal"], q.get("borrowing_limit"), q.get("lending_limit")) for f, q in raw.items()}


def core_placement(raw: dict[str, Any]) -> Placement:
    workers = tuple(WorkerPlacement(w["rank"], w["node"], tuple(w["gpus"]), w["gpu_milli"]) for w in raw["workers"])
    return Placement(raw["model"], raw["region"], workers)


def to_core_job(job: m.Job) -> Job:
    return core_job(job.id, job.queue.name, job.project.name, job.spec, submit_time=epoch(job.submit_time),
                    attained_gpu_s=job.attained_gpu_s, work_done_s=job.work_done_s)


@dataclass(slots=True)
class Picture:
    """A snapshot and the rows it was built from (by job id)."""

    snapshot: Snapshot
    jobs: dict[str, m.Job]  # pending (not cancelled) and running jobs
    attempts: dict[str, m.Attempt]  # open attempt of each running job


def build(session: Session, *, standings: Iterable[GrantStanding] = (), usage: Iterable[UsageSample] = ()) -> Picture:
    """The store's jobs, nodes and tenancy as a core snapshot; ``standings`` and ``usage`` come from
    metering (``kumo.control.metering.Meter``): projects' grant standings and past usage."""
    tenancy = TenancyRepository(session)
    nodes = [n.to_core() for n in NodeRepository(session).list()]
    programmes = [Programme(p.name, p.weight) for p in tenancy.list_programmes()]
    projects = [Project(p.name, p.programme.name, p.weight) for p in tenancy.list_projects()]
    cohorts = [Cohort(c.name, c.parent.name if c.parent else None, core_quota(c.quota)) for c in tenancy.list_cohorts()]
    queues = [Queue(q.name, core_quota(q.quota), q.cohort.name if q.cohort else None) for q in tenancy.list_queues()]
    active = session.scalars(select(m.Job).where(m.Job.state.in_([m.JobState.PENDING, m.JobState.RUNNING]))
                             .order_by(m.Job.seq))
    jobs: dict[str, m.Job] = {}
    pending: list[Job] = []
    running: list[Allocation] = []
    attempts: dict[str, m.Attempt] = {}
    open_attempts = {a.job_id: a for a in session.scalars(select(m.Attempt).where(m.Attempt.ended_at.is_(None)))}
    for job in active:
        if job.state is m.JobState.PENDING:
            if job.cancel_requested:
                continue
            pending.append(to_core_job(job))
        else:
            attempt = open_attempts[job.id]
            attempts[job.id] = attempt
            core = to_core_job(job)
            if attempt.placement.get("tier") == "preemptible" and not core.preemptible:
                core = dataclasses.replace(core, preemptible=True)  # started as preemptible work: it stays so
            running.append(Allocation(core, core_placement(attempt.placement), epoch(attempt.started_at)))
        jobs[job.id] = job
    flavors = {gpu_flavor(n.gpu_model) for n in nodes}
    snap = Snapshot(nodes, queues, cohorts=cohorts, programmes=programmes, projects=projects, jobs=pending,
                    running=running, unsatisfiable="reject", standings=standings,
                    usage=[u for u in usage if u.flavor in flavors])
    return Picture(snap, jobs, attempts)
