"""Job classes: waiting jobs grouped by everything that decides whether they can start.

Two waiting jobs of one class (same queue, fair-share leaf, band, gang shape and constraints)
either both fit the cluster at a given moment or neither does, so a cycle only tries each class's
best job; if it cannot start, the rest of the class cannot either. This is what lets a cycle over
100,000 waiting jobs cost a few thousand placement attempts.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kumo.core.explain import Reason
from kumo.core.model import Job, Topology
from kumo.core.placement import Shape
from kumo.core.policies import OrderPolicy


@dataclass(frozen=True, slots=True)
class Option:
    """One GPU model a job may use: its flavor, pools (regions in preference order), request."""

    model: str
    flavor: str
    pools: tuple[int, ...]
    request: dict[str, int]
    speed: float


def remaining_s(job: Job) -> float:
    """Walltime still to run, on a speed-1.0 GPU (``inf`` without an estimate or limit)."""
    wt = job.walltime_estimate_s if job.walltime_estimate_s is not None else job.walltime_limit_s
    return math.inf if wt is None else max(0.0, wt - job.work_done_s)


class JobClass:
    __slots__ = ("awake", "band", "jobs", "key", "leaf", "log_ratio", "never", "options", "park", "pid", "queue",
                 "rank", "rep", "seq", "shape")

    def __init__(self, key: tuple[Any, ...], seq: int, rep: Job, queue: int, leaf: int, band: Any,
                 shape: Shape, options: tuple[Option, ...], never: str | None, pid: int = -1):
        self.key = key
        self.seq = seq
        self.rep = rep
        self.queue = queue
        self.leaf = leaf
        self.band = band
        self.shape = shape
        self.options = options
        self.never = never  # why no option could ever be admitted by quota, or None
        self.jobs: list[tuple[Any, ...]] = []  # sorted order keys; each ends in its job id
        self.park: Park | None = None  # set while the class is parked (see ClassIndex.park)
        self.awake = False  # parked, but woken by freed quota alone: re-checked cheaply (see Cycle)
        self.rank: tuple[Any, ...] = ()  # preemption rank, the same for every job of the class
        self.pid = pid  # equal for classes of equal shape and options (models, pools): one preemption search
        self.log_ratio = 0
        if len(options) >= 2 and options[0].speed != options[1].speed:
            self.log_ratio = round(math.log(options[0].speed / options[1].speed) * 1_000_000)


@dataclass(slots=True, eq=False)
class Park:
    """Why a class is parked and what would wake it.

    A parked class is one whose every option was refused by quota (or can never be admitted), so
    it cannot start — nor reserve — until something changes that could let it:

    - ``thresholds``: quota of ``flavor`` freed in its tree such that ``available(queue, flavor)``
      reaches the threshold — the smaller of its need (then it could reserve) and its need minus
      what preemption could free (an upper bound, or the deficit a vain preemption search
      measured); ``-INF`` for CPU or memory quota (any release of it wakes the class);
    - ``eligible_at``: its queue's usage dropping to this, while some queue of its tree borrows
      (reclaim becomes possible);
    - ``pools``: room freed in one of these pools (where only placement stopped a preemption);
    - ``rank_scope`` / ``rank`` and ``reclaim_root``: a preemptible job of lower rank starting in
      that scope, or a job of a borrowing queue starting in that tree, sets a timer for when it
      becomes old enough to preempt (start + the profile's ``preemption_min_runtime_s``);
    - ``wake_at``: a timer for the next running job of its tree that is too young to preempt.
    """

    reason: Reason
    root: int = -1
    thresholds: Mapping[str, int] = field(default_factory=dict)  # per flavor (never changed once the park is made)
    rank: tuple[Any, ...] | None = None
    rank_scope: tuple[Any, ...] | None = None
    reclaim_root: int | None = None
    eligible_at: Mapping[str, int] = field(default_factory=dict)  # per flavor: wake when the queue's usage drops to it
    pools: tuple[int, ...] = ()
    wake_at: float | None = None  # a running job too young to preempt grows old enough then

    def flavors(self) -> set[str]:
        return {*self.thresholds, *self.eligible_at}


def shape_of(job: Job) -> Shape:
    return Shape(job.workers, job.gpus, job.gpu_milli, job.cpu_milli, job.mem_mib,
                 job.topology if isinstance(job.topology, Topology) else None)



class ClassIndex:
    """Waiting jobs of a snapshot grouped into classes, for one order policy."""

    def __init__(self, policy: OrderPolicy, make: Any, grace: float = 0.0):
        self.policy = policy
        self.make = make  # make.key(job, band) -> class key; make(job, key, seq, band) -> a new class
        self.grace = grace  # a started job can be preempted this long after it starts
        self.classes: dict[tuple[Any, ...], JobClass] = {}
        self.size = 0  # waiting jobs indexed
        self._seq = 0
        # for heterogeneity-aware model choice: milli-GPUs wanted per model by waiting jobs, and
        # per (fastest, next) model pair the sum and count of jobs' log speed-up (integers: exact)
        self.demand: dict[str, int] = {}
        self.pairs: dict[tuple[str, str], tuple[int, int]] = {}
        # parking: classes not parked are active; parked ones are registered under what wakes them
        self.active: dict[JobClass, None] = {}
        self._by_flavor: dict[tuple[int, str], set[JobClass]] = {}  # (tree root, flavor)
        self._by_scope: dict[tuple[Any, ...], set[JobClass]] = {}
        self._by_reclaim: dict[int, set[JobClass]] = {}
        self._by_pool: dict[int, set[JobClass]] = {}
        self._timed: list[tuple[float, int, JobClass]] = []  # sorted (wake_at, seq, class)
        self._timer: dict[JobClass, float] = {}

    def class_of(self, job: Job) -> JobClass | None:
        """The class of waiting job ``job`` (found from its key: no per-job table is kept)."""
        return self.classes.get(self.make.key(job, self.policy.band(job)))

    def add(self, job: Job) -> JobClass:
        """Add a waiting job to its class, creating the class if it is new."""
        band = self.policy.band(job)
        cls = self.classes.get(key := self.make.key(job, band))
        if cls is None:
            cls = self._new_class(job, key, band)
        insort(cls.jobs, self.policy.key(job))
        self.size += 1
        self._count(cls, 1)
        return cls

    def _new_class(self, job: Job, key: tuple[Any, ...], band: Any) -> JobClass:
        cls: JobClass = self.make(job, key, self._seq, band)
        self._seq += 1
        self.classes[key] = cls
        self.active[cls] = None
        return cls

    def build(self, jobs: Any) -> None:
        """Add many jobs at once: one pass groups them by key with their order entries; each new
        class is then sorted once."""
        policy = self.policy
        band_of, key_of, order_key = policy.band, self.make.key, policy.key
        groups: dict[tuple[Any, ...], tuple[Job, Any, list[tuple[Any, ...]]]] = {}
        for job in jobs:
            band = band_of(job)
            key = key_of(job, band)
            group = groups.get(key)
            if group is None:
                groups[key] = (job, band, [order_key(job)])
            else:
                group[2].append(order_key(job))
        classes = self.classes
        for key, (first, band, entries) in groups.items():
            cls = classes.get(key)
            if cls is None:
                cls = self._new_class(first, key, band)
                entries.sort()
                cls.jobs = entries
            else:
                for entry in entries:
                    insort(cls.jobs, entry)
            self.size += len(entries)
            self._count(cls, len(entries))

    def _count(self, cls: JobClass, sign: int) -> None:
        need = sign * cls.shape.workers * (cls.shape.gpus * 1000 or cls.shape.milli)
        for o in cls.options:
            self.demand[o.model] = self.demand.get(o.model, 0) + need
        if cls.log_ratio:
            key = (cls.options[0].model, cls.options[1].model)
            s, c = self.pairs.get(key, (0, 0))
            self.pairs[key] = (s + sign * cls.log_ratio, c + sign)

    def remove(self, job: Job) -> None:
        cls = self.class_of(job)
        assert cls is not None, f"job {job.id} is not indexed"
        i = bisect_left(cls.jobs, self.policy.key(job))
        del cls.jobs[i]
        self.size -= 1
        self._count(cls, -1)
        if not cls.jobs:
            del self.classes[cls.key]
            self.wake(cls)
            del self.active[cls]

    def still_short(self, cls: JobClass, quota: Any) -> bool:
        """For a class woken by freed quota alone: is every option still short of the quota its
        parking recorded as needed? Then nothing else changed for it and it stays blocked."""
        park = cls.park
        assert park is not None
        thresholds = park.thresholds
        for opt in cls.options:
            flavor = quota.fits(cls.queue, opt.request)
            if flavor is None:
                return False
            t = thresholds.get(flavor)
            if t is None or quota.available(cls.queue, flavor) >= t:
                return False
        return True

    # ---- parking -------------------------------------------------------------------------
    def park(self, cls: JobClass, park: Park) -> None:
        if self.classes.get(cls.key) is not cls:
            return
        if cls.park is not None:
            if not cls.awake:
                return
            self._unregister(cls, cls.park)
        cls.park = park
        cls.awake = False
        self.active.pop(cls, None)
        for flavor in park.flavors():
            self._by_flavor.setdefault((park.root, flavor), set()).add(cls)
        if park.rank_scope is not None:
            self._by_scope.setdefault(park.rank_scope, set()).add(cls)
        if park.reclaim_root is not None:
            self._by_reclaim.setdefault(park.reclaim_root, set()).add(cls)
        for pool in park.pools:
            self._by_pool.setdefault(pool, set()).add(cls)
        if park.wake_at is not None:
            self._set_timer(cls, park.wake_at)

    def _set_timer(self, cls: JobClass, at: float) -> None:
        current = self._timer.get(cls)
        if current is not None:
            if current <= at:
                return
            del self._timed[bisect_left(self._timed, (current, cls.seq))]
        insort(self._timed, (at, cls.seq, cls))
        self._timer[cls] = at

    def due(self, now: float) -> list[JobClass]:
        """Parked classes whose ``wake_at`` has come (read-only)."""
        out = []
        for at, _, cls in self._timed:
            if at > now:
                break
            out.append(cls)
        return out

    def wake(self, cls: JobClass, by_quota: bool = False) -> None:
        """Make a parked class active. Woken ``by_quota`` alone, it stays registered (so that any
        other event still reaches it) and keeps its record for a cheap re-check."""
        park = cls.park
        if park is None:
            return
        self.active[cls] = None
        if by_quota:
            cls.awake = True
            return
        cls.park = None
        cls.awake = False
        self._unregister(cls, park)

    def _unregister(self, cls: JobClass, park: Park) -> None:
        for flavor in park.flavors():
            self._by_flavor[(park.root, flavor)].discard(cls)
        if park.rank_scope is not None:
            self._by_scope[park.rank_scope].discard(cls)
        if park.reclaim_root is not None:
            self._by_reclaim[park.reclaim_root].discard(cls)
        for pool in park.pools:
            self._by_pool[pool].discard(cls)
        at = self._timer.pop(cls, None)
        if at is not None:
            del self._timed[bisect_left(self._timed, (at, cls.seq))]

    def quota_freed(self, root: int, flavor: str, available: Any, usage: Any, borrowed: bool) -> None:
        """Quota of ``flavor`` was freed in tree ``root``; ``available(queue)`` tells how much a
        queue may take now, ``usage(queue)`` how much it holds; ``borrowed``: whether some
        queue of the tree still borrows it (else reclaim has no one to take it back from)."""
        members = self._by_flavor.get((root, flavor))
        if not members:
            return
        woken = []
        for cls in members:
            park = cls.park
            assert park is not None
            t = park.thresholds.get(flavor)
            e = park.eligible_at.get(flavor)
            if (t is not None and available(cls.queue) >= t) or (borrowed and e is not None and usage(cls.queue) <= e):
                woken.append(cls)
        for cls in sorted(woken, key=lambda c: c.seq):
            self.wake(cls, by_quota=True)

    def room_freed(self, pool: int) -> None:
        for cls in sorted(self._by_pool.get(pool, ()), key=lambda c: c.seq):
            self.wake(cls)

    def victim_started(self, scopes: list[tuple[Any, ...]], rank: tuple[Any, ...], start: float) -> None:
        """A preemptible job of ``rank`` started: classes of higher rank in its scope may preempt it
        once it is old enough, so they wake then."""
        at = start + self.grace
        for scope in scopes:
            for cls in self._by_scope.get(scope, ()):
                if cls.park is not None and cls.park.rank is not None and cls.park.rank > rank:
                    self._set_timer(cls, at)

    def borrower_started(self, root: int, flavor: str, usage: Any, start: float) -> None:
        """A job of a queue that borrows ``flavor`` started in tree ``root``: once it is old enough,
        classes whose queue is under nominal (``usage(queue)`` low enough) may reclaim from it."""
        at = start + self.grace
        for cls in self._by_reclaim.get(root, ()):
            assert cls.park is not None
            limit = cls.park.eligible_at.get(flavor)
            if limit is not None and usage(cls.queue) <= limit:
                self._set_timer(cls, at)
