"""kumo's own trace format: one record per job, as JSON Lines (``.jsonl``/``.json``) or Parquet.

Required fields: ``id``, ``queue``, ``project`` (strings), ``submit_time`` and ``work_s`` (seconds;
``work_s`` on a speed-1.0 GPU). Optional, with :class:`~kumo.core.Job`'s defaults: ``workers``,
``gpus``, ``gpu_milli``, ``cpu_milli``, ``mem_mib``, ``priority`` (integers; ``gpus`` is 1 when
neither ``gpus`` nor ``gpu_milli`` is given), ``preemptible`` (boolean),
``checkpoint_interval_s``, ``walltime_estimate_s``, ``walltime_limit_s`` (seconds or null),
``regions``, ``gpu_models`` (lists of strings), ``speeds`` (object: model → number) and
``topology`` (``node``, ``nvlink``, ``block``, ``zone`` or null). A null optional field means its
default. Writers emit only the fields that differ from the defaults (JSONL) or every column
(Parquet). For Parquet, "line n" in an error means row n. See ``docs/concepts/traces.md``.
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kumo.core import Job
from kumo.core.errors import ValidationError
from kumo.traces.base import Trace, TraceFormatError, TraceJob

REQUIRED = ("id", "queue", "project", "submit_time", "work_s")
INTS = ("workers", "gpus", "gpu_milli", "cpu_milli", "mem_mib", "priority")
SECONDS = ("checkpoint_interval_s", "walltime_estimate_s", "walltime_limit_s")
LISTS = ("regions", "gpu_models")
FIELDS = (*REQUIRED, *INTS, "preemptible", *SECONDS, *LISTS, "speeds", "topology")
PARQUET_MISSING = "Parquet needs pyarrow: pip install 'kumo[parquet]'"


# --------------------------------------------------------------------------- reading


def read(path: str | Path) -> Trace:
    """Read a kumo trace; the extension picks the format (``.jsonl``/``.json`` or ``.parquet``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        records = _jsonl_records(path)
    elif suffix == ".parquet":
        records = _parquet_records(path)
    else:
        found = suffix or "no extension"
        raise TraceFormatError(path.name, f"expected a .jsonl, .json or .parquet file, got {found!r}")
    jobs: list[TraceJob] = []
    lines: dict[str, int] = {}
    for line, record in records:
        job = _trace_job(path.name, line, record)
        if job.job.id in lines:
            raise TraceFormatError(path.name, f"job {job.job.id!r} appears twice (first on line {lines[job.job.id]})",
                                   line=line, column="id")  # fmt: skip
        lines[job.job.id] = line
        jobs.append(job)
    if not jobs:
        raise TraceFormatError(path.name, "no jobs")
    return Trace(jobs, source=str(path), format="kumo")


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise TraceFormatError(path.name, f"cannot read: {e}") from None
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as e:
            raise TraceFormatError(path.name, f"not valid JSON ({e.msg} at character {e.pos + 1})", line=n) from None
        if not isinstance(record, dict):
            raise TraceFormatError(path.name, f"expected a JSON object, got {type(record).__name__}", line=n)
        yield n, record


def _parquet_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    pq = _pyarrow(path.name)[1]
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for files that are not Parquet
        raise TraceFormatError(path.name, f"not a readable Parquet file ({e})") from None
    for n, row in enumerate(table.to_pylist(), start=1):
        if isinstance(row.get("speeds"), list):  # a Parquet map comes back as (key, value) pairs
            row["speeds"] = dict(row["speeds"])
        yield n, row


def _trace_job(file: str, line: int, record: dict[str, Any]) -> TraceJob:
    def bad(column: str, expected: str) -> TraceFormatError:
        return TraceFormatError(file, f"expected {expected}, got {record[column]!r}", line=line, column=column)

    for name in record:
        if name not in FIELDS:
            raise TraceFormatError(file, f"unknown field; known fields: {', '.join(FIELDS)}", line=line, column=name)
    for name in REQUIRED:
        if record.get(name) is None:
            raise TraceFormatError(file, "missing required field", line=line, column=name)
    kwargs: dict[str, Any] = {}
    for name, value in record.items():
        if value is None:
            continue
        check, expected = _CHECKS[name]
        if not check(value):
            raise bad(name, expected)
        kwargs[name] = tuple(value) if name in LISTS else value
    if not kwargs.get("gpus") and not kwargs.get("gpu_milli"):
        kwargs.setdefault("gpus", 1)
    work_s = kwargs.pop("work_s")
    try:
        return TraceJob(Job(**kwargs), float(work_s))
    except ValidationError as e:
        raise TraceFormatError(file, str(e), line=line) from None


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _is_names(v: object) -> bool:
    return isinstance(v, list | tuple) and all(isinstance(x, str) for x in v)


def _is_speeds(v: object) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and _is_number(x) for k, x in v.items())


