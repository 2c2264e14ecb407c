"""The snapshot: the core's in-memory picture of nodes, tenancy, waiting and running jobs.

A shell (the simulator, the control plane) builds one Snapshot, then keeps it current with small
deltas — :meth:`Snapshot.submit`, :meth:`~Snapshot.finish`, :meth:`~Snapshot.cancel`,
:meth:`~Snapshot.set_node_state`, :meth:`~Snapshot.set_usage` — and by applying the decisions it
persisted with :meth:`~Snapshot.apply`. ``schedule(snapshot, now)`` reads it and never changes
it. Indexes (per-pool free GPUs, quota usage, job classes) are kept up to date by the deltas, so
a cycle never rebuilds them.
"""

from __future__ import annotations

import dataclasses
import math
from bisect import bisect_left, insort
from collections.abc import Iterable
from typing import Any

from kumo.core import explain
from kumo.core._gc import collector_paused
from kumo.core.classes import ClassIndex, JobClass, Option, shape_of
from kumo.core.decisions import Decisions
from kumo.core.errors import (
    DuplicateError,
    InvalidValueError,
    StaleDecisionsError,
    StateError,
    UnknownReferenceError,
    UnsatisfiableJobError,
)
from kumo.core.explain import Reason
from kumo.core.fairshare import FairShareState
from kumo.core.model import (
    Allocation,
    Cohort,
    GrantStanding,
    Job,
    Node,
    NodeState,
    Placement,
    Programme,
    Project,
    Queue,
    Topology,
    UsageSample,
)
from kumo.core.placement import Shape
from kumo.core.policies import OrderPolicy, order_policy
from kumo.core.pools import Cluster
from kumo.core.profile import Profile
from kumo.core.quota import QuotaTree
from kumo.core.resources import CPU, GPU_MILLI, MEM, format_amount, gpu_flavor

Take = tuple[int, tuple[int, ...], int, int, int]  # node, GPUs, milli per GPU, cpu, mem


class Running:
    """A running job as the snapshot indexes it."""

    __slots__ = ("alloc", "end", "pool", "project", "queue", "request", "takes")

    def __init__(self, alloc: Allocation, queue: int, project: int, request: dict[str, int],
                 takes: list[Take], pool: int):
        self.alloc = alloc
        self.queue = queue
        self.project = project
        self.request = request
        self.takes = takes
        self.pool = pool
        self.end = alloc.expected_end()

    @property
    def job(self) -> Job:
        return self.alloc.job

    def gpus(self) -> float:
        return self.alloc.job.total_gpu_milli / GPU_MILLI


