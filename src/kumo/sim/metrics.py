"""Figures a planner reads off a simulation, and the lower bounds to read them against.

Per job: JCT (finish - submit), queueing delay (first start - submit) and slowdown (JCT over the
job's lower bound: its work alone on the fastest GPU model it may use in this cluster). Summaries
give the mean, p50, p95 and p99 of each. Cluster-wide: makespan (last finish - first submit),
utilization (GPU-seconds held / (GPUs x makespan)), preemptions and the GPU-hours whose work was
lost. Per queue (and per programme): jobs, JCTs, the share of all GPU-seconds it received against its fair share
(its project weights' share among the trace's queues), and — when isolated runs are asked for —
finish-time fairness ρ = its mean JCT here / its mean JCT alone on its fair share of the cluster
(Themis); Jain's index over the queues' ρ (or, without isolated runs, over received / fair share).

Lower bounds: ``lower_bound_avg_jct_s`` (each job alone on its fastest allowed model) and
``lower_bound_makespan_s`` (the later of the last such lone finish and all work spread over every
GPU at its best speed).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kumo.core import GPU_MILLI
from kumo.sim.engine import JobRecord, SimResult


def lower_bound_s(rec: JobRecord, models: set[str]) -> float:
    """The job's run time alone on the fastest GPU model it may use in this cluster."""
    allowed = [m for m in (rec.job.gpu_models or tuple(models)) if m in models]
    if not allowed:
        return math.inf
    return rec.trace.work_s / max(rec.job.speed(m) for m in allowed)


def stats(values: list[float], prefix: str) -> dict[str, float | None]:
    if not values:
        return {f"{prefix}_{k}": None for k in ("mean", "p50", "p95", "p99")}
    a = np.asarray(values, dtype=float)
    return {f"{prefix}_mean": float(a.mean()), f"{prefix}_p50": float(np.percentile(a, 50)),
            f"{prefix}_p95": float(np.percentile(a, 95)), f"{prefix}_p99": float(np.percentile(a, 99))}


def jain(values: list[float]) -> float | None:
    """Jain's fairness index: 1 when all values are equal, 1/n when one takes all."""
    xs = [v for v in values if v is not None and math.isfinite(v)]
    if not xs or not any(xs):
        return None
    return sum(xs) ** 2 / (len(xs) * sum(x * x for x in xs))


def per_job(result: SimResult) -> list[dict[str, Any]]:
    """One row per job of the trace (for CSV or Parquet)."""
    models = set(result.cluster.gpus())
    rows = []
    for rec in result.records.values():
        job = rec.job
        lb = lower_bound_s(rec, models)
        jct = rec.finish - job.submit_time if rec.finish is not None else None
        rows.append({
            "id": job.id, "queue": job.queue, "project": job.project, "gpus": rec.gpus,
            "submit_s": job.submit_time, "first_start_s": rec.first_start, "finish_s": rec.finish,
            "jct_s": jct, "queueing_s": rec.first_start - job.submit_time if rec.first_start is not None else None,
            "slowdown": jct / lb if jct is not None and lb > 0 and math.isfinite(lb) else None,
            "work_s": rec.trace.work_s, "lower_bound_s": lb if math.isfinite(lb) else None,
            "attempts": rec.attempts, "preemptions": rec.preemptions, "migrations": rec.migrations,
            "models": ",".join(rec.models),
            "busy_gpu_s": rec.busy_gpu_s, "lost_gpu_s": rec.lost_gpu_s,
            "status": "finished" if rec.finish is not None else "rejected" if rec.rejected else "waiting",
            "reason": rec.rejected or result.stuck.get(job.id),
        })
    return rows


