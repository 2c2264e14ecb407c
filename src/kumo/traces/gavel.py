"""Gavel's per-virtual-cluster Philly traces (OSDI'20), old 7-column format.

Each line is tab-separated: ``job_type, command, num_steps_arg, needs_data_dir, total_steps,
arrival_time_s, scale_factor``. A job of scale factor ``k`` becomes a gang of ``k`` workers of one
GPU each (Gavel's servers hold one GPU). Its duration on GPU type ``t`` is ``total_steps /
throughput`` with the throughput taken from Gavel's ``simulation_throughputs.json`` at
``[t]["('<job_type>', <k>)"]["null"]`` (steps per second, the job alone). ``work_s`` is the
duration on the job's fastest type, and ``speeds`` each type's throughput over the fastest's, so
kumo's simulator runs the job exactly as long as Gavel's on every type.

Jobs without a throughput entry for their scale factor (the table covers 1, 2, 4 and 8, and not
every job type at 2-8): ``missing_throughput="drop"`` (Gavel's choice, the default) leaves them
out and counts them; ``"clamp"`` gives them the per-GPU throughput of the largest covered scale
factor of their type (times ``k``). The trace file name (without ``.trace``) names the queue and
project: one Philly virtual cluster. No walltime estimates: Gavel's policies are size-blind.
"""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path
from typing import Any

from kumo.core import Job
from kumo.core.errors import ValidationError
from kumo.traces.base import Trace, TraceFormatError, TraceJob

COLUMNS = ("job_type", "command", "num_steps_arg", "needs_data_dir", "total_steps", "arrival_time_s",
           "scale_factor")
MISSING = ("drop", "clamp")
GPU_TYPES = ("v100", "p100", "k80")


def read(path: str | Path, throughputs: str | Path | None = None, missing_throughput: str = "drop",
         queue: str | None = None) -> Trace:
    """Read one Gavel ``.trace`` file; ``throughputs`` is Gavel's ``simulation_throughputs.json``
    (default: the file of that name beside the trace's folder)."""
    path = Path(path)
    if missing_throughput not in MISSING:
        raise TraceFormatError(str(path), f"missing_throughput must be one of {', '.join(MISSING)}, "
                                          f"got {missing_throughput!r}")
    table = load_throughputs(_default_throughputs(path, throughputs))
    name = queue or path.stem
    jobs: list[TraceJob] = []
    missing: dict[tuple[str, int], int] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            job_type, steps, arrival, scale = _parse_line(path.name, lineno, line)
            tputs = _throughputs(table, job_type, scale, missing_throughput == "clamp")
            if not tputs:
                missing[(job_type, scale)] = missing.get((job_type, scale), 0) + 1
                continue
            jobs.append(_job(path.name, lineno, name, len(jobs), job_type, steps, arrival, scale, tputs))
    dropped = sum(missing.values())
    if not jobs:
        raise TraceFormatError(path.name, "no jobs" + (f" (all {dropped} lack a throughput entry)" if dropped else ""))
    notes = [f"queue and project {name!r}: the trace's virtual cluster"]
    if dropped:
        kinds = ", ".join(f"{t} x{k}" for t, k in sorted(missing))
        notes.append(f"dropped {dropped} jobs without a throughput entry for their scale factor ({kinds})")
    elif missing_throughput == "clamp":
        notes.append("jobs without a throughput entry use their type's largest covered scale factor per GPU")
    return Trace(jobs, str(path), "gavel", dropped=dropped, notes=notes)


def _default_throughputs(path: Path, given: str | Path | None) -> Path:
    if given is not None:
        return Path(given)
    for folder in (path.parent, path.parent.parent):
        candidate = folder / "simulation_throughputs.json"
        if candidate.exists():
            return candidate
    raise TraceFormatError(str(path), "Gavel traces need a throughput table: pass --throughputs "
                                      "(Gavel's simulation_throughputs.json)")


