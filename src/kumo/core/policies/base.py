"""The order extension point."""

from __future__ import annotations

from typing import Any, Protocol

from kumo.core.model import Job


class OrderPolicy(Protocol):
    """How waiting jobs are ordered and ranked.

    - ``key(job)``: ascending sort key among jobs of one fair-share leaf (or of the whole
      cluster when ``fair_share`` is false); must be static while the job waits and end in the
      job id so that the order is total;
    - ``band(job)``: a coarse group (priority, LAS queue) — jobs of one band share a rank;
    - ``rank(job, attained_gpu_s, work_done_s)``: preemption rank, higher is more important;
      computed for waiting and running jobs alike;
    - ``fair_share``: whether jobs are interleaved by hierarchical fair share of their projects;
    - ``time_dependent_rank``: whether a running job's rank changes as it runs (LAS, SRTF).
    """

    name: str
    fair_share: bool
    time_dependent_rank: bool

    def key(self, job: Job) -> tuple[Any, ...]: ...

    def band(self, job: Job) -> Any: ...

    def rank(self, job: Job, attained_gpu_s: float, work_done_s: float) -> tuple[Any, ...]: ...
