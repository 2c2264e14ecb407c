"""What one scheduling cycle decided: starts, preemptions, requeues, rejections, waits."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from kumo.core.explain import Reason
from kumo.core.model import Placement


@dataclass(frozen=True, slots=True)
class Start:
    """Start ``job_id`` on ``placement``. If ``preempting`` is not empty the shell must wait for
    those jobs to stop before launching. ``backfilled``: started ahead of a reserved job."""

    job_id: str
    placement: Placement
    preempting: tuple[str, ...] = ()
    backfilled: bool = False


@dataclass(frozen=True, slots=True)
class Preempt:
    """Stop running job ``job_id`` (it goes back to pending) to make room for ``by`` (itself: a
    migration; ``""``: for no job — its project's grant standing stops its running work)."""

    job_id: str
    by: str
    reason: Reason
    work_lost_s: float


@dataclass(frozen=True, slots=True)
class Requeue:
    """A running job lost its node: put it back to pending."""

    job_id: str
    reason: Reason


@dataclass(frozen=True, slots=True)
class Reject:
    """A pending job can never run as submitted: remove it, telling the user why."""

    job_id: str
    reason: Reason


@dataclass(frozen=True, slots=True)
class Reservation:
    """EASY backfill: ``job_id`` is promised ``gpus`` on ``nodes`` of ``pool`` at ``start_at``."""

    job_id: str
    pool: str
    start_at: float
    nodes: tuple[tuple[str, int], ...]


class Waiting(Mapping[str, Reason]):
    """Every job that still waits, with its reason; computed on access, not up front."""

    def __init__(self, ids: Callable[[], Iterator[str]], why: Callable[[str], Reason | None], size: int):
        self._ids = ids
        self._why = why
        self._size = size

    def __getitem__(self, job_id: str) -> Reason:
        reason = self._why(job_id)
        if reason is None:
            raise KeyError(job_id)
        return reason

    def __iter__(self) -> Iterator[str]:
        return self._ids()

    def __len__(self) -> int:
        return self._size


@dataclass(slots=True)
class CycleStats:
    """Counters of one cycle, for metrics and benchmarks."""

    classes_evaluated: int = 0  # evaluations of a class's next job (one class may be tried several times)
    classes_parked: int = 0  # parked classes skipped outright (those re-checked after a wake count as evaluated)
    placements_tried: int = 0
    preemption_searches: int = 0
    reservations_computed: int = 0


@dataclass(slots=True)
class Decisions:
    """The outcome of ``schedule(snapshot, now)``; apply with ``snapshot.apply(decisions)``."""

    now: float
    version: int
    starts: list[Start] = field(default_factory=list)
    preemptions: list[Preempt] = field(default_factory=list)
    requeues: list[Requeue] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    reservations: list[Reservation] = field(default_factory=list)
    waiting: Mapping[str, Reason] = field(default_factory=dict)
    stats: CycleStats = field(default_factory=CycleStats)
    parks: list[tuple[Any, Any, Any]] = field(default_factory=list, repr=False)  # (index, class, Park), internal

    def why(self, job_id: str) -> Reason | None:
        """The reason ``job_id`` waits, or ``None`` if it does not wait."""
        return self.waiting.get(job_id)

    def started(self) -> dict[str, Placement]:
        return {s.job_id: s.placement for s in self.starts}
