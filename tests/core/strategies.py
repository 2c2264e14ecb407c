"""Hypothesis strategies for property tests of the scheduling core.

A :class:`World` is the plain inputs of a :class:`~kumo.core.Snapshot`: a small random cluster,
random tenancy (programmes, projects, queues, cohorts, quotas), running allocations that are
valid by construction (a first wave of jobs scheduled on an empty cluster and applied, then
nodes drained or taken down), waiting jobs, past usage and the cycle's ``now``.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from kumo.core import (
    ORDER_POLICIES,
    Allocation,
    Cohort,
    Job,
    Node,
    NodeState,
    Profile,
    Programme,
    Project,
    Queue,
    Quota,
    Snapshot,
    Topology,
    UsageSample,
    schedule,
)

REGIONS = ("r-east", "r-west", "r-north")
MODELS = ("h200", "h100", "a100")
SLICES = (100, 142, 250, 333, 428, 500, 750)
FIRST_WAVE_AT = 1000.0


@dataclass(frozen=True)
class Inventory:
    """What a cluster offers, for drawing jobs and quotas that refer to it."""

    regions: tuple[str, ...]
    models: tuple[str, ...]
    cpu: bool
    mem: bool


@dataclass(frozen=True)
class Tenancy:
    programmes: tuple[Programme, ...]
    projects: tuple[Project, ...]
    queues: tuple[Queue, ...]
    cohorts: tuple[Cohort, ...]

    @property
    def queue_names(self) -> tuple[str, ...]:
        return tuple(q.name for q in self.queues)

    @property
    def project_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.projects)


@dataclass
class World:
    """Everything a snapshot is built from."""

    inventory: Inventory
    tenancy: Tenancy
    nodes: list[Node]
    jobs: list[Job]
    running: list[Allocation]
    usage: list[UsageSample] = field(default_factory=list)
    now: float = FIRST_WAVE_AT

    def kwargs(self, rng: random.Random | None = None) -> dict[str, Any]:
        """Snapshot arguments; with ``rng``, every list in a shuffled order."""
        t = self.tenancy
        lists: dict[str, list[Any]] = {
            "nodes": list(self.nodes),
            "queues": list(t.queues),
            "cohorts": list(t.cohorts),
            "programmes": list(t.programmes),
            "projects": list(t.projects),
            "jobs": list(self.jobs),
            "running": list(self.running),
            "usage": list(self.usage),
        }
        if rng is not None:
            for v in lists.values():
                rng.shuffle(v)
        return {**lists, "unsatisfiable": "reject"}

    def snapshot(self, rng: random.Random | None = None) -> Snapshot:
        nodes = self.kwargs(rng)
        return Snapshot(nodes.pop("nodes"), nodes.pop("queues"), **nodes)


# --------------------------------------------------------------------------- cluster


@st.composite
def clusters(draw: st.DrawFn, max_kinds: int = 3) -> tuple[list[Node], Inventory]:
    """1-3 regions, 1-3 GPU models, 1-12 nodes (all UP; states are drawn later)."""
    regions = REGIONS[: draw(st.integers(1, max_kinds))]
    models = MODELS[: draw(st.integers(1, max_kinds))]
    with_cpu = draw(st.booleans())
    with_mem = draw(st.booleans())
    nvlink_racks = draw(st.booleans())
    n = draw(st.integers(1, 12))
    nodes = []
    for i in range(n):
        region = draw(st.sampled_from(regions))
        model = draw(st.sampled_from(models))
        gpus = draw(st.sampled_from((1, 2, 4, 8)))
        block = f"b{draw(st.integers(0, 2))}"
        nvlink = ""
        if nvlink_racks and draw(st.booleans()):
            nvlink = f"{region}-{model}-nv{draw(st.integers(0, 1))}"
        cpu = draw(st.sampled_from((8000, 16000, 64000))) if with_cpu else 0
        mem = draw(st.sampled_from((32768, 131072))) if with_mem else 0
        nodes.append(Node(f"n{i:02d}", region, model, gpus, block=block, nvlink_domain=nvlink,
                          cpu_milli=cpu, mem_mib=mem))
    used_regions = tuple(r for r in regions if any(nd.region == r for nd in nodes))
    used_models = tuple(m for m in models if any(nd.gpu_model == m for nd in nodes))
    return nodes, Inventory(used_regions, used_models, with_cpu, with_mem)


node_states = st.sampled_from((NodeState.UP,) * 6 + (NodeState.DRAINED, NodeState.DOWN))


# --------------------------------------------------------------------------- tenancy


@st.composite
def quotas(draw: st.DrawFn, inv: Inventory, cohort: bool) -> dict[str, Quota]:
    out: dict[str, Quota] = {}
    for m in inv.models:
        if not draw(st.integers(0, 4)):
            continue
        nominal = draw(st.sampled_from((0, 1, 2, 4, 8, 16, 32, 64, 0.5, 2.5, 7.5)))
        borrow = draw(st.none() | st.integers(0, 8)) if cohort else None
        lend = draw(st.none() | st.integers(0, int(nominal)))
        out[f"gpu.{m}"] = Quota(nominal, borrow, lend)
    if inv.cpu and draw(st.integers(0, 3)) == 0:
        out["cpu"] = Quota(draw(st.sampled_from((4, 16, 64))), draw(st.none() | st.sampled_from((0, 8))))
    if inv.mem and draw(st.integers(0, 4)) == 0:
        out["mem"] = Quota(draw(st.sampled_from((65536, 262144))))
    return out


@st.composite
def tenancies(draw: st.DrawFn, inv: Inventory, generous: bool = False) -> Tenancy:
    """1-2 programmes, 1-4 projects, 1-5 queues, optional cohorts with an optional parent;
    ``generous``: every queue may use the whole cluster (contention is for GPUs, not quota)."""
    programmes = tuple(Programme(f"prog{i}", draw(st.sampled_from((1.0, 2.0, 0.5))))
                       for i in range(draw(st.integers(1, 2))))
    projects = tuple(Project(f"proj{i}", draw(st.sampled_from(programmes)).name,
                             draw(st.sampled_from((1.0, 3.0))))
                     for i in range(draw(st.integers(1, 4))))
    cohorts: list[Cohort] = []
    n_cohorts = 0 if generous else draw(st.integers(0, 2))
    if n_cohorts:
        parent = None
        if draw(st.booleans()):
            parent = "top"
            cohorts.append(Cohort("top", quota=draw(quotas(inv, cohort=False)) if draw(st.booleans()) else {}))
        for i in range(n_cohorts):
            q = draw(quotas(inv, cohort=parent is not None)) if draw(st.booleans()) else {}
            cohorts.append(Cohort(f"co{i}", parent=parent, quota=q))
    if generous:
        big = {f"gpu.{m}": 1000 for m in inv.models}
        return Tenancy(programmes, projects, tuple(Queue(f"q{i}", quota=big) for i in range(draw(st.integers(1, 3)))),
                       ())
    names = [c.name for c in cohorts]
    queues = []
    for i in range(draw(st.integers(1, 5))):
        cohort = draw(st.none() | st.sampled_from(names)) if names else None
        queues.append(Queue(f"q{i}", quota=draw(quotas(inv, cohort=cohort is not None)), cohort=cohort))
    return Tenancy(programmes, projects, tuple(queues), tuple(cohorts))


# --------------------------------------------------------------------------- jobs


def _subset(draw: st.DrawFn, items: tuple[str, ...]) -> tuple[str, ...]:
    if not draw(st.integers(0, 2)):
        return tuple(draw(st.permutations(items))[: draw(st.integers(1, len(items)))])
    return ()


@st.composite
def jobs(draw: st.DrawFn, inv: Inventory, ten: Tenancy, job_id: str, submit_min: float = 0.0,
         timed: bool = False) -> Job:
    """A random job whose references (queue, project, regions, models) exist; ``timed``: it
    always has a walltime estimate."""
    kw: dict[str, Any] = {}
    if draw(st.integers(0, 3)):
        kw["gpus"] = draw(st.sampled_from((1, 1, 2, 4, 8)))
    else:
        kw["gpu_milli"] = draw(st.sampled_from(SLICES))
    kw["workers"] = draw(st.sampled_from((1, 1, 1, 2, 3, 4)))
    if inv.cpu and draw(st.booleans()):
        kw["cpu_milli"] = draw(st.sampled_from((1000, 4000, 16000)))
    if inv.mem and draw(st.booleans()):
        kw["mem_mib"] = draw(st.sampled_from((8192, 65536)))
    kw["priority"] = draw(st.integers(0, 3))
    kw["preemptible"] = draw(st.integers(0, 3)) > 0
    walltimes = st.sampled_from((60.0, 300.0, 1800.0, 3600.0, 20000.0))
    kw["walltime_estimate_s"] = draw(walltimes if timed else st.none() | walltimes)
    if draw(st.integers(0, 3)) == 0:
        kw["walltime_limit_s"] = draw(st.sampled_from((600.0, 7200.0)))
    kw["checkpoint_interval_s"] = draw(st.none() | st.sampled_from((100.0, 900.0)))
    kw["regions"] = _subset(draw, inv.regions)
    kw["gpu_models"] = _subset(draw, inv.models)
    if draw(st.integers(0, 3)) == 0:
        ms = draw(st.lists(st.sampled_from(inv.models), min_size=1, unique=True))
        kw["speeds"] = {m: draw(st.sampled_from((0.5, 1.0, 1.6, 2.5))) for m in ms}
    if draw(st.integers(0, 3)) == 0:
        kw["topology"] = draw(st.sampled_from(list(Topology)))
    kw["submit_time"] = submit_min + draw(st.integers(0, 50))
    if draw(st.integers(0, 4)) == 0:
        kw["attained_gpu_s"] = float(draw(st.sampled_from((100, 5000, 50000))))
        kw["work_done_s"] = float(draw(st.sampled_from((0, 30, 1000))))
    return Job(job_id, draw(st.sampled_from(ten.queue_names)), draw(st.sampled_from(ten.project_names)), **kw)


def job_lists(inv: Inventory, ten: Tenancy, prefix: str, min_size: int, max_size: int,
              submit_min: float = 0.0, timed: bool = False) -> st.SearchStrategy[list[Job]]:
    return st.integers(min_size, max_size).flatmap(
        lambda n: st.tuples(*(jobs(inv, ten, f"{prefix}{i}", submit_min, timed) for i in range(n))).map(list)
    )


# --------------------------------------------------------------------------- profiles


_PROFILE_FIELDS = {f.name for f in dataclasses.fields(Profile)}


@st.composite
def profiles(draw: st.DrawFn, backfill: bool | None = None, preemption: bool | None = None) -> Profile:
    """A random profile; ``backfill`` / ``preemption`` (preemption and reclaim) fixed when given."""
    extra: dict[str, Any] = {}
    if "preemption_min_runtime_s" in _PROFILE_FIELDS:
        extra["preemption_min_runtime_s"] = draw(st.sampled_from((0.0, 60.0, 600.0)))
    return Profile(
        **extra,
        order=draw(st.sampled_from(sorted(ORDER_POLICIES))),
        preemption=draw(st.booleans()) if preemption is None else preemption,
        preemption_scope=draw(st.sampled_from(("queue", "cohort", "cluster"))),
        reclaim=draw(st.booleans()) if preemption is None else preemption,
        backfill=draw(st.booleans()) if backfill is None else backfill,
        heterogeneity=draw(st.booleans()),
        migration=draw(st.booleans()),
    )


# --------------------------------------------------------------------------- worlds


def first_wave(nodes: list[Node], ten: Tenancy, wave: list[Job]) -> list[Allocation]:
    """Running allocations that are valid by construction: ``wave`` scheduled on an empty
    cluster and applied."""
    if not wave:
        return []
    snap = Snapshot(nodes, list(ten.queues), cohorts=list(ten.cohorts), programmes=list(ten.programmes),
                    projects=list(ten.projects), jobs=wave, unsatisfiable="reject")
    d = schedule(snap, FIRST_WAVE_AT, Profile(order="fifo", backfill=False))
    snap.apply(d)
    return [r.alloc for r in snap.running.values()]


@st.composite
def worlds(draw: st.DrawFn, min_waiting: int = 1, max_waiting: int = 25, busy: bool | None = None) -> World:
    """A random world; ``busy`` (drawn when ``None``, one time in three): a single pool, quota
    that never binds and timed running jobs, so that GPUs are contended, jobs preempted and
    backfilled."""
    if busy is None:
        busy = draw(st.integers(0, 2)) == 0
    nodes, inv = draw(clusters(max_kinds=1 if busy else 3))
    ten = draw(tenancies(inv, generous=busy))
    wave = draw(job_lists(inv, ten, "r", 0, 16, timed=busy))
    running = []
    for alloc in first_wave(nodes, ten, wave):
        start = FIRST_WAVE_AT - draw(st.sampled_from((0, 0, 50, 500, 1000)))
        checkpoint = None
        if draw(st.integers(0, 3)) == 0:
            checkpoint = start + draw(st.sampled_from((0, 20, 40)))
        running.append(dataclasses.replace(alloc, start_time=start, last_checkpoint=checkpoint))
    if not busy:
        nodes = [dataclasses.replace(nd, state=draw(node_states)) for nd in nodes]
    waiting = draw(job_lists(inv, ten, "j", min_waiting, max_waiting, submit_min=FIRST_WAVE_AT))
    usage = []
    if draw(st.integers(0, 2)) == 0:
        for p in draw(st.lists(st.sampled_from(ten.project_names), max_size=3, unique=True)):
            m = draw(st.sampled_from(inv.models))
            usage.append(UsageSample(p, f"gpu.{m}", float(draw(st.integers(1, 10**8))), FIRST_WAVE_AT - 100))
    now = FIRST_WAVE_AT + draw(st.sampled_from((0.0, 10.0, 100.0, 2000.0)))
    return World(inv, ten, nodes, waiting, running, usage, now)