_CHECKS: dict[str, tuple[Callable[[object], bool], str]] = {
    **{n: ((lambda v: isinstance(v, str)), "a string") for n in ("id", "queue", "project", "topology")},
    **{n: (_is_number, "a number of seconds") for n in ("submit_time", "work_s", *SECONDS)},
    **{n: (_is_int, "an integer") for n in INTS},
    "preemptible": ((lambda v: isinstance(v, bool)), "true or false"),
    **{n: (_is_names, "a list of strings") for n in LISTS},
    "speeds": (_is_speeds, "an object of GPU model to number"),
}


# --------------------------------------------------------------------------- writing


def record(tj: TraceJob) -> dict[str, Any]:
    """The full record of one job (every field, defaults included)."""
    j = tj.job
    return {
        "id": j.id, "queue": j.queue, "project": j.project, "submit_time": j.submit_time, "work_s": tj.work_s,
        "workers": j.workers, "gpus": j.gpus, "gpu_milli": j.gpu_milli, "cpu_milli": j.cpu_milli,
        "mem_mib": j.mem_mib, "priority": j.priority, "preemptible": j.preemptible,
        "checkpoint_interval_s": j.checkpoint_interval_s, "walltime_estimate_s": j.walltime_estimate_s,
        "walltime_limit_s": j.walltime_limit_s, "regions": list(j.regions), "gpu_models": list(j.gpu_models),
        "speeds": dict(j.speeds), "topology": None if j.topology is None else j.topology.value,
    }  # fmt: skip


_DEFAULTS = {"workers": 1, "gpus": 0, "gpu_milli": 0, "cpu_milli": 0, "mem_mib": 0, "priority": 0,
             "preemptible": True, "regions": [], "gpu_models": [], "speeds": {}}  # fmt: skip


def write_jsonl(trace: Trace, path: str | Path) -> None:
    """Write ``trace`` as JSON Lines, one compact record per job in submission order."""
    with Path(path).open("w", encoding="utf-8") as out:
        for tj in trace.jobs:
            full = record(tj)
            slim = {k: v for k, v in full.items() if v is not None and (k not in _DEFAULTS or v != _DEFAULTS[k])}
            out.write(json.dumps(slim, separators=(",", ":")) + "\n")


def write_parquet(trace: Trace, path: str | Path) -> None:
    """Write ``trace`` as Parquet, one row per job and one column per field."""
    pa, pq = _pyarrow(Path(path).name)
    ints, secs, names = pa.int64(), pa.float64(), pa.list_(pa.string())
    schema = pa.schema(
        [("id", pa.string()), ("queue", pa.string()), ("project", pa.string()), ("submit_time", secs),
         ("work_s", secs), *[(n, ints) for n in INTS], ("preemptible", pa.bool_()), *[(n, secs) for n in SECONDS],
         ("regions", names), ("gpu_models", names), ("speeds", pa.map_(pa.string(), pa.float64())),
         ("topology", pa.string())]
    )  # fmt: skip
    rows = [record(tj) for tj in trace.jobs]
    for row in rows:
        row["speeds"] = list(row["speeds"].items())
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), Path(path))


def _pyarrow(file: str) -> tuple[Any, Any]:
    try:  # imported by name: pyarrow is optional and ships no type information
        pa = importlib.import_module("pyarrow")
        pq = importlib.import_module("pyarrow.parquet")
    except ImportError:
        raise TraceFormatError(file, PARQUET_MISSING) from None
    return pa, pq
