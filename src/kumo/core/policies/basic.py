"""FIFO and strict priority."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kumo.core.model import Job

if TYPE_CHECKING:
    from kumo.core.profile import Profile


class Fifo:
    """First come, first served (priority only matters for preemption)."""

    name = "fifo"
    fair_share = False
    time_dependent_rank = False

    def __init__(self, profile: Profile) -> None:
        self.profile = profile

    def key(self, job: Job) -> tuple[Any, ...]:
        return (job.submit_time, job.id)

    def band(self, job: Job) -> Any:
        return job.priority

    def rank(self, job: Job, attained_gpu_s: float, work_done_s: float) -> tuple[Any, ...]:
        return (job.priority,)


class StrictPriority(Fifo):
    """Highest priority first, then first come, first served."""

    name = "priority"

    def key(self, job: Job) -> tuple[Any, ...]:
        return (-job.priority, job.submit_time, job.id)
