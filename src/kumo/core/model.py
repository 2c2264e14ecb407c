"""The core's vocabulary: nodes, tenancy, jobs and running allocations.

Every class here is a frozen value that validates itself on construction and raises a
:class:`~kumo.core.errors.ValidationError` naming the object and field that is wrong.
Cross-references (a job's queue, a quota's flavor, a cohort's parent) are checked when a
:class:`~kumo.core.snapshot.Snapshot` is built from them.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kumo.core.errors import InvalidValueError
from kumo.core.resources import (
    CPU,
    GPU_MILLI,
    MEM,
    check_model,
    check_name,
    is_gpu_flavor,
    to_units,
)


class NodeState(enum.Enum):
    """``UP`` takes new work; ``DRAINED`` keeps running work but takes no new; ``DOWN`` runs nothing."""

    UP = "up"
    DRAINED = "drained"
    DOWN = "down"


class Topology(enum.Enum):
    """Topology levels a gang can be required to stay within, tightest first."""

    NODE = "node"
    NVLINK = "nvlink"
    BLOCK = "block"
    ZONE = "zone"


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


def _nonneg_int(where: str, field_name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidValueError(where, f"{field_name} must be a non-negative integer, got {value!r}")
    return value


def _opt_seconds(where: str, field_name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidValueError(where, f"{field_name} must be a number of seconds, got {value!r}")
    if value <= 0:
        raise InvalidValueError(where, f"{field_name} must be positive, got {value!r}")
    return float(value)


def _weight(where: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InvalidValueError(where, f"weight must be a positive number, got {value!r}")
    if not math.isfinite(value):
        raise InvalidValueError(where, f"weight must be finite, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------- nodes


@dataclass(frozen=True, slots=True)
class Node:
    """A machine with ``gpus`` GPUs of one ``gpu_model`` and its place in the topology.

    ``nvlink_domain`` defaults to the node itself (an HGX board); nodes that share a larger
    NVLink fabric (an NVL72 rack) name the same domain.
    """

    name: str
    region: str
    gpu_model: str
    gpus: int
    zone: str = ""
    block: str = ""
    nvlink_domain: str = ""
    cpu_milli: int = 0
    mem_mib: int = 0
    state: NodeState = NodeState.UP

    def __post_init__(self) -> None:
        where = f"node {self.name!r}"
        check_name("node", self.name)
        check_name(f"{where} region", self.region)
        check_model(f"{where} gpu_model", self.gpu_model)
        _nonneg_int(where, "gpus", self.gpus)
        if self.gpus == 0:
            raise InvalidValueError(where, "gpus must be at least 1 (kumo schedules GPU nodes)")
        if self.gpus > 64:
            raise InvalidValueError(where, f"gpus must be at most 64, got {self.gpus}")
        _nonneg_int(where, "cpu_milli", self.cpu_milli)
        _nonneg_int(where, "mem_mib", self.mem_mib)
        if not isinstance(self.state, NodeState):
            raise InvalidValueError(where, f"state must be a NodeState, got {self.state!r}")
        if not self.zone:
            _set(self, "zone", self.region)
        if not self.block:
            _set(self, "block", self.zone)
        if not self.nvlink_domain:
            _set(self, "nvlink_domain", self.name)


# --------------------------------------------------------------------------- tenancy


@dataclass(frozen=True, slots=True)
class Programme:
    """Who capacity is for at the top level (a challenge, a grant scheme, a lab, a school)."""

    name: str
    weight: float = 1.0

    def __post_init__(self) -> None:
        check_name("programme", self.name)
        _set(self, "weight", _weight(f"programme {self.name!r}", self.weight))


@dataclass(frozen=True, slots=True)
class Project:
    """A team inside a programme; the leaf of the fair-share tree."""

    name: str
    programme: str
    weight: float = 1.0

    def __post_init__(self) -> None:
        check_name("project", self.name)
        check_name(f"project {self.name!r} programme", self.programme)
        _set(self, "weight", _weight(f"project {self.name!r}", self.weight))


@dataclass(frozen=True, slots=True)
class Quota:
    """Quota of one flavor, in user units (GPUs, CPU cores, MiB).

    ``nominal`` is the queue's own; ``borrowing_limit`` caps how much more than nominal may be
    borrowed from the cohort (``None``: no cap); ``lending_limit`` caps how much of the unused
    nominal quota others may borrow (``None``: all of it). Only ``nominal - lending_limit`` is
    never lent; the rest, when idle, may be borrowed by other queues of the cohort and is taken
    back by reclaim (a preemption) when its owner needs it.
    """

    nominal: float = 0
    borrowing_limit: float | None = None
    lending_limit: float | None = None

    def __post_init__(self) -> None:
        for name in ("nominal", "borrowing_limit", "lending_limit"):
            value = getattr(self, name)
            if value is None and name != "nominal":
                continue
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok or not math.isfinite(value) or value < 0:
                raise InvalidValueError("quota", f"{name} must be a non-negative number, got {value!r}")
        if self.lending_limit is not None and self.lending_limit > self.nominal:
            raise InvalidValueError(
                "quota",
                f"lending_limit {self.lending_limit} exceeds nominal {self.nominal}",
            )


QuotaSpec = Mapping[str, Quota | float | int]


def _quotas(where: str, quotas: QuotaSpec) -> tuple[tuple[str, Quota], ...]:
    if not isinstance(quotas, Mapping):
        raise InvalidValueError(where, f"quota must be a mapping of flavor to quota, got {quotas!r}")
    out = []
    for flavor, q in quotas.items():
        if not isinstance(flavor, str) or not (is_gpu_flavor(flavor) or flavor in (CPU, MEM)):
            raise InvalidValueError(
                where, f"quota flavor {flavor!r} must be 'gpu.<model>', 'cpu' or 'mem'"
            )
        if is_gpu_flavor(flavor):
            check_model(f"{where} flavor", flavor[4:])
        quota = q if isinstance(q, Quota) else Quota(nominal=q)
        out.append((flavor, quota))
    return tuple(sorted(out))


@dataclass(frozen=True, slots=True)
class Cohort:
    """A group of queues (and cohorts) that lend idle quota to each other; may have a parent."""

    name: str
    parent: str | None = None
    quota: tuple[tuple[str, Quota], ...] | QuotaSpec = ()

    def __post_init__(self) -> None:
        check_name("cohort", self.name)
        if self.parent is not None:
            check_name(f"cohort {self.name!r} parent", self.parent)
        _set(self, "quota", _quotas(f"cohort {self.name!r}", dict(self.quota)))

    def quotas(self) -> dict[str, Quota]:
        return dict(self.quota)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Queue:
    """Where jobs wait; holds a nominal quota per flavor and may belong to a cohort."""

    name: str
    quota: tuple[tuple[str, Quota], ...] | QuotaSpec = ()
    cohort: str | None = None

    def __post_init__(self) -> None:
        check_name("queue", self.name)
        if self.cohort is not None:
            check_name(f"queue {self.name!r} cohort", self.cohort)
        _set(self, "quota", _quotas(f"queue {self.name!r}", dict(self.quota)))

    def quotas(self) -> dict[str, Quota]:
        return dict(self.quota)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- jobs


@dataclass(frozen=True, slots=True)
class Job:
    """A gang of ``workers`` identical workers, all started together or not at all.

    Each worker needs either ``gpus`` whole GPUs on one node or a ``gpu_milli`` slice of one GPU
    (1-999; ``slice_milli(1, 7)`` for a MIG-like 1/7), plus ``cpu_milli`` and ``mem_mib``.

    ``regions`` and ``gpu_models`` restrict where it may run (empty: anywhere), in order of
    preference. ``speeds`` maps GPU models to relative speed (``{"h200": 1.6, "h100": 1.0}``);
    walltimes are in seconds on a speed-1.0 GPU. ``topology`` requires the gang to stay within
    one node, NVLink domain, block or zone. ``attained_gpu_s`` and ``work_done_s`` carry what
    earlier attempts achieved (for LAS and SRTF).
    """

    id: str
    queue: str
    project: str
    workers: int = 1
    gpus: int = 0
    gpu_milli: int = 0
    cpu_milli: int = 0
    mem_mib: int = 0
    priority: int = 0
    preemptible: bool = True
    checkpoint_interval_s: float | None = None
    walltime_estimate_s: float | None = None
    walltime_limit_s: float | None = None
    regions: tuple[str, ...] = ()
    gpu_models: tuple[str, ...] = ()
    speeds: tuple[tuple[str, float], ...] | Mapping[str, float] = ()
    topology: Topology | None = None
    submit_time: float = 0.0
    attained_gpu_s: float = 0.0
    work_done_s: float = 0.0
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        check_name("job", self.id)
        where = f"job {self.id!r}"
        check_name(f"{where} queue", self.queue)
        check_name(f"{where} project", self.project)
        _nonneg_int(where, "workers", self.workers)
        if self.workers == 0:
            raise InvalidValueError(where, "workers must be at least 1")
        _nonneg_int(where, "gpus", self.gpus)
        _nonneg_int(where, "gpu_milli", self.gpu_milli)
        if self.gpus and self.gpu_milli:
            raise InvalidValueError(where, "give either gpus (whole) or gpu_milli (a slice), not both")
        if not self.gpus and not self.gpu_milli:
            raise InvalidValueError(where, "needs at least one GPU or a GPU slice per worker")
        if self.gpu_milli >= GPU_MILLI:
            raise InvalidValueError(
                where, f"gpu_milli must be below {GPU_MILLI} (use gpus for whole GPUs), got {self.gpu_milli}"
            )
        _nonneg_int(where, "cpu_milli", self.cpu_milli)
        _nonneg_int(where, "mem_mib", self.mem_mib)
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise InvalidValueError(where, f"priority must be an integer, got {self.priority!r}")
        for name in ("checkpoint_interval_s", "walltime_estimate_s", "walltime_limit_s"):
            _set(self, name, _opt_seconds(where, name, getattr(self, name)))
        for name in ("submit_time", "attained_gpu_s", "work_done_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise InvalidValueError(where, f"{name} must be a finite number, got {value!r}")
            if name != "submit_time" and value < 0:
                raise InvalidValueError(where, f"{name} must not be negative, got {value!r}")
            _set(self, name, float(value))
        _set(self, "regions", self._names(where, "regions", self.regions, check_name))
        _set(self, "gpu_models", self._names(where, "gpu_models", self.gpu_models, check_model))
        _set(self, "speeds", self._speeds(where))
        if self.topology is not None and not isinstance(self.topology, Topology):
            try:
                _set(self, "topology", Topology(self.topology))
            except ValueError:
                levels = ", ".join(t.value for t in Topology)
                raise InvalidValueError(
                    where, f"topology {self.topology!r} is not one of {levels}"
                ) from None

    @staticmethod
    def _names(where: str, name: str, values: object, check: Any) -> tuple[str, ...]:
        if isinstance(values, str) or not isinstance(values, tuple | list):
            raise InvalidValueError(where, f"{name} must be a list of names, got {values!r}")
        out = tuple(check(f"{where} {name}", v) for v in values)
        if len(set(out)) != len(out):
            raise InvalidValueError(where, f"{name} lists a name twice: {list(out)}")
        return out

    def _speeds(self, where: str) -> tuple[tuple[str, float], ...]:
        items = self.speeds.items() if isinstance(self.speeds, Mapping) else self.speeds
        out = []
        for model, speed in items:
            check_model(f"{where} speeds", model)
            ok = isinstance(speed, int | float) and not isinstance(speed, bool)
            if not ok or not math.isfinite(speed) or speed <= 0:
                raise InvalidValueError(where, f"speed of {model!r} must be a positive number, got {speed!r}")
            out.append((model, float(speed)))
        return tuple(sorted(out))

    # ---- derived values -------------------------------------------------------------
    @property
    def milli_per_worker(self) -> int:
        return self.gpus * GPU_MILLI if self.gpus else self.gpu_milli

    @property
    def total_gpu_milli(self) -> int:
        return self.workers * self.milli_per_worker

    @property
    def fractional(self) -> bool:
        return self.gpu_milli > 0

    def speed(self, model: str) -> float:
        for m, s in self._speed_items():
            if m == model:
                return s
        return 1.0

    def _speed_items(self) -> tuple[tuple[str, float], ...]:
        return self.speeds  # type: ignore[return-value]  # normalised to a tuple in __post_init__

    @property
    def walltime_s(self) -> float | None:
        """The walltime kumo plans with: the estimate, else the limit."""
        return self.walltime_estimate_s if self.walltime_estimate_s is not None else self.walltime_limit_s

    def request(self, model: str) -> dict[str, int]:
        """Resources of the whole gang on ``model``, in kumo units per flavor."""
        req = {f"gpu.{model}": self.total_gpu_milli}
        if self.cpu_milli:
            req[CPU] = self.workers * self.cpu_milli
        if self.mem_mib:
            req[MEM] = self.workers * self.mem_mib
        return req


# --------------------------------------------------------------------------- placements


@dataclass(frozen=True, slots=True)
class WorkerPlacement:
    """Where one worker runs: a node and GPU indices; ``gpu_milli`` is its share of each GPU."""

    rank: int
    node: str
    gpus: tuple[int, ...]
    gpu_milli: int = GPU_MILLI


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a whole gang runs."""

    model: str
    region: str
    workers: tuple[WorkerPlacement, ...]

    @property
    def nodes(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for w in self.workers:
            seen.setdefault(w.node, None)
        return tuple(seen)

    def describe(self) -> str:
        """``'2 nodes: a1[0-7], a2[0-7]'``."""
        per_node: dict[str, list[int]] = {}
        milli: dict[str, int] = {}
        for w in self.workers:
            per_node.setdefault(w.node, []).extend(w.gpus)
            milli[w.node] = w.gpu_milli
        parts = []
        for node, gpus in per_node.items():
            gs = sorted(gpus)
            if milli[node] < GPU_MILLI:
                parts.append(f"{node}[{','.join(map(str, gs))}]x{milli[node] / GPU_MILLI:.3g}")
            elif gs == list(range(gs[0], gs[-1] + 1)) and len(gs) > 1:
                parts.append(f"{node}[{gs[0]}-{gs[-1]}]")
            else:
                parts.append(f"{node}[{','.join(map(str, gs))}]")
        n = len(per_node)
        return f"{n} node{'s' if n != 1 else ''}: " + ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Allocation:
    """A running job: its spec, where it runs, since when, and its last checkpoint."""

    job: Job
    placement: Placement
    start_time: float
    last_checkpoint: float | None = None

    def expected_end(self) -> float | None:
        wt = self.job.walltime_s
        if wt is None:
            return None
        remaining = max(0.0, wt - self.job.work_done_s)
        return self.start_time + remaining / self.job.speed(self.placement.model)


@dataclass(frozen=True, slots=True)
class UsageSample:
    """Decayed past usage of a project for fair share: ``amount`` is in kumo units x seconds
    (milli-GPU-seconds for GPU flavors, millicore-seconds for ``cpu``, MiB-seconds for ``mem``),
    decayed up to time ``as_of``; the core decays it further to the cycle's ``now``."""

    project: str
    flavor: str
    amount: float
    as_of: float

    def __post_init__(self) -> None:
        check_name("usage project", self.project)
        where = f"usage of project {self.project!r}"
        for name in ("amount", "as_of"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidValueError(where, f"{name} must be a number, got {value!r}")
        if not isinstance(self.flavor, str) or not (is_gpu_flavor(self.flavor) or self.flavor in (CPU, MEM)):
            raise InvalidValueError(where, f"flavor {self.flavor!r} must be 'gpu.<model>', 'cpu' or 'mem'")
        if not math.isfinite(self.amount) or self.amount < 0:
            raise InvalidValueError(where, f"amount must be a non-negative number, got {self.amount!r}")


@dataclass(frozen=True, slots=True)
class GrantStanding:
    """How a project's grants stand, as the scheduler needs it (the shell computes it from the
    grants and the metered usage; see ``docs/concepts/grants.md``).

    - ``hold``: a sentence saying why new jobs of the project must wait (an exhausted or expired
      grant); its waiting jobs are not considered and ``why`` gives this sentence. Running jobs
      are not touched.
    - ``preemptible_only``: the project's grant is spent but its programme lets it go on as
      preemptible work (charged at the discounted tier): its waiting jobs are scheduled as
      preemptible, whatever they asked for.
    - ``pace``: how the project's grant stands against its plan — 1.0 on plan, below 1 behind (it
      must spend faster than planned to use its grant by its end), above 1 ahead. The shell computes
      it as the planned rate over the rate still needed (``kumo.grants.pacing``); the
      ``grant-pacing`` order policy scales the project's fair-share weight by ``1 / pace``.
    - ``stop_running``: with ``hold``, the project's running jobs are stopped too (a ``Preempt``
      with ``by=""`` and reason code ``grant``) and wait, held; only where the programme's policy
      says so — by default accounting never stops running work.
    """

    project: str
    hold: str | None = None
    preemptible_only: bool = False
    pace: float = 1.0
    stop_running: bool = False

    def __post_init__(self) -> None:
        check_name("grant standing project", self.project)
        where = f"grant standing of project {self.project!r}"
        if self.hold is not None and (not isinstance(self.hold, str) or not self.hold.strip()):
            raise InvalidValueError(where, f"hold must be a non-empty sentence or None, got {self.hold!r}")
        if self.stop_running and self.hold is None:
            raise InvalidValueError(where, "stop_running needs a hold (why the jobs stop)")
        if self.hold is not None and self.preemptible_only:
            raise InvalidValueError(where, "a project is either held or preemptible-only, not both")
        if isinstance(self.pace, bool) or not isinstance(self.pace, int | float) or not math.isfinite(self.pace) \
                or self.pace < 0:
            raise InvalidValueError(where, f"pace must be a finite number >= 0, got {self.pace!r}")


def quota_units(flavor: str, quota: Quota) -> tuple[int, int | None, int | None]:
    """A quota in kumo units: (nominal, borrowing_limit, lending_limit)."""
    bl = None if quota.borrowing_limit is None else to_units(flavor, quota.borrowing_limit)
    ll = None if quota.lending_limit is None else to_units(flavor, quota.lending_limit)
    return to_units(flavor, quota.nominal), bl, ll
