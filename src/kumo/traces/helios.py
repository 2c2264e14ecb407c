"""SenseTime Helios (``cluster_log.csv``, Hu et al., SC'21) as a kumo :class:`Trace`.

Columns ``job_id, user, vc, jobname, gpu_num, cpu_num, node_num, state, submit_time, start_time,
end_time, duration, queue`` with a header; times like ``2020-04-01 00:00:00``, ``duration`` in s.

- ``vc`` → ``queue``; ``f"{vc}.{user}"`` → ``project`` (a user of two VCs is two projects, so each
  project belongs to exactly one VC and the tenancy tree VC → user is well formed);
- ``submit_time`` → seconds after the earliest submission of a kept job; ``duration`` → ``work_s``;
- ``gpu_num`` → the gang as for Philly (:func:`kumo.traces._csv.gang`, ``gpus_per_node=8``);
  ``node_num``, ``start_time``, ``end_time``, ``queue`` (the observed wait) and ``jobname`` are ignored;
- ``cpu_num`` (the job's CPUs) → ``cpu_milli`` per worker (``cpu_num * 1000 / workers``, rounded);
- ``job_id`` → ``id`` (bad characters replaced by ``_``; repeats get ``-2``, ``-3``, ...);
- dropped and counted: CPU-only jobs (``gpu_num`` 0), jobs that never ran (``duration`` empty or
  0) and, when ``states`` is given, jobs in other states. Every state is kept by default
  (COMPLETED, CANCELLED, FAILED, TIMEOUT, NODE_FAIL): the GPU time was used either way.

See ``docs/concepts/traces.md``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from kumo.traces._csv import Pending, Row, build, check_selection, clean_name, csv_rows, gang, unique
from kumo.traces.base import Trace, TraceFormatError

COLUMNS = ("job_id", "user", "vc", "gpu_num", "cpu_num", "state", "submit_time", "duration")


def read(
    path: str | Path,
    *,
    gpus_per_node: int = 8,
    states: Iterable[str] | None = None,
    limit: int | None = None,
    start: float | None = None,
    end: float | None = None,
) -> Trace:
    """Read a Helios ``cluster_log.csv``. ``states``: keep only jobs in these states (default:
    all); ``start``/``end``/``limit``: as for :func:`kumo.traces.philly.read`."""
    if isinstance(gpus_per_node, bool) or not isinstance(gpus_per_node, int) or gpus_per_node < 1:
        raise TraceFormatError("options", f"gpus_per_node must be a positive integer, got {gpus_per_node!r}")
    if isinstance(states, str):
        raise TraceFormatError("options", f"states must be a list of state names, got {states!r}")
    wanted = None if states is None else {s.upper() for s in states}
    selection = check_selection(limit, start, end)
    path = Path(path)
    pending: list[Pending] = []
    drops: Counter[str] = Counter()
    seen: set[str] = set()
    for row in csv_rows(path, COLUMNS):
        state = row.text("state").upper()
        if wanted is not None and state not in wanted:
            drops[f"state {state or '(empty)'}"] += 1
            continue
        job = _map(row, gpus_per_node, seen)
        if isinstance(job, str):
            drops[job] += 1
        else:
            pending.append(job)
    notes = [
        "queue: the virtual cluster (vc); project: '<vc>.<user>'",
        f"gangs from gpu_num as for Philly ({gpus_per_node} GPUs per node); node_num is ignored",
        "work_s: the duration column; the observed queueing delay is ignored",
    ]
    notes += [f"dropped {n} jobs: {why}" for why, n in sorted(drops.items())]
    jobs = build(path.name, pending, selection)
    return Trace(jobs, source=str(path), format="helios", dropped=sum(drops.values()), notes=notes + selection.notes)


def _map(row: Row, gpus_per_node: int, seen: set[str]) -> Pending | str:
    """The pending job of one row, or why it is dropped."""
    submit = row.time("submit_time")
    gpus = row.integer("gpu_num")
    cpus = row.number("cpu_num", default=0.0)
    work = row.number("duration", default=0.0)
    if gpus == 0:
        return "no GPU (gpu_num 0)"
    if work == 0:
        return "never ran (duration empty or 0)"
    vc = clean_name(row.text("vc"))
    user = clean_name(row.text("user"))
    workers, per = gang(gpus, gpus_per_node)
    fields = {
        "id": unique(clean_name(row.text("job_id"), fallback=f"helios-{row.line}"), seen),
        "queue": vc,
        "project": f"{vc}.{user}"[:128],
        "workers": workers,
        "gpus": per,
        "cpu_milli": round(cpus * 1000 / workers),
    }
    return Pending(row.line, submit, work, fields)
