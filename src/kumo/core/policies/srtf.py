"""Shortest remaining time first, on walltime estimates.

Remaining time is the estimate (else the limit) minus the work already done. Jobs without
either go last. For preemption, remaining time is bucketed in powers of two of minutes, so a job
preempts another only if it is at least one bucket shorter.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from kumo.core.model import Job

if TYPE_CHECKING:
    from kumo.core.profile import Profile

UNKNOWN = math.inf


def remaining(job: Job, work_done_s: float) -> float:
    wt = job.walltime_s
    return UNKNOWN if wt is None else max(0.0, wt - work_done_s)


def bucket(seconds: float) -> int:
    if seconds == UNKNOWN:
        return 1 << 30
    return max(0, math.floor(math.log2(max(seconds, 60.0) / 60.0)))


class ShortestRemainingTime:
    name = "srtf"
    fair_share = False
    time_dependent_rank = True

    def __init__(self, profile: Profile) -> None:
        self.profile = profile

    def key(self, job: Job) -> tuple[Any, ...]:
        return (-job.priority, remaining(job, job.work_done_s), job.submit_time, job.id)

    def band(self, job: Job) -> Any:
        return (job.priority, bucket(remaining(job, job.work_done_s)))

    def rank(self, job: Job, attained_gpu_s: float, work_done_s: float) -> tuple[Any, ...]:
        return (job.priority, -bucket(remaining(job, work_done_s)))
