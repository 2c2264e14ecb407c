"""Microsoft Philly (processed CSV, as published with Pollux and Sia) as a kumo :class:`Trace`.

Columns ``timestamp,duration,num_gpus,gpu_time,cluster`` (any order; rows need not be sorted):

- ``timestamp`` (``YYYY-MM-DD HH:MM:SS``) → ``submit_time``, seconds after the earliest one;
- ``duration`` (s) → ``work_s``; ``gpu_time`` is ignored (it is duration × num_gpus);
- ``cluster`` (the virtual cluster) → both ``queue`` and ``project``;
- ``num_gpus`` → the gang (:func:`gang`): up to ``gpus_per_node`` GPUs is one worker; more is
  ``num_gpus / gpus_per_node`` workers of a whole node when it divides, else ``num_gpus`` workers
  of one GPU; jobs with 0 GPUs are dropped;
- the id is ``philly-<n>``, ``n`` the 1-based data row (line ``n + 1`` of the file).

No speeds and no GPU-model constraint: the trace has neither. The CSV helpers it shares with
the Helios and Alibaba readers live in :mod:`kumo.traces._csv`. See ``docs/concepts/traces.md``.
"""
from __future__ import annotations

from pathlib import Path

from kumo.traces._csv import Pending, build, check_selection, clean_name, csv_rows, gang
from kumo.traces.base import Trace, TraceFormatError

COLUMNS = ("timestamp", "duration", "num_gpus", "cluster")  # required; gpu_time is optional


def read(
    path: str | Path,
    *,
    gpus_per_node: int = 8,
    limit: int | None = None,
    start: float | None = None,
    end: float | None = None,
) -> Trace:
    """Read a Philly CSV. ``start``/``end``: keep jobs submitted in that window (seconds after the
    earliest submission; times are then measured from ``start``); ``limit``: the first N of them."""
    if isinstance(gpus_per_node, bool) or not isinstance(gpus_per_node, int) or gpus_per_node < 1:
        raise TraceFormatError("options", f"gpus_per_node must be a positive integer, got {gpus_per_node!r}")
    selection = check_selection(limit, start, end)
    path = Path(path)
    pending: list[Pending] = []
    no_gpu = 0
    for n, row in enumerate(csv_rows(path, COLUMNS), start=1):
        submit = row.time("timestamp")
        work = row.number("duration")
        gpus = row.integer("num_gpus")
        cluster = clean_name(row.text("cluster"))
        if gpus == 0:
            no_gpu += 1
            continue
        workers, per = gang(gpus, gpus_per_node)
        fields = {"id": f"philly-{n}", "queue": cluster, "project": cluster, "workers": workers, "gpus": per}
        pending.append(Pending(row.line, submit, work, fields))
    notes = [
        "queue and project: the Philly virtual cluster",
        f"gangs: up to {gpus_per_node} GPUs on one worker; multiples of {gpus_per_node} as whole-node workers; "
        "other sizes as one-GPU workers",
        "no speeds and no GPU-model constraint (the trace has neither)",
    ]
    if no_gpu:
        notes.append(f"dropped {no_gpu} jobs with num_gpus 0")
    jobs = build(path.name, pending, selection)
    return Trace(jobs, source=str(path), format="philly", dropped=no_gpu, notes=notes + selection.notes)
