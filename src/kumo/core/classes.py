"""Job classes: waiting jobs grouped by everything that decides whether they can start.

Two waiting jobs of one class (same queue, fair-share leaf, band, gang shape and constraints)
either both fit the cluster at a given moment or neither does, so a cycle only tries each class's
best job; if it cannot start, the rest of the class cannot either. This is what lets a cycle over
100,000 waiting jobs cost a few thousand placement attempts.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from dataclasses import dataclass
from typing import Any

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


class JobClass:
    __slots__ = ("band", "jobs", "key", "leaf", "log_ratio", "never", "options", "queue", "rep", "seq",
                 "shape", "walltimes")

    def __init__(self, key: tuple[Any, ...], seq: int, rep: Job, queue: int, leaf: int, band: Any,
                 shape: Shape, options: tuple[Option, ...], never: str | None):
        self.key = key
        self.seq = seq
        self.rep = rep
        self.queue = queue
        self.leaf = leaf
        self.band = band
        self.shape = shape
        self.options = options
        self.never = never  # why no option could ever be admitted by quota, or None
        self.jobs: list[tuple[tuple[Any, ...], str]] = []  # sorted (order key, job id)
        self.walltimes: dict[str, float] = {}
        self.log_ratio = 0
        if len(options) >= 2 and options[0].speed != options[1].speed:
            self.log_ratio = round(math.log(options[0].speed / options[1].speed) * 1_000_000)


def shape_of(job: Job) -> Shape:
    return Shape(job.workers, job.gpus, job.gpu_milli, job.cpu_milli, job.mem_mib,
                 job.topology if isinstance(job.topology, Topology) else None)


def class_key(job: Job, queue: int, leaf: int, band: Any) -> tuple[Any, ...]:
    return (queue, leaf, band, job.workers, job.gpus, job.gpu_milli, job.cpu_milli, job.mem_mib,
            job.topology, job.gpu_models, job.regions, job.speeds)


class ClassIndex:
    """Waiting jobs of a snapshot grouped into classes, for one order policy."""

    def __init__(self, policy: OrderPolicy):
        self.policy = policy
        self.classes: dict[tuple[Any, ...], JobClass] = {}
        self.of_job: dict[str, JobClass] = {}
        self._seq = 0
        # for heterogeneity-aware model choice: milli-GPUs wanted per model by waiting jobs, and
        # per (fastest, next) model pair the sum and count of jobs' log speed-up (integers: exact)
        self.demand: dict[str, int] = {}
        self.pairs: dict[tuple[str, str], tuple[int, int]] = {}

    def add(self, job: Job, make: Any) -> JobClass:
        """Add ``job``; ``make(job, key, seq, band)`` builds its class if it is new."""
        band = self.policy.band(job)
        cls = self.classes.get(key := make.key(job, band))
        if cls is None:
            cls = make(job, key, self._seq, band)
            self._seq += 1
            self.classes[key] = cls
        insort(cls.jobs, (self.policy.key(job), job.id))
        wt = job.walltime_s
        cls.walltimes[job.id] = math.inf if wt is None else max(0.0, wt - job.work_done_s)
        self.of_job[job.id] = cls
        self._count(cls, 1)
        return cls

    def _count(self, cls: JobClass, sign: int) -> None:
        need = sign * cls.shape.workers * (cls.shape.gpus * 1000 or cls.shape.milli)
        for o in cls.options:
            self.demand[o.model] = self.demand.get(o.model, 0) + need
        if cls.log_ratio:
            key = (cls.options[0].model, cls.options[1].model)
            s, c = self.pairs.get(key, (0, 0))
            self.pairs[key] = (s + sign * cls.log_ratio, c + sign)

    def remove(self, job: Job) -> None:
        cls = self.of_job.pop(job.id)
        entry = (self.policy.key(job), job.id)
        i = bisect_left(cls.jobs, entry)
        del cls.jobs[i]
        del cls.walltimes[job.id]
        self._count(cls, -1)
        if not cls.jobs:
            del self.classes[cls.key]