def summary(result: SimResult, isolated: dict[str, float] | None = None) -> dict[str, Any]:
    """The run's figures as one JSON-ready dict (see the module docstring).

    ``isolated``: per queue, the mean JCT of its jobs alone on its fair share of the cluster."""
    rows = per_job(result)
    done = [r for r in rows if r["status"] == "finished"]
    models = set(result.cluster.gpus())
    gpus = result.cluster.total_gpus()
    submits = [r["submit_s"] for r in rows]
    first = min(submits) if submits else 0.0
    last = max((r["finish_s"] for r in done), default=first)
    makespan = last - first
    busy = sum(r["busy_gpu_s"] for r in rows)
    bounds = [lower_bound_s(rec, models) for rec in result.records.values() if rec.rejected is None]
    finite = [b for b in bounds if math.isfinite(b)]
    work_gpu_s = sum(lower_bound_s(rec, models) * rec.gpus for rec in result.records.values()
                     if rec.rejected is None and math.isfinite(lower_bound_s(rec, models)))
    lone_end = max((rec.job.submit_time + lower_bound_s(rec, models) for rec in result.records.values()
                    if rec.rejected is None and math.isfinite(lower_bound_s(rec, models))), default=first)
    out: dict[str, Any] = {
        "jobs": len(rows), "finished": len(done), "rejected": sum(r["status"] == "rejected" for r in rows),
        "waiting_at_end": sum(r["status"] == "waiting" for r in rows), "dropped_by_reader": result.trace.dropped,
        "avg_jct_s": _mean([r["jct_s"] for r in done]),
        "p95_jct_s": _pct([r["jct_s"] for r in done], 95),
        **stats([r["jct_s"] for r in done], "jct_s"),
        **stats([r["queueing_s"] for r in done], "queueing_s"),
        **stats([r["slowdown"] for r in done if r["slowdown"] is not None], "slowdown"),
        "makespan_s": makespan,
        "utilization": busy / (gpus * makespan) if gpus and makespan > 0 else 0.0,
        "lower_bound_avg_jct_s": _mean(finite),
        "lower_bound_makespan_s": max(lone_end, first + work_gpu_s / gpus if gpus else 0.0) - first,
        "preemptions": sum(r["preemptions"] for r in rows),
        "migrations": sum(r["migrations"] for r in rows),
        "busy_gpu_h": busy / 3600.0,
        "work_lost_gpu_h": sum(r["lost_gpu_s"] for r in rows) / 3600.0,
        "node_failures": result.failures, "cycles": result.cycles, "gpus": gpus,
        "policy": result.config.profile.order,
    }
    out["queues"] = per_queue(result, rows, busy, isolated)
    out["programmes"] = per_programme(result, rows, busy)
    values = [q["rho"] for q in out["queues"].values()] if isolated else \
        [q["gpu_share"] / q["fair_share"] for q in out["queues"].values() if q["fair_share"]]
    out["jain_index"] = jain(values)
    out["jain_over"] = "finish-time fairness rho" if isolated else "received / fair share of GPU-seconds"
    return out


def fair_shares(result: SimResult) -> dict[str, float]:
    """Each trace queue's fair share: the weights of its jobs' projects (x programme weight),
    normalised over the queues of the trace."""
    weight = {p.name: p.weight for p in result.cluster.projects}
    prog = {p.name: p.weight for p in result.cluster.programmes}
    prog_of = {p.name: p.programme for p in result.cluster.projects}
    w: dict[str, float] = {}
    for rec in result.records.values():
        q, p = rec.job.queue, rec.job.project
        w.setdefault(q, weight.get(p, 1.0) * prog.get(prog_of.get(p, ""), 1.0))
    total = sum(w.values())
    return {q: v / total for q, v in w.items()} if total else {}


def per_queue(result: SimResult, rows: list[dict[str, Any]], busy: float,
              isolated: dict[str, float] | None) -> dict[str, dict[str, Any]]:
    fair = fair_shares(result)
    out: dict[str, dict[str, Any]] = {}
    for q in fair:
        mine = [r for r in rows if r["queue"] == q]
        done = [r["jct_s"] for r in mine if r["status"] == "finished"]
        gpu_s = sum(r["busy_gpu_s"] for r in mine)
        entry: dict[str, Any] = {
            "jobs": len(mine), "finished": len(done), "avg_jct_s": _mean(done),
            "p95_queueing_s": _pct([r["queueing_s"] for r in mine if r["queueing_s"] is not None], 95),
            "gpu_h": gpu_s / 3600.0, "gpu_share": gpu_s / busy if busy else 0.0, "fair_share": fair[q],
        }
        if isolated is not None and q in isolated and entry["avg_jct_s"] is not None and isolated[q]:
            entry["isolated_avg_jct_s"] = isolated[q]
            entry["rho"] = entry["avg_jct_s"] / isolated[q]
        out[q] = entry
    return out


def per_programme(result: SimResult, rows: list[dict[str, Any]], busy: float) -> dict[str, dict[str, Any]]:
    """Per programme (of the jobs' projects): jobs, JCT, queueing and GPU share."""
    of = {p.name: p.programme for p in result.cluster.projects}
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(of.get(r["project"], ""), []).append(r)
    out: dict[str, dict[str, Any]] = {}
    for g, mine in groups.items():
        done = [r["jct_s"] for r in mine if r["status"] == "finished"]
        gpu_s = sum(r["busy_gpu_s"] for r in mine)
        out[g] = {"jobs": len(mine), "finished": len(done), "avg_jct_s": _mean(done),
                  "p95_queueing_s": _pct([r["queueing_s"] for r in mine if r["queueing_s"] is not None], 95),
                  "gpu_h": gpu_s / 3600.0, "gpu_share": gpu_s / busy if busy else 0.0}
    return out


def utilization_series(result: SimResult) -> tuple[list[float], list[float], list[int]]:
    """(times, fraction of GPUs held, waiting jobs) at every change."""
    cap = result.cluster.total_gpus() * GPU_MILLI
    ts = [t for t, _, _ in result.series]
    return ts, [b / cap for _, b, _ in result.series], [w for _, _, w in result.series]


def _mean(values: list[Any]) -> float | None:
    xs = [v for v in values if v is not None]
    return sum(xs) / len(xs) if xs else None


def _pct(values: list[Any], p: float) -> float | None:
    xs = [v for v in values if v is not None]
    return float(np.percentile(np.asarray(xs, dtype=float), p)) if xs else None
