"""Alibaba PAI GPU trace 2020 (``cluster-trace-gpu-v2020``, Weng et al., NSDI'22) as a kumo :class:`Trace`.

Reads ``pai_job_table.csv`` (job_name, inst_id, user, status, start_time, end_time) and
``pai_task_table.csv`` (job_name, task_name, inst_num, status, start_time, end_time, plan_cpu,
plan_mem, plan_gpu, gpu_type), with or without a header line (the published files have none).
Times are Unix seconds; ``plan_gpu`` is percent of one GPU, ``plan_cpu`` percent of a core,
``plan_mem`` GB, all per instance.

- one kumo job per job; its gang is the task with the largest ``plan_gpu * inst_num`` (first in
  the file on a tie): ``workers = inst_num``; ``plan_gpu < 100`` → ``gpu_milli = plan_gpu * 10``
  (at least 1, at most 999); ``plan_gpu >= 100`` → ``gpus = plan_gpu / 100`` rounded half up;
  ``cpu_milli = plan_cpu * 10``, ``mem_mib = plan_mem * 1024`` (rounded); the other tasks are ignored;
- ``gpu_type`` of that task → ``gpu_models = (lower-cased,)``, none for ``MISC`` or empty;
- ``user`` → ``project``, and ``queue`` too (``queue_by="single"``: one queue ``pai``);
- job ``start_time`` (its submission) → ``submit_time``, seconds after the earliest kept job;
- ``work_s``: the gang task's ``end_time - start_time`` (its run time, without the queueing), or
  the job's when the task has no times;
- ``job_name`` → ``id`` (bad characters replaced by ``_``);
- dropped and counted: jobs whose status is not in ``statuses`` (default ``Terminated``), jobs
  with no GPU task, jobs that end before they start.

See ``docs/concepts/traces.md``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kumo.traces._csv import (
    Pending,
    Row,
    build,
    check_selection,
    clean_model,
    clean_name,
    csv_rows,
    unique,
)
from kumo.traces.base import Trace, TraceFormatError

JOB_FILE = "pai_job_table.csv"
TASK_FILE = "pai_task_table.csv"
JOB_COLUMNS = ("job_name", "inst_id", "user", "status", "start_time", "end_time")
TASK_COLUMNS = ("job_name", "task_name", "inst_num", "status", "start_time", "end_time",
                "plan_cpu", "plan_mem", "plan_gpu", "gpu_type")  # fmt: skip
ANY_MODEL = {"", "misc"}


@dataclass(slots=True)
class Task:
    """The gang-defining task of a job."""

    workers: int
    plan_gpu: float
    plan_cpu: float
    plan_mem: float
    gpu_type: str
    run_s: float | None  # end_time - start_time, if both are given and in order

    @property
    def score(self) -> float:
        return self.plan_gpu * self.workers


def read(
    path: str | Path,
    *,
    statuses: Iterable[str] = ("Terminated",),
    queue_by: str = "user",
    limit: int | None = None,
    start: float | None = None,
    end: float | None = None,
) -> Trace:
    """Read the PAI 2020 job and task tables: ``path`` is their directory or the job table.

    ``statuses``: job statuses to keep; ``queue_by``: ``"user"`` (one queue per user) or
    ``"single"``; ``start``/``end``/``limit``: as for :func:`kumo.traces.philly.read`."""
    if queue_by not in ("user", "single"):
        raise TraceFormatError("options", f"queue_by must be 'user' or 'single', got {queue_by!r}")
    if isinstance(statuses, str):
        raise TraceFormatError("options", f"statuses must be a list of statuses, got {statuses!r}")
    keep = {s.lower() for s in statuses}
    selection = check_selection(limit, start, end)
    job_path, task_path = _paths(Path(path))
    tasks = _read_tasks(task_path)
    pending: list[Pending] = []
    drops: Counter[str] = Counter()
    names: dict[str, int] = {}
    seen: set[str] = set()
    for row in csv_rows(job_path, JOB_COLUMNS, header=None):
        name = row.text("job_name")
        if name in names:
            raise row.error("job_name", f"job {name!r} appears twice (first on line {names[name]})")
        names[name] = row.line
        status = row.text("status")
        if status.lower() not in keep:
            drops[f"status {status or '(empty)'}"] += 1
            continue
        job = _map(row, tasks.get(name), queue_by, seen)
        if isinstance(job, str):
            drops[job] += 1
        else:
            pending.append(job)
    notes = [
        "gang: the task with the most GPUs (plan_gpu x inst_num); plan_gpu < 100 is a GPU slice",
        "queue: one per user" if queue_by == "user" else "queue: a single queue 'pai'",
        "project: the user; gpu_models: the task's gpu_type unless MISC or empty",
        "work_s: the gang task's run time (end - start), else the job's",
    ]
    notes += [f"dropped {n} jobs: {why}" for why, n in sorted(drops.items())]
    jobs = build(job_path.name, pending, selection)
    return Trace(jobs, source=str(job_path.parent), format="alibaba2020", dropped=sum(drops.values()),
                 notes=notes + selection.notes)  # fmt: skip


def _paths(path: Path) -> tuple[Path, Path]:
    job_path = path / JOB_FILE if path.is_dir() else path
    task_path = job_path.with_name(TASK_FILE)
    for p in (job_path, task_path):
        if not p.is_file():
            raise TraceFormatError(str(p), f"missing: the PAI trace needs {JOB_FILE} and {TASK_FILE} side by side")
    return job_path, task_path


def _read_tasks(path: Path) -> dict[str, Task]:
    """The gang-defining task of each job with a GPU task."""
    best: dict[str, Task] = {}
    for row in csv_rows(path, TASK_COLUMNS, header=None):
        workers = row.integer("inst_num")
        task = Task(
            workers=workers,
            plan_gpu=row.number("plan_gpu", default=0.0),
            plan_cpu=row.number("plan_cpu", default=0.0),
            plan_mem=row.number("plan_mem", default=0.0),
            gpu_type=row.text("gpu_type"),
            run_s=_run_s(row),
        )
        if task.score <= 0:
            continue
        name = row.text("job_name")
        if name not in best or task.score > best[name].score:
            best[name] = task
    return best


def _run_s(row: Row) -> float | None:
    if not row.text("start_time") or not row.text("end_time"):
        return None
    start, end = row.number("start_time"), row.number("end_time")
    return end - start if end >= start else None


def _map(row: Row, task: Task | None, queue_by: str, seen: set[str]) -> Pending | str:
    """The pending job of one job-table row, or why it is dropped."""
    if task is None:
        return "no task asks for a GPU"
    submit = row.number("start_time")
    work = task.run_s
    if work is None:
        end = row.number("end_time")
        if end < submit:
            return "end_time before start_time"
        work = end - submit
    user = clean_name(row.text("user"))
    name = clean_name(row.text("job_name"), fallback=f"pai-{row.line}")
    fields: dict[str, object] = {
        "id": unique(name, seen),
        "queue": user if queue_by == "user" else "pai",
        "project": user,
        "workers": task.workers,
        "cpu_milli": round(task.plan_cpu * 10),
        "mem_mib": round(task.plan_mem * 1024),
    }
    if task.plan_gpu < 100:
        fields["gpu_milli"] = min(999, max(1, round(task.plan_gpu * 10)))
    else:
        fields["gpus"] = int(task.plan_gpu / 100 + 0.5)
    model = clean_model(task.gpu_type)
    if model not in ANY_MODEL:
        fields["gpu_models"] = (model,)
    return Pending(row.line, submit, work, fields)
