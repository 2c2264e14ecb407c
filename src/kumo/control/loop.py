"""The control loop: database -> snapshot -> ``schedule()`` -> database -> executor.

One :meth:`Controller.step` is one pass of the live shell around the pure core
(``docs/concepts/control-loop.md``):

1. hold the **leader lease** (``leases`` row ``controller``): a controller that is not the leader
   does nothing; every write of a leader's step first checks, in the same transaction, that its
   fencing token is still the current one, so a deposed leader's writes are rejected;
2. on becoming leader, **reconcile** what the executor runs with what the database says: adopt an
   attempt whose processes still run, requeue one whose processes are gone (never run twice),
   stop processes the database does not know as running;
3. record the executor's **events** (started, succeeded, failed, walltime, stopped, lost);
4. act on **cancellations**: a waiting job ends at once, a running one is stopped;
5. build a snapshot, **schedule**, and commit the decisions in one transaction — starts become
   attempts, preempted and requeued jobs wait again with what they attained, rejected jobs end,
   every waiting job's reason is kept current;
6. only then **stop** victims and **launch** starts (a preemptor once its victims are gone).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from kumo.api.metrics import Metrics
from kumo.control.metering import Meter
from kumo.control.state import build, core_placement, epoch, to_core_job
from kumo.core import DEFAULT_PROFILE, GPU_MILLI, Allocation, Decisions, Profile, schedule
from kumo.core.snapshot import checkpointed_work
from kumo.executors import EventKind, Executor, ExecutorEvent, LaunchSpec
from kumo.store import Store
from kumo.store.errors import FencedError, StaleWriteError
from kumo.store.models import AttemptOutcome, Job, JobState
from kumo.store.repos import JobRepository, LeaseRepository
from kumo.store.repos.jobs import placement_json

LEASE = "controller"
log = logging.getLogger("kumo.control")

_OUTCOME = {EventKind.SUCCEEDED: AttemptOutcome.SUCCEEDED, EventKind.FAILED: AttemptOutcome.FAILED,
            EventKind.WALLTIME: AttemptOutcome.WALLTIME, EventKind.LOST: AttemptOutcome.LOST}


@dataclass(slots=True)
class Step:
    """What one pass did."""

    leader: bool
    decisions: Decisions | None = None
    events: int = 0
    launched: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Launch:
    spec: LaunchSpec
    waits_for: tuple[str, ...]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Controller:
    """The leader-elected control loop of one kumo installation (see the module docstring)."""

    def __init__(self, store: Store, executor: Executor, log_dir: Path, *, profile: Profile = DEFAULT_PROFILE,
                 holder: str | None = None, ttl_s: float = 15.0, stop_grace_s: float = 10.0,
                 clock: Callable[[], datetime] = utcnow, metrics: Metrics | None = None,
                 meter: Meter | None = None) -> None:
        self.store, self.executor, self.log_dir = store, executor, Path(log_dir)
        self.meter = meter
        self.profile, self.ttl_s, self.stop_grace_s, self.clock = profile, ttl_s, stop_grace_s, clock
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self.metrics = metrics
        self.token: int | None = None
        self._launches: dict[str, _Launch] = {}
        self._stopping: set[str] = set()

    # ------------------------------------------------------------------ one pass
    def step(self) -> Step:
        now = self.clock()
        with self.store.session() as s:
            token = LeaseRepository(s).acquire(LEASE, self.holder, self.ttl_s, now=now)
        if token is None:
            self.token = None
            return Step(leader=False)
        result = Step(leader=True)
        try:
            if token != self.token:
                self.token = token
                self._reconcile(now, result)
            events = self.executor.poll()
            result.events = len(events)
            self._record(events, now)
            self._cancel(now, result)
            self._meter(now, ended=any(e.kind.terminal for e in events))
            result.decisions = self._schedule(now, result)
            self._launch_ready(result)
        except FencedError:
            log.warning("lost the leader lease; this controller's step was not committed")
            self.token = None
            return Step(leader=False)
        except StaleWriteError as e:  # an API write raced this step: nothing was committed, try again
            log.info("step aborted: %s", e)
        return result

    def run(self, stop: Callable[[], bool], interval_s: float = 1.0) -> None:
        """Step until ``stop()`` is true; sleep ``interval_s`` between steps."""
        while not stop():
            self.step()
            time.sleep(interval_s)

    @contextmanager
    def _fenced(self, now: datetime) -> Iterator[Session]:
        assert self.token is not None
        with self.store.session() as s:
            LeaseRepository(s).check(LEASE, self.token, now=now)
            yield s

    # ------------------------------------------------------------------ reconcile
    def _reconcile(self, now: datetime, result: Step) -> None:
        """A new term: adopt what still runs, requeue what does not, stop what should not run."""
        recover = getattr(self.executor, "recover", None)
        adopt = getattr(self.executor, "adopt", None)
        if recover is not None and adopt is not None:
            known = self.executor.running()
            for rec in recover():  # still running, or ended while no controller watched with its codes recorded
                if (rec.alive or rec.outcome_known) and known.get(rec.job_id) != rec.attempt:
                    adopt(rec)
        live = self.executor.running()
        with self._fenced(now) as s:
            jobs = JobRepository(s)
            for job in jobs.running():
                if live.get(job.id) == job.attempts:
                    jobs.add_event(job.id, "adopted", f"attempt {job.attempts} still runs", now=now)
                    continue
                self._end(jobs, job, AttemptOutcome.LOST, now,
                          reason="lost: the controller restarted and no process of this attempt was running")
            wanted = {j.id: j.attempts for j in jobs.running()}
        for jid, attempt in live.items():
            if wanted.get(jid) != attempt:
                self.executor.stop(jid, "not running in the database", self.stop_grace_s)
                result.stopped.append(jid)

    # ------------------------------------------------------------------ executor events
    def _record(self, events: list[ExecutorEvent], now: datetime) -> None:
        if not events:
            return
        with self._fenced(now) as s:
            jobs = JobRepository(s)
            for ev in events:
                self._record_one(jobs, ev, now)

    def _record_one(self, jobs: JobRepository, ev: ExecutorEvent, now: datetime) -> None:
        job = jobs.get(ev.job_id)
        current = job.state is JobState.RUNNING and job.attempts == ev.attempt
        data = {"attempt": ev.attempt, "exit_code": ev.exit_code}
        jobs.add_event(job.id, ev.kind.value, ev.message or ev.kind.value, now=now, data=data)
        if not current or ev.kind is EventKind.STARTED:
            return  # an attempt a decision already ended (preempted), or a start
        self._stopping.discard(job.id)
        if ev.kind is EventKind.STOPPED:
            outcome = AttemptOutcome.CANCELLED if job.cancel_requested else AttemptOutcome.LOST
        else:  # lost: the job may run again (an executor reports an attempt that may have run to its end,
            # exit status unknown, as failed; the Ray executor a lost node by the job's restart policy)
            outcome = _OUTCOME[ev.kind]
        reason = ev.message if outcome is not AttemptOutcome.SUCCEEDED else ""
        if outcome is AttemptOutcome.CANCELLED:
            reason = "cancelled"
        self._end(jobs, job, outcome, now, reason=reason, exit_code=ev.exit_code)

    def _end(self, jobs: JobRepository, job: Job, outcome: AttemptOutcome, now: datetime, *, reason: str,
             exit_code: int | None = None) -> None:
        """Close the open attempt, carrying what it attained (and kept, up to its last checkpoint)."""
        attempt = jobs.attempts(job.id)[-1]
        core = to_core_job(job)
        elapsed = max(0.0, epoch(now) - epoch(attempt.started_at))
        attained = job.attained_gpu_s + core.total_gpu_milli / GPU_MILLI * elapsed
        alloc = Allocation(core, core_placement(attempt.placement), epoch(attempt.started_at))
        done = job.work_done_s + checkpointed_work(alloc, epoch(now))
        jobs.end_attempt(job.id, job.version, outcome, now=now, exit_code=exit_code, reason=reason,
                         attained_gpu_s=attained, work_done_s=done)

    # ------------------------------------------------------------------ metering
    def _meter(self, now: datetime, *, ended: bool) -> None:
        """Meter usage into grants and refresh the standings the next schedule reads (a failed pass
        is logged: scheduling goes on with the standings of the last good one)."""
        if self.meter is None:
            return
        if ended:
            self.meter.ended()
        try:
            self.meter.maybe_run(now)
        except Exception:
            log.exception("metering pass failed; scheduling with the previous grant standings")

    # ------------------------------------------------------------------ cancellations
    def _cancel(self, now: datetime, result: Step) -> None:
        with self._fenced(now) as s:
            jobs = JobRepository(s)
            asked = jobs.cancel_requested()
            for job in asked:
                if job.state is JobState.PENDING:
                    jobs.transition(job.id, job.version, state=JobState.CANCELLED, ended_at=now, reason="cancelled")
                    jobs.add_event(job.id, "cancelled", "cancelled before it started", now=now)
            running = [j.id for j in asked if j.state is JobState.RUNNING]
        for jid in running:
            self._launches.pop(jid, None)
            if jid not in self._stopping:
                self.executor.stop(jid, "cancelled", self.stop_grace_s)
                self._stopping.add(jid)
                result.stopped.append(jid)

    # ------------------------------------------------------------------ schedule and commit
    def _schedule(self, now: datetime, result: Step) -> Decisions:
        standings = self.meter.standings if self.meter is not None else ()
        usage = self.meter.usage if self.meter is not None else ()
        with self.store.session(readonly=True) as s:
            picture = build(s, standings=standings, usage=usage)
            depth: dict[str, int] = {}
            for job in picture.jobs.values():
                if job.state is JobState.PENDING:
                    depth[job.queue.name] = depth.get(job.queue.name, 0) + 1
        started = time.perf_counter()
        d = schedule(picture.snapshot, epoch(now), self.profile)
        seconds = time.perf_counter() - started
        # the tier each start runs in (preemptible under a preemptible-only grant standing, whatever
        # the spec asked): kept with the attempt, for metering and for the next snapshots
        pending = picture.snapshot.pending
        tiers = {st.job_id: "preemptible" if pending[st.job_id].preemptible else "guaranteed" for st in d.starts}
        with self._fenced(now) as s:
            self._commit(JobRepository(s), d, now, tiers)
        if self.metrics is not None:
            self.metrics.cycle(d, seconds)
            self.metrics.state(depth, _running_gpus(picture.snapshot))
        self._act(d, now, result)
        return d

    def _commit(self, jobs: JobRepository, d: Decisions, now: datetime, tiers: dict[str, str]) -> None:
        for p in d.preemptions:
            job = jobs.get(p.job_id)
            self._end(jobs, job, AttemptOutcome.PREEMPTED, now, reason=p.reason.message)
            jobs.add_event(job.id, "preempted", p.reason.message, now=now, data={"by": p.by})
        for r in d.requeues:
            self._end(jobs, jobs.get(r.job_id), AttemptOutcome.LOST, now, reason=r.reason.message)
        for rej in d.rejects:
            job = jobs.get(rej.job_id)
            jobs.transition(job.id, job.version, state=JobState.REJECTED, ended_at=now, reason=rej.reason.message)
            jobs.add_event(job.id, "rejected", rej.reason.message, now=now)
        assert self.token is not None
        for st in d.starts:
            job = jobs.get(st.job_id)
            placement = {**placement_json(st.placement), "tier": tiers.get(st.job_id, "guaranteed")}
            jobs.start_attempt(job.id, job.version, placement, self.token, now=now)
            nodes = ", ".join(sorted({w.node for w in st.placement.workers}))
            jobs.add_event(job.id, "scheduled", f"placed on {st.placement.model} in {st.placement.region}: {nodes}",
                           now=now, data={"preempting": list(st.preempting)})
        started = {st.job_id for st in d.starts}
        for job in jobs.pending():
            if job.id in started or job.cancel_requested:
                continue
            why = d.why(job.id)
            text = why.message if why is not None else ""
            if text and text != job.reason:
                jobs.transition(job.id, job.version, reason=text)

    def _act(self, d: Decisions, now: datetime, result: Step) -> None:
        """After the commit: stop victims and lost jobs, queue launches."""
        for jid in [p.job_id for p in d.preemptions if p.by != p.job_id] + [r.job_id for r in d.requeues]:
            self.executor.stop(jid, "preempted", self.stop_grace_s)
            result.stopped.append(jid)
        unlaunchable = []
        with self.store.session(readonly=True) as s:
            jobs = JobRepository(s)
            for st in d.starts:
                job = jobs.get(st.job_id)
                if not job.spec.get("command"):
                    unlaunchable.append(job.id)
                    continue
                spec = self._launch_spec(job.id, job.attempts, st.placement, job.spec)
                self._launches[job.id] = _Launch(spec, st.preempting)
        if unlaunchable:
            with self._fenced(now) as s:
                jobs = JobRepository(s)
                for jid in unlaunchable:
                    self._end(jobs, jobs.get(jid), AttemptOutcome.FAILED, now, reason="the job has no command to run")
        for p in d.preemptions:  # a migration: the job stops, then starts again elsewhere
            if p.by == p.job_id:
                self.executor.stop(p.job_id, "migrating", self.stop_grace_s)

    def _launch_spec(self, job_id: str, attempt: int, placement: Any, spec: dict[str, Any]) -> LaunchSpec:
        command = [str(c) for c in spec.get("command") or []]
        env = {str(k): str(v) for k, v in (spec.get("env") or {}).items()}
        return LaunchSpec(job_id=job_id, attempt=attempt, placement=placement, command=command, env=env,
                          walltime_limit_s=spec.get("walltime_limit_s"), log_dir=self.log_dir)

    def _launch_ready(self, result: Step) -> None:
        running = self.executor.running()
        for jid, launch in list(self._launches.items()):
            if any(running.get(v) is not None and (v != jid or running[v] != launch.spec.attempt)
                   for v in launch.waits_for):
                continue  # a victim (or, for a migration, the job's previous attempt) still runs
            del self._launches[jid]
            self.executor.launch(launch.spec)
            result.launched.append(jid)


def _running_gpus(snapshot: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for rec in snapshot.running.values():
        flavor = "gpu." + rec.alloc.placement.model
        out[flavor] = out.get(flavor, 0.0) + rec.job.total_gpu_milli / GPU_MILLI
    return out
