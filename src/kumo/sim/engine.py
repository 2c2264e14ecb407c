"""A discrete-event simulator: a trace replayed through the scheduling core on a virtual clock.

The engine is a shell around :func:`kumo.core.schedule`, like the live control plane: it keeps a
:class:`~kumo.core.Snapshot` current with deltas (arrivals, completions, node failures and
repairs), asks the core for decisions whenever something changed, and assumes them. It decides
nothing itself; it only knows what the scheduler must not — how long each job really runs
(``TraceJob.work_s`` on a speed-1.0 GPU, scaled by the job's speed on the model it got).

Events at one instant are applied together, then one scheduling round runs (another at the same
instant when the round preempted, so capacity freed beyond the preemptors' needs is used, or —
with no preemption grace — when it started jobs while others still wait, since those may now be
preempted or reclaimed; at most 8 rounds an instant).
Rounds also run:

- every ``tick_s`` while jobs wait, for policies whose ranks change with time (LAS, SRTF), where
  a running job may lose its place to a waiting one without any event (time slicing);
- when a running job becomes old enough to be preempted (``Profile.preemption_min_runtime_s``)
  while jobs wait — the moment the core's answer may change with no event.

A preempted or requeued job keeps the work up to its last checkpoint (every
``checkpoint_interval_s`` of its run time; everything with ``checkpoint_on_preempt``, as Gavel
assumes) and pays ``restart_cost_s`` at the start of every later attempt. Nodes fail and are
repaired at exponentially distributed intervals (``mtbf_s``, ``mttr_s``) from a seeded RNG.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from kumo.core import GPU_MILLI, Decisions, Job, NodeState, Profile, Snapshot, schedule
from kumo.core.errors import ConfigError
from kumo.sim.cluster import SimCluster
from kumo.traces.base import Trace, TraceJob

ESTIMATES = ("none", "exact")
DEFAULT_TICK_S = 360.0  # Gavel's round length
_FINISH, _FAIL, _REPAIR, _TICK, _WAKE = range(5)


@dataclass(frozen=True, slots=True)
class SimConfig:
    """How a run treats time, estimates, preemption costs and failures."""

    profile: Profile = field(default_factory=Profile)
    tick_s: float | None = None  # None: DEFAULT_TICK_S for time-dependent policies, else no tick; 0: never
    restart_cost_s: float = 0.0
    checkpoint_on_preempt: bool = False
    estimates: str = "none"  # "exact": each job's walltime estimate is its real work (an oracle)
    mtbf_s: float | None = None  # per node; None: nodes never fail
    mttr_s: float = 3600.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.estimates not in ESTIMATES:
            raise ConfigError(f"sim: estimates must be one of {', '.join(ESTIMATES)}, got {self.estimates!r}")
        for name in ("restart_cost_s", "mttr_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"sim: {name} must be a number >= 0, got {value!r}")
        for name in ("tick_s", "mtbf_s"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"sim: {name} must be a number >= 0, got {value!r}")
        if self.mtbf_s == 0:
            raise ConfigError("sim: mtbf_s must be positive (or None: nodes never fail)")

    def tick(self) -> float | None:
        from kumo.core.policies import order_policy

        if self.tick_s is not None:
            return self.tick_s or None
        return DEFAULT_TICK_S if order_policy(self.profile).time_dependent_rank else None


@dataclass(slots=True)
class JobRecord:
    """What happened to one job of the trace."""

    trace: TraceJob
    first_start: float | None = None
    finish: float | None = None
    done_s: float = 0.0  # work kept so far, in seconds on a speed-1.0 GPU
    attempts: int = 0
    preemptions: int = 0  # stops by preemption or node loss
    migrations: int = 0  # moves to faster GPUs (Profile.migration): a stop and a restart
    busy_gpu_s: float = 0.0  # GPU-seconds held, over all attempts
    lost_gpu_s: float = 0.0  # of those, GPU-seconds whose work was lost (incl. restart cost)
    models: list[str] = field(default_factory=list)  # GPU model of each attempt
    rejected: str | None = None  # why the core (or the simulator, for absent GPU models) rejected it

    @property
    def job(self) -> Job:
        return self.trace.job

    @property
    def gpus(self) -> float:
        return self.job.total_gpu_milli / GPU_MILLI


@dataclass(slots=True)
class _Attempt:
    start: float
    model: str
    speed: float
    overhead: float
    token: int


@dataclass(slots=True)
class SimResult:
    """Everything a run produced; :mod:`kumo.sim.metrics` turns it into figures."""

    trace: Trace
    cluster: SimCluster
    config: SimConfig
    records: dict[str, JobRecord]
    series: list[tuple[float, int, int]]  # (time, busy milli-GPUs, waiting jobs) after every change
    cycles: int = 0
    end: float = 0.0
    stuck: dict[str, str] = field(default_factory=dict)  # jobs still waiting when nothing could change -> why
    failures: int = 0


class Simulator:
    """Replays ``trace`` on ``cluster`` under ``config``; :meth:`run` returns a :class:`SimResult`."""

    def __init__(self, trace: Trace, cluster: SimCluster, config: SimConfig | None = None) -> None:
        self.trace = trace
        self.config = config or SimConfig()
        self.cluster = cluster.with_tenancy(trace.queues(), trace.projects(), trace.programme_of)
        c = self.cluster
        self.snap = Snapshot(c.nodes, c.queues, cohorts=c.cohorts, programmes=c.programmes, projects=c.projects,
                             unsatisfiable="reject")
        self.models = set(c.gpus())
        self.records = {t.job.id: JobRecord(t) for t in trace.jobs}
        if len(self.records) != len(trace.jobs):
            raise ConfigError("sim: the trace holds two jobs with the same id")
        self.running: dict[str, _Attempt] = {}
        self.events: list[tuple[float, int, int, str]] = []  # (time, seq, kind, job id or node)
        self.series: list[tuple[float, int, int]] = []
        self._seq = 0
        self._timed = 0  # TICK, WAKE and REPAIR events in the heap
        self.ended = 0  # jobs finished or rejected
        self._busy = 0
        self._tick = self.config.tick()
        self._migrating = self.config.profile.migration
        self._next_tick: float | None = None
        self._wakes: set[float] = set()
        self._rng = random.Random(self.config.seed)
        self.cycles = 0
        self.failures = 0
        self.last: Decisions | None = None

    # ------------------------------------------------------------------ the loop
    def run(self, progress: Callable[[int, int], None] | None = None) -> SimResult:
        """Run to the end; ``progress(done, total)`` is called as jobs finish or are rejected."""
        jobs = self.trace.jobs
        if self.config.mtbf_s:
            for name in sorted(n.name for n in self.cluster.nodes):
                self._push(self._rng.expovariate(1.0 / self.config.mtbf_s), _FAIL, name)
        i, now, done = 0, 0.0, -1
        while i < len(jobs) or self._has_work():
            t_event = self.events[0][0] if self.events else math.inf
            t_arrival = jobs[i].job.submit_time if i < len(jobs) else math.inf
            now = min(t_event, t_arrival)
            if now == math.inf:
                break
            changed = False
            while i < len(jobs) and jobs[i].job.submit_time == now:
                changed |= self._arrive(jobs[i], now)
                i += 1
            while self.events and self.events[0][0] == now:
                _, _, kind, name = heapq.heappop(self.events)
                if kind in (_TICK, _WAKE, _REPAIR):
                    self._timed -= 1
                changed |= self._handle(kind, name, now)
            if changed:
                self._cycle(now)
            self.series.append((now, self._busy, len(self.snap.pending)))
            if progress is not None and self.ended != done:
                done = self.ended
                progress(done, len(jobs))
        stuck = {jid: self._why(jid) for jid in self.snap.pending}
        return SimResult(self.trace, self.cluster, self.config, self.records, self.series, self.cycles, now, stuck,
                         self.failures)

    def _has_work(self) -> bool:
        """Whether an event could still change something: a running job's completion, or (while
        jobs wait) a round that time calls for or a repair. Failures alone do not keep it going."""
        return bool(self.running) or (bool(self.snap.pending) and self._timed > 0)

    def _push(self, at: float, kind: int, name: str) -> None:
        self._seq += 1
        if kind in (_TICK, _WAKE, _REPAIR):
            self._timed += 1
        heapq.heappush(self.events, (at, self._seq, kind, name))

    # ------------------------------------------------------------------ events
    def _arrive(self, t: TraceJob, now: float) -> bool:
        job = t.job
        models = job.gpu_models
        if models:
            kept = tuple(m for m in models if m in self.models)
            if not kept:
                self.records[job.id].rejected = (f"none of its GPU models ({', '.join(models)}) is in this cluster "
                                                 f"({', '.join(sorted(self.models))})")
                self.ended += 1
                return False
            if kept != models:
                job = dataclasses.replace(job, gpu_models=kept)
        if self.config.estimates == "exact":
            job = dataclasses.replace(job, walltime_estimate_s=t.work_s)
        self.snap.submit(job)
        return True

    def _handle(self, kind: int, name: str, now: float) -> bool:
        if kind == _FINISH:
            jid, token = name.rsplit("#", 1)
            attempt = self.running.get(jid)
            if attempt is None or attempt.token != int(token):
                return False  # a stale completion of an attempt that was stopped
            self._stop(jid, now, completed=True)
            self.snap.finish(jid)
            return bool(self.snap.pending) or self._migrating  # a round if someone may use what it freed
        if kind == _FAIL:  # a round requeues what ran there
            self.failures += 1
            self.snap.set_node_state(name, NodeState.DOWN)
            self._push(now + self._rng.expovariate(1.0 / self.config.mttr_s) if self.config.mttr_s else now,
                       _REPAIR, name)
            return True
        if kind == _REPAIR:
            self.snap.set_node_state(name, NodeState.UP)
            if self.config.mtbf_s:
                self._push(now + self._rng.expovariate(1.0 / self.config.mtbf_s), _FAIL, name)
            return bool(self.snap.pending)
        if kind == _TICK:
            self._next_tick = None
        else:
            self._wakes.discard(now)
        return bool(self.snap.pending) or self._migrating

    # ------------------------------------------------------------------ rounds
    def _cycle(self, now: float) -> None:
        prof = self.config.profile
        # without a grace, jobs started in a round may be preempted (or reclaimed) in the next
        recheck = prof.preemption_min_runtime_s == 0 and (prof.preemption or prof.reclaim)
        for _ in range(8):  # a round that preempted may leave freed capacity for the next one
            d = schedule(self.snap, now, prof)
            self.cycles += 1
            self._assume(d, now)
            if not (d.preemptions or d.requeues or (recheck and d.starts and self.snap.pending)):
                break
        self.last = d
        self._plan_rounds(now)

    def _assume(self, d: Decisions, now: float) -> None:
        for rej in d.rejects:
            self.records[rej.job_id].rejected = rej.reason.message
            self.ended += 1
        stopped = [p.job_id for p in d.preemptions] + [r.job_id for r in d.requeues]
        moved = {p.job_id for p in d.preemptions if p.by == p.job_id}
        for jid in stopped:
            self._stop(jid, now, completed=False, migrated=jid in moved)
        self.snap.apply(d)
        for jid in stopped:
            self._sync_progress(jid)
        for s in d.starts:
            self._start(s.job_id, s.placement.model, now)

    def _start(self, jid: str, model: str, now: float) -> None:
        rec = self.records[jid]
        job = rec.job
        overhead = self.config.restart_cost_s if rec.attempts else 0.0
        speed = job.speed(model)
        self._seq += 1
        attempt = self.running[jid] = _Attempt(now, model, speed, overhead, self._seq)
        rec.attempts += 1
        rec.models.append(model)
        if rec.first_start is None:
            rec.first_start = now
        self._busy += job.total_gpu_milli
        end = now + overhead + max(0.0, rec.trace.work_s - rec.done_s) / speed
        self._push(end, _FINISH, f"{jid}#{attempt.token}")

    def _stop(self, jid: str, now: float, completed: bool, migrated: bool = False) -> None:
        rec = self.records[jid]
        a = self.running.pop(jid)
        self._busy -= rec.job.total_gpu_milli
        held = now - a.start
        run = max(0.0, held - a.overhead)
        if completed:
            kept_run = run
            rec.done_s = rec.trace.work_s
            rec.finish = now
            self.ended += 1
        else:
            if migrated:
                rec.migrations += 1
            else:
                rec.preemptions += 1
            ci = rec.job.checkpoint_interval_s
            kept_run = run if self.config.checkpoint_on_preempt else (math.floor(run / ci) * ci if ci else 0.0)
            rec.done_s = min(rec.trace.work_s, rec.done_s + kept_run * a.speed)
        rec.busy_gpu_s += held * rec.gpus
        rec.lost_gpu_s += (held - kept_run) * rec.gpus

    def _sync_progress(self, jid: str) -> None:
        """The core estimated the stopped job's kept work from its allocation; the simulator knows
        it exactly (restart costs, checkpoint on preemption): make the waiting job say so."""
        job = self.snap.pending.get(jid)
        rec = self.records[jid]
        if job is None or abs(job.work_done_s - rec.done_s) <= 1e-6:
            return
        self.snap.cancel(jid)
        self.snap.submit(dataclasses.replace(job, work_done_s=rec.done_s))

    def _plan_rounds(self, now: float) -> None:
        """Rounds that time alone calls for while jobs wait, or while jobs may migrate (see the
        module docstring)."""
        if not self.snap.running or not (self.snap.pending or self._migrating):
            return
        if self._tick and self._next_tick is None and self.snap.pending:
            self._next_tick = (math.floor(now / self._tick) + 1) * self._tick
            self._push(self._next_tick, _TICK, "")
        prof = self.config.profile
        if (prof.preemption or prof.reclaim or prof.migration) and prof.preemption_min_runtime_s > 0:
            grace = prof.preemption_min_runtime_s
            young = [a.start + grace for jid, a in self.running.items()
                     if a.start + grace > now and self.records[jid].job.preemptible]
            if young:
                at = min(young)
                if at not in self._wakes:
                    self._wakes.add(at)
                    self._push(at, _WAKE, "")

    def _why(self, jid: str) -> str:
        reason = self.last.why(jid) if self.last is not None else None
        return reason.message if reason is not None else "never scheduled"


def simulate(trace: Trace, cluster: SimCluster, config: SimConfig | None = None,
             progress: Callable[[int, int], None] | None = None) -> SimResult:
    """Replay ``trace`` on ``cluster``: the one-call form of :class:`Simulator`."""
    return Simulator(trace, cluster, config).run(progress)
