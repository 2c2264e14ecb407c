"""Least attained service (Tiresias' discretised 2D-LAS).

A job's queue is the number of thresholds its attained GPU-seconds have passed; lower queues go
first, first come first served within a queue. Because a running job's attained service grows,
its rank falls as it runs, so a new job in a lower queue may preempt it (time slicing).
"""

from __future__ import annotations

from bisect import bisect_right
from typing import TYPE_CHECKING, Any

from kumo.core.model import Job

if TYPE_CHECKING:
    from kumo.core.profile import Profile


class LeastAttainedService:
    name = "las"
    fair_share = False
    time_dependent_rank = True

    def __init__(self, profile: Profile) -> None:
        self.thresholds = profile.las.thresholds_gpu_s

    def queue_of(self, attained_gpu_s: float) -> int:
        return bisect_right(self.thresholds, attained_gpu_s)

    def key(self, job: Job) -> tuple[Any, ...]:
        return (-job.priority, self.queue_of(job.attained_gpu_s), job.submit_time, job.id)

    def band(self, job: Job) -> Any:
        return (job.priority, self.queue_of(job.attained_gpu_s))

    def rank(self, job: Job, attained_gpu_s: float, work_done_s: float) -> tuple[Any, ...]:
        return (job.priority, -self.queue_of(attained_gpu_s))