def _unique(kind: str, names: Iterable[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DuplicateError(kind, f"{name!r} is defined twice")
        seen.add(name)


class Snapshot:
    """Nodes, tenancy, waiting and running jobs, and past usage, validated and indexed.

    ``unsatisfiable``: what to do with a waiting job that no allowed part of the cluster could
    ever hold — ``"raise"`` (:class:`UnsatisfiableJobError`, the default) or ``"reject"`` (the
    next cycle rejects it with the reason).
    """

    def __init__(
        self,
        nodes: Iterable[Node],
        queues: Iterable[Queue],
        *,
        cohorts: Iterable[Cohort] = (),
        programmes: Iterable[Programme] = (),
        projects: Iterable[Project] = (),
        jobs: Iterable[Job] = (),
        running: Iterable[Allocation] = (),
        usage: Iterable[UsageSample] = (),
        flavors: Iterable[str] = (),
        unsatisfiable: str = "raise",
        standings: Iterable[GrantStanding] = (),
    ) -> None:
        with collector_paused():
            self._build(nodes, queues, cohorts, programmes, projects, jobs, running, usage, flavors, unsatisfiable,
                        standings)

    def _build(self, nodes: Iterable[Node], queues: Iterable[Queue], cohorts: Iterable[Cohort],
               programmes: Iterable[Programme], projects: Iterable[Project], jobs: Iterable[Job],
               running: Iterable[Allocation], usage: Iterable[UsageSample], flavors: Iterable[str],
               unsatisfiable: str, standings: Iterable[GrantStanding]) -> None:
        if unsatisfiable not in ("raise", "reject"):
            raise InvalidValueError("snapshot", f"unsatisfiable must be 'raise' or 'reject', got {unsatisfiable!r}")
        self.unsatisfiable = unsatisfiable
        self.nodes = {n.name: n for n in nodes}
        node_list = list(self.nodes.values())
        if not node_list:
            raise InvalidValueError("snapshot", "needs at least one node")
        self.queues = list(queues)
        self.cohorts = list(cohorts)
        self.programmes = list(programmes)
        self.projects = list(projects)
        _unique("queue", (q.name for q in self.queues))
        _unique("cohort", (c.name for c in self.cohorts))
        _unique("programme", (p.name for p in self.programmes))
        _unique("project", (p.name for p in self.projects))
        self.cluster = Cluster(node_list)
        if len(self.cluster.table.names) != sum(1 for _ in node_list):
            raise DuplicateError("node", "two nodes share a name")
        self.capacity = self._capacity()
        self._any_down = any(n.state is NodeState.DOWN for n in node_list)
        self.models = sorted({n.gpu_model for n in node_list})
        self.regions = sorted({n.region for n in node_list})
        self.flavors = {gpu_flavor(m) for m in self.models} | {CPU, MEM} | set(flavors)
        self.quota = QuotaTree(self.queues, self.cohorts, self.flavors)
        self.fs = self._fairshare()
        self.pending: dict[str, Job] = {}
        self.running: dict[str, Running] = {}
        self.running_by_queue: dict[int, set[str]] = {}
        self.ends: dict[int, list[tuple[float, str]]] = {p.id: [] for p in self.cluster.pools}
        self.usage: list[UsageSample] = []
        self.version = 0
        self._indexes: dict[tuple[Any, ...], ClassIndex] = {}
        self._rejected: dict[str, str] = {}
        self._ever_fits: dict[tuple[int, Shape], bool] = {}
        self._known_constraints: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
        self._signatures: dict[tuple[Any, ...], tuple[tuple[Option, ...], str | None, int]] = {}
        self._job_refs: dict[str, tuple[int, int, int]] = {}  # waiting job -> (queue, project, signature id)
        self.standings: dict[str, GrantStanding] = {}
        self.held: dict[str, tuple[Job, Reason]] = {}  # waiting jobs of held projects, not scheduled
        self._coerced: set[str] = set()  # waiting jobs made preemptible by a preemptible-only standing
        self.standings = self._check_standings(standings)
        for alloc in running:
            self._add_running(alloc, check=True)
        for job in jobs:
            self._add_pending(job)
        self.set_usage(usage)
        self.version = 0

    def _capacity(self) -> dict[str, int]:
        """What the inventory holds of each flavor (every node, whatever its state)."""
        t = self.cluster.table
        capacity: dict[str, int] = {}
        for n in range(len(t.names)):
            f = gpu_flavor(t.model[n])
            capacity[f] = capacity.get(f, 0) + t.gpus[n] * GPU_MILLI
            capacity[CPU] = capacity.get(CPU, 0) + t.cpu_cap[n]
            capacity[MEM] = capacity.get(MEM, 0) + t.mem_cap[n]
        return capacity

    def down_nodes(self) -> int:
        return sum(1 for n in self.nodes.values() if n.state is NodeState.DOWN) if self._any_down else 0

    def _fairshare(self) -> FairShareState:
        progs = [(p.name, p.weight) for p in sorted(self.programmes, key=lambda p: p.name)]
        known = {p for p, _ in progs}
        projs = []
        for p in sorted(self.projects, key=lambda p: p.name):
            if p.programme not in known:
                raise UnknownReferenceError(f"project {p.name!r}", f"programme {p.programme!r} does not exist")
            projs.append((p.name, p.programme, p.weight))
        return FairShareState(progs, projs)

    # ------------------------------------------------------------------ references
    def _refs(self, job: Job) -> tuple[int, int]:
        where = f"job {job.id!r}"
        q = self.quota.queue(job.queue)
        if q is None:
            raise UnknownReferenceError(where, f"queue {job.queue!r} does not exist")
        p = self.fs.index.get(job.project)
        if p is None:
            raise UnknownReferenceError(where, f"project {job.project!r} does not exist")
        if (job.gpu_models, job.regions) not in self._known_constraints:
            self._check_constraints(job, where)
        return q, p

    def _check_constraints(self, job: Job, where: str) -> None:
        for m in job.gpu_models:
            if gpu_flavor(m) not in self.flavors:
                raise UnknownReferenceError(
                    where, f"flavor gpu.{m} is not in the inventory (known: {', '.join(self.models)})"
                )
        for r in job.regions:
            if r not in self.regions:
                raise UnknownReferenceError(where, f"region {r!r} does not exist (known: {', '.join(self.regions)})")
        self._known_constraints.add((job.gpu_models, job.regions))

    def _signature(self, job: Job) -> tuple[tuple[Option, ...], str | None, int]:
        """A job's options, why it can never fit (or ``None``), and an id for its shape and
        constraints — computed once per distinct shape."""
        key = (job.gpu_models, job.regions, job.speeds, job.workers, job.gpus, job.gpu_milli,
               job.cpu_milli, job.mem_mib, job.topology)
        found = self._signatures.get(key)
        if found is None:
            options = self._options(job)
            found = self._signatures[key] = (options, self._check_satisfiable(job, options), len(self._signatures))
        return found

    def options(self, job: Job) -> tuple[Option, ...]:
        """The GPU models a job may use, best first: by speed where it gives speeds, else in its
        order of preference; for each, the pools of its allowed regions."""
        return self._signature(job)[0]

    def _options(self, job: Job) -> tuple[Option, ...]:
        models = [m for m in (job.gpu_models or self.models) if m in self.models]
        if job.speeds:
            models.sort(key=lambda m: -job.speed(m))
        regions = job.regions or tuple(self.regions)
        out = []
        for m in models:
            pools = tuple(self.cluster.pool_by_key[(r, m)] for r in regions if (r, m) in self.cluster.pool_by_key)
            if pools:
                out.append(Option(m, gpu_flavor(m), pools, job.request(m), job.speed(m)))
        return tuple(out)

    def could_ever_fit(self, pool_id: int, shape: Shape) -> bool:
        """Whether an empty pool (every node up) could hold the gang."""
        key = (pool_id, shape)
        known = self._ever_fits.get(key)
        if known is None:
            known = self._ever_fits[key] = self._could_ever_fit(pool_id, shape)
        return known

    def _could_ever_fit(self, pool_id: int, shape: Shape) -> bool:
        t = self.cluster.table
        pool = self.cluster.pools[pool_id]

        def cap(kind: tuple[int, int, int]) -> int:
            gpus, cpu, mem = kind
            c = gpus // shape.gpus if shape.gpus else gpus * (GPU_MILLI // shape.milli)
            if shape.cpu and cpu:
                c = min(c, cpu // shape.cpu)
            if shape.mem and mem:
                c = min(c, mem // shape.mem)
            return c

        def capacity(members: list[int]) -> int:  # nodes of a kind hold the same: count kinds
            kinds: dict[tuple[int, int, int], int] = {}
            for local in members:
                n = pool.nodes[local]
                k = (t.gpus[n], t.cpu_cap[n], t.mem_cap[n])
                kinds[k] = kinds.get(k, 0) + 1
            return sum(cap(k) * count for k, count in kinds.items())

        w = shape.workers
        if shape.topology is Topology.NODE:
            return any(cap((t.gpus[n], t.cpu_cap[n], t.mem_cap[n])) >= w for n in pool.nodes)
        level = {Topology.NVLINK: "nvlink", Topology.BLOCK: "block", Topology.ZONE: "zone"}.get(
            shape.topology  # type: ignore[arg-type]
        )
        if level is None:
            return capacity(list(range(len(pool.nodes)))) >= w
        return any(capacity(members) >= w for members in pool.levels[level].members)

    def _check_satisfiable(self, job: Job, options: tuple[Option, ...]) -> str | None:
        shape = shape_of(job)
        if any(self.could_ever_fit(p, shape) for o in options for p in o.pools):
            return None
        where = f" within one {shape.topology.value}" if shape.topology else ""
        per = f"{job.workers} workers x {job.gpus or format_amount('gpu.x', job.gpu_milli)}"
        allowed = ", ".join(self.cluster.pools[p].name for o in options for p in o.pools) or "none"
        return (f"needs {per} GPUs{where}, more than any allowed pool could ever hold "
                f"(allowed: {allowed})")

    # ------------------------------------------------------------------ job indexing
    def _add_pending(self, job: Job) -> None:
        if job.id in self.pending or job.id in self.running or job.id in self.held:
            raise DuplicateError(f"job {job.id!r}", "a job with this id already exists")
        q = self.quota.index.get((False, job.queue))
        p = self.fs.index.get(job.project)
        if q is None or p is None:
            self._refs(job)  # raises, naming what is unknown
        standing = self.standings.get(job.project)
        if standing is not None:
            if standing.hold is not None:
                self._refs(job)
                self.held[job.id] = (job, Reason(explain.GRANT, standing.hold))
                return
            if standing.preemptible_only and not job.preemptible:
                job = dataclasses.replace(job, preemptible=True)
                self._coerced.add(job.id)
        key = (job.gpu_models, job.regions, job.speeds, job.workers, job.gpus, job.gpu_milli,
               job.cpu_milli, job.mem_mib, job.topology)
        found = self._signatures.get(key)
        if found is None:
            self._refs(job)
            found = self._signature(job)
        _, problem, sid = found
        self._job_refs[job.id] = (q, p, sid)  # type: ignore[assignment]
        if problem is not None:
            if self.unsatisfiable == "raise":
                raise UnsatisfiableJobError(f"job {job.id!r}", problem)
            self._rejected[job.id] = problem
        self.pending[job.id] = job
        for index in self._indexes.values():
            index.add(job)

    def _remove_pending(self, job_id: str) -> Job:
        held = self.held.pop(job_id, None)
        if held is not None:
            return held[0]
        job = self.pending.pop(job_id)
        if job_id in self._coerced:  # give back what it asked for: the standing may change before it runs
            self._coerced.discard(job_id)
            job = dataclasses.replace(job, preemptible=False)
        self._rejected.pop(job_id, None)
        for index in self._indexes.values():
            index.remove(job)
        del self._job_refs[job_id]
        return job

    def class_index(self, profile: Profile) -> ClassIndex:
        """Waiting jobs grouped into classes for ``profile``'s order policy (built once, then
        kept current by the deltas)."""
        key = (profile,)
        entry = self._indexes.get(key)
        if entry is None:
            policy = order_policy(profile)
            entry = ClassIndex(policy, _ClassMaker(self, policy), profile.preemption_min_runtime_s)
            with collector_paused():
                entry.build(self.pending.values())
            self._indexes[key] = entry
        return entry

    # ------------------------------------------------------------------ running jobs
    def _add_running(self, alloc: Allocation, check: bool = False) -> Running:
        job = alloc.job
        if job.id in self.running or job.id in self.pending:
            raise DuplicateError(f"job {job.id!r}", "a job with this id already exists")
        q, p = self._refs(job)
        where = f"running job {job.id!r}"
        pl = alloc.placement
        if len(pl.workers) != job.workers:
            raise InvalidValueError(where, f"placement has {len(pl.workers)} workers, the job {job.workers}")
        key = (pl.region, pl.model)
        if key not in self.cluster.pool_by_key:
            raise UnknownReferenceError(where, f"no nodes of {pl.model} in {pl.region}")
        t = self.cluster.table
        takes: list[Take] = []
        for w in pl.workers:
            n = t.index.get(w.node)
            if n is None:
                raise UnknownReferenceError(where, f"node {w.node!r} does not exist")
            if (t.region[n], t.model[n]) != key:
                raise InvalidValueError(where, f"node {w.node} is not a {pl.model} node in {pl.region}")
            want = job.gpus if job.gpus else 1
            if len(w.gpus) != want or w.gpu_milli != job.milli_per_worker // want:
                raise InvalidValueError(where, f"worker {w.rank} holds {w.gpus} x {w.gpu_milli}, not what the job asks")
            for g in w.gpus:
                if not 0 <= g < t.gpus[n]:
                    raise InvalidValueError(where, f"node {w.node} has no GPU {g}")
                if check and t.gpu_free[n][g] < w.gpu_milli:
                    raise InvalidValueError(where, f"GPU {g} of node {w.node} is over-committed")
            takes.append((n, w.gpus, w.gpu_milli, job.cpu_milli, job.mem_mib))
            self.cluster.take(n, w.gpus, w.gpu_milli, job.cpu_milli, job.mem_mib)
        request = job.request(pl.model)
        rec = Running(alloc, q, p, request, takes, self.cluster.pool_by_key[key])
        self.quota.add(q, request)
        self._started(rec)
        self.fs.add(p, request)
        self.running[job.id] = rec
        self.running_by_queue.setdefault(q, set()).add(job.id)
        if rec.end is not None:
            insort(self.ends[rec.pool], (rec.end, job.id))
        return rec

    def _remove_running(self, job_id: str) -> Running:
        rec = self.running.pop(job_id)
        for n, gpus, milli, cpu, mem in rec.takes:
            self.cluster.give(n, gpus, milli, cpu, mem)
        self.quota.add(rec.queue, rec.request, -1)
        self.fs.add(rec.project, rec.request, -1)
        self._released(rec.queue, rec.request, rec.pool)
        self.running_by_queue[rec.queue].discard(job_id)
        if rec.end is not None:
            e = self.ends[rec.pool]
            del e[bisect_left(e, (rec.end, job_id))]
        return rec

    # ------------------------------------------------------------------ waking parked classes
    def _released(self, queue: int, request: dict[str, int], pool: int | None) -> None:
        quota = self.quota
        root = quota.root[queue]
        for index in self._indexes.values():
            for flavor in request:
                borrowed = any(quota.borrowing(x, flavor) for x in self._tree(root))
                index.quota_freed(root, flavor, lambda q, f=flavor: quota.available(q, f),
                                  lambda q, f=flavor: quota.usage[q].get(f, 0), borrowed)
            if pool is not None:
                index.room_freed(pool)

    def _tree(self, root: int) -> list[int]:
        """The queues of a cohort tree."""
        quota = self.quota
        return [x for x in range(len(quota.names)) if not quota.is_cohort[x] and quota.root[x] == root]

    def _started(self, rec: Running) -> None:
        if not self._indexes:
            return
        if not rec.job.preemptible:
            return  # never a victim: wakes no one
        quota, q = self.quota, rec.queue
        root = quota.root[q]
        flavor = "gpu." + rec.alloc.placement.model
        borrowing = quota.borrowing(q, flavor)
        start = rec.alloc.start_time
        for index in self._indexes.values():
            rank = index.policy.rank(rec.job, rec.job.attained_gpu_s, rec.job.work_done_s)
            index.victim_started([("q", q), ("t", root), ("all",)], rank, start)
            if borrowing:
                index.borrower_started(root, flavor, lambda x: quota.usage[x].get(flavor, 0), start)

    # ------------------------------------------------------------------ deltas
    def submit(self, job: Job) -> None:
        """Add a waiting job (validated as in the constructor)."""
        self._add_pending(job)
        self.version += 1

    def finish(self, job_id: str) -> Allocation:
        """A running job ended (success or failure): free what it held."""
        if job_id not in self.running:
            raise StateError(f"job {job_id!r} is not running")
        rec = self._remove_running(job_id)
        self.version += 1
        return rec.alloc

    def cancel(self, job_id: str) -> None:
        """Remove a job, waiting (held or not) or running."""
        if job_id in self.pending or job_id in self.held:
            self._remove_pending(job_id)
        elif job_id in self.running:
            self._remove_running(job_id)
        else:
            raise StateError(f"job {job_id!r} does not exist")
        self.version += 1

    def set_node_state(self, name: str, state: NodeState) -> None:
        """Mark a node up, drained or down. Jobs on a down node are requeued by the next cycle."""
        n = self.cluster.table.index.get(name)
        if n is None:
            raise UnknownReferenceError("node", f"node {name!r} does not exist")
        self.cluster.set_state(n, state)
        self.nodes[name] = dataclasses.replace(self.nodes[name], state=state)
        self._any_down = any(n.state is NodeState.DOWN for n in self.nodes.values())
        if state is NodeState.UP:
            for index in self._indexes.values():
                index.room_freed(self.cluster.table.pool_of[n])
        self.version += 1

    def set_usage(self, usage: Iterable[UsageSample]) -> None:
        """Replace the past-usage samples that fair share reads."""
        samples = list(usage)
        history: list[list[UsageSample]] = [[] for _ in self.fs.names]
        for s in samples:
            p = self.fs.index.get(s.project)
            if p is None:
                raise UnknownReferenceError("usage", f"project {s.project!r} does not exist")
            if s.flavor not in self.flavors:
                raise UnknownReferenceError("usage", f"flavor {s.flavor!r} is not in the inventory")
            history[p].append(s)
        self.usage = samples
        self.fs.history = history
        self.version += 1

    def set_standings(self, standings: Iterable[GrantStanding]) -> None:
        """Replace the projects' grant standings: jobs of projects now held leave the schedule
        (with the hold as their reason), those of projects no longer held come back."""
        found = self._check_standings(standings)  # before anything moves: a bad standing changes nothing
        ids = [*self.pending, *self.held]
        waiting = [self._remove_pending(jid) for jid in ids]  # each as it was submitted
        self.standings = found
        for job in waiting:
            self._add_pending(job)
        self.version += 1

    def _check_standings(self, standings: Iterable[GrantStanding]) -> dict[str, GrantStanding]:
        found: dict[str, GrantStanding] = {}
        for st in standings:
            if st.project not in self.fs.index:
                raise UnknownReferenceError("grant standing", f"project {st.project!r} does not exist")
            if st.project in found:
                raise DuplicateError("grant standing", f"project {st.project!r} has two standings")
            found[st.project] = st
        return found

    def apply(self, decisions: Decisions) -> None:
        """Assume ``decisions``: stop preempted and requeued jobs (back to waiting, keeping what
        they attained), drop rejected jobs, start the started ones."""
        if decisions.version != self.version:
            raise StaleDecisionsError(
                f"decisions were made on version {decisions.version} of the snapshot, which is now "
                f"at {self.version}; schedule again"
            )
        now = decisions.now
        for index in self._indexes.values():
            for cls in index.due(now):
                index.wake(cls)
        for index, cls, park in decisions.parks:
            if park is None:
                index.wake(cls)  # woken by quota, evaluated, not blocked by quota any more
            else:
                index.park(cls, park)
        for r in decisions.requeues:
            self._requeue(r.job_id, now)
        for p in decisions.preemptions:
            self._requeue(p.job_id, now)
        for rej in decisions.rejects:
            self._remove_pending(rej.job_id)
        for s in decisions.starts:
            job = self.pending[s.job_id]  # as scheduled (preemptible under a preemptible-only standing)
            self._remove_pending(s.job_id)
            self._add_running(Allocation(job, s.placement, now, None))
        self.version += 1

    def _requeue(self, job_id: str, now: float) -> None:
        rec = self._remove_running(job_id)
        job = dataclasses.replace(
            rec.job,
            attained_gpu_s=rec.job.attained_gpu_s + rec.gpus() * max(0.0, now - rec.alloc.start_time),
            work_done_s=rec.job.work_done_s + checkpointed_work(rec.alloc, now),
        )
        self._add_pending(job)

    # ------------------------------------------------------------------ export
    def export(self) -> dict[str, Any]:
        """Plain values from which ``Snapshot(**export)`` rebuilds an equal snapshot."""
        return {
            "nodes": list(self.nodes.values()),
            "queues": list(self.queues),
            "cohorts": list(self.cohorts),
            "programmes": list(self.programmes),
            "projects": list(self.projects),
            "jobs": [*self.pending.values(), *(job for job, _ in self.held.values())],
            "running": [r.alloc for r in self.running.values()],
            "usage": list(self.usage),
            "flavors": sorted(self.flavors),
            "unsatisfiable": self.unsatisfiable,
            "standings": list(self.standings.values()),
        }

    def placement_of(self, job_id: str) -> Placement:
        return self.running[job_id].alloc.placement


def checkpointed_work(alloc: Allocation, now: float) -> float:
    """Reference-speed seconds of progress an attempt keeps when stopped at ``now``: the work up
    to its last checkpoint (all of it is lost without checkpoints)."""
    job = alloc.job
    elapsed = max(0.0, now - alloc.start_time)
    if alloc.last_checkpoint is not None:
        kept = max(0.0, min(elapsed, alloc.last_checkpoint - alloc.start_time))
    elif job.checkpoint_interval_s:
        kept = math.floor(elapsed / job.checkpoint_interval_s) * job.checkpoint_interval_s
    else:
        kept = 0.0
    return kept * job.speed(alloc.placement.model)


class _ClassMaker:
    """Builds job classes for a snapshot and an order policy."""

    def __init__(self, snap: Snapshot, policy: OrderPolicy):
        self.snap = snap
        self.policy = policy
        self._never: dict[tuple[int, int], str | None] = {}
        self._shapes: dict[int, tuple[tuple[Option, ...], Shape, int]] = {}  # signature id -> options, shape, pid
        self._pids: dict[tuple[Any, ...], int] = {}  # (shape, models, pools) -> preemption-search id

    def key(self, job: Job, band: Any) -> tuple[Any, ...]:
        """Queue, fair-share leaf, band and shape-and-constraints id: what makes jobs interchangeable."""
        q, p, sid = self.snap._job_refs[job.id]
        return (q, p if self.policy.fair_share else -1, band, sid)

    def __call__(self, job: Job, key: tuple[Any, ...], seq: int, band: Any) -> JobClass:
        q, p, sid = self.snap._job_refs[job.id]
        found = self._shapes.get(sid)
        if found is None:
            options, shape = self.snap.options(job), shape_of(job)
            pkey = (shape, tuple(o.model for o in options), tuple(o.pools for o in options))
            pid = self._pids.setdefault(pkey, len(self._pids))
            found = self._shapes[sid] = (options, shape, pid)
        options, shape, pid = found
        nkey = (q, sid)
        if nkey not in self._never:
            self._never[nkey] = self._never_admitted(job, q, options)
        never = self._never[nkey]
        leaf = p if self.policy.fair_share else -1
        cls = JobClass(key, seq, job, q, leaf, band, shape, options, never, pid)
        cls.rank = self.policy.rank(job, job.attained_gpu_s, job.work_done_s)
        return cls

    def _never_admitted(self, job: Job, q: int, options: tuple[Option, ...]) -> str | None:
        """Why no option of the job could ever be admitted by its queue's quota, or ``None``."""
        quota = self.snap.quota
        if not options or any(all(quota.potential(q, f) >= a for f, a in o.request.items()) for o in options):
            return None
        o = options[0]
        flavor = next(f for f, a in o.request.items() if quota.potential(q, f) < a)
        return (f"needs {format_amount(flavor, o.request[flavor])} {flavor} but queue {job.queue} "
                f"could hold at most {format_amount(flavor, quota.potential(q, flavor))} "
                "even with its whole cohort idle")
