"""Small traces written inline for simulator tests."""

from __future__ import annotations

from typing import Any

from kumo.core import Job
from kumo.traces.base import Trace, TraceJob


def tjob(id: str, submit: float, work: float, queue: str = "q", **kw: Any) -> TraceJob:
    kw.setdefault("gpus", 1)
    return TraceJob(Job(id, queue, kw.pop("project", queue), submit_time=submit, **kw), work)


def trace(*jobs: TraceJob) -> Trace:
    return Trace(list(jobs), "inline", "kumo")
