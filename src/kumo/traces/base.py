"""What every trace reader returns: jobs the core understands, plus the truth it must not see.

A reader turns one public (or kumo's own) trace format into a :class:`Trace`: a list of
:class:`TraceJob`, each a core :class:`~kumo.core.Job` (queue, project, gang shape, constraints,
``submit_time`` in seconds from the trace's start, optional ``speeds``) and ``work_s``, the job's
real run time on a speed-1.0 GPU — what the simulator uses to decide when it finishes, and what
the scheduler only sees through ``walltime_estimate_s`` if the reader or the user supplies one.

Every problem with an input file raises :class:`TraceFormatError`, whose message names the file,
the line, the column and what was expected, e.g.
``philly.csv: line 7, column 'num_gpus': expected a positive integer, got 'x'``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kumo.core import Job
from kumo.core.errors import ValidationError


class TraceFormatError(ValidationError):
    """A trace file that cannot be read: ``'<file>: line <n>, column '<c>': <problem>'``."""

    def __init__(self, file: str, problem: str, line: int | None = None, column: str | None = None) -> None:
        self.file = file
        self.line = line
        self.column = column
        where = file
        if line is not None:
            where += f": line {line}"
        if column is not None:
            where += f", column {column!r}" if line is not None else f": column {column!r}"
        super().__init__(where, problem)


@dataclass(frozen=True, slots=True)
class TraceJob:
    """A job of a trace: what the scheduler sees (``job``) and how long it really runs."""

    job: Job
    work_s: float  # seconds of work on a speed-1.0 GPU (the job's own speeds scale it per model)

    def __post_init__(self) -> None:
        if not self.work_s >= 0 or self.work_s == float("inf"):
            raise ValidationError(f"trace job {self.job.id!r}",
                                  f"work_s must be a finite number >= 0, got {self.work_s}")

    def duration_on(self, model: str) -> float:
        """Seconds the job runs alone on ``model`` GPUs."""
        return self.work_s / self.job.speed(model)


@dataclass(slots=True)
class Trace:
    """Jobs sorted by submission time, where they came from, and what the reader left out."""

    jobs: list[TraceJob]
    source: str
    format: str
    dropped: int = 0  # jobs in the file that the reader could not map (e.g. no throughput entry)
    notes: list[str] = field(default_factory=list)  # one sentence per mapping choice or drop
    programme_of: dict[str, str] = field(default_factory=dict)  # project -> programme, where the trace says

    def __post_init__(self) -> None:
        self.jobs.sort(key=lambda t: (t.job.submit_time, t.job.id))

    def queues(self) -> list[str]:
        """Queue names in order of first appearance."""
        return list(dict.fromkeys(t.job.queue for t in self.jobs))

    def projects(self) -> list[str]:
        return list(dict.fromkeys(t.job.project for t in self.jobs))