def load_throughputs(path: str | Path) -> dict[str, dict[tuple[str, int], float]]:
    """``{gpu_type: {(job_type, scale_factor): steps per second alone}}`` for v100, p100 and k80."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TraceFormatError(str(path), "no such file") from None
    except json.JSONDecodeError as e:
        raise TraceFormatError(path.name, f"not valid JSON ({e.msg})", line=e.lineno) from None
    if not isinstance(raw, dict):
        raise TraceFormatError(path.name, "expected an object keyed by GPU type")
    table: dict[str, dict[tuple[str, int], float]] = {}
    for gpu in GPU_TYPES:
        entries = raw.get(gpu)
        if not isinstance(entries, dict):
            continue
        table[gpu] = {}
        for key, value in entries.items():
            parsed = _parse_key(key)
            tput = value.get("null") if isinstance(value, dict) else None
            if parsed is not None and isinstance(tput, int | float) and tput > 0:
                table[gpu][parsed] = float(tput)
    if not table:
        raise TraceFormatError(path.name, f"no throughputs for any of {', '.join(GPU_TYPES)}")
    return table


def _parse_key(key: str) -> tuple[str, int] | None:
    try:
        value: Any = ast.literal_eval(key)
    except (ValueError, SyntaxError):
        return None
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int):
        return value[0], value[1]
    return None


def _parse_line(file: str, lineno: int, line: str) -> tuple[str, int, float, int]:
    cols = line.rstrip("\n").split("\t")
    if len(cols) != len(COLUMNS):
        raise TraceFormatError(file, f"expected {len(COLUMNS)} tab-separated columns "
                                     f"({', '.join(COLUMNS)}), got {len(cols)}", line=lineno)
    job_type = cols[0].strip()
    if not job_type:
        raise TraceFormatError(file, "expected a job type, got an empty value", line=lineno, column="job_type")
    steps = _number(file, lineno, "total_steps", cols[4], int)
    arrival = _number(file, lineno, "arrival_time_s", cols[5], float)
    scale = _number(file, lineno, "scale_factor", cols[6], int)
    if steps <= 0 or scale <= 0 or arrival < 0:
        bad = "total_steps" if steps <= 0 else "scale_factor" if scale <= 0 else "arrival_time_s"
        raise TraceFormatError(file, "expected a positive number" if bad != "arrival_time_s"
                               else "expected a number >= 0", line=lineno, column=bad)
    return job_type, int(steps), float(arrival), int(scale)


def _number(file: str, lineno: int, column: str, text: str, kind: type) -> float:
    try:
        value = float(text)
    except ValueError:
        raise TraceFormatError(file, f"expected a number, got {text.strip()!r}", line=lineno, column=column) from None
    if not math.isfinite(value) or (kind is int and value != int(value)):
        expected = "an integer" if kind is int else "a finite number"
        raise TraceFormatError(file, f"expected {expected}, got {text.strip()!r}", line=lineno, column=column)
    return value


def _throughputs(table: dict[str, dict[tuple[str, int], float]], job_type: str, scale: int,
                 clamp: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    for gpu, entries in table.items():
        tput = entries.get((job_type, scale))
        if tput is None and clamp:
            covered = [k for (t, k) in entries if t == job_type and k <= scale]
            if covered:
                k = max(covered)
                tput = entries[(job_type, k)] / k * scale
        if tput is not None:
            out[gpu] = tput
    return out


def _job(file: str, lineno: int, queue: str, n: int, job_type: str, steps: int, arrival: float, scale: int,
         tputs: dict[str, float]) -> TraceJob:
    best = max(tputs.values())
    speeds = tuple((gpu, tputs[gpu] / best) for gpu in sorted(tputs))
    try:
        job = Job(f"{queue}-{n:05d}", queue, queue, workers=scale, gpus=1, submit_time=arrival, speeds=speeds,
                  gpu_models=tuple(sorted(tputs, key=lambda g: (-tputs[g], g))),
                  meta={"job_type": job_type, "line": lineno})
    except ValidationError as e:
        raise TraceFormatError(file, e.problem, line=lineno) from None
    return TraceJob(job, steps / best)
