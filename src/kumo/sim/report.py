"""What a simulation leaves on disk: the JSON summary, one row per job, and PNG plots.

``write_outputs(result, summary, folder)`` writes ``summary.json``, ``jobs.csv`` (or
``jobs.parquet``) and three plots a planner looks at: ``jct_cdf.png`` (the CDF of job completion
times, with the lower bound's), ``utilization.png`` (share of GPUs held and waiting jobs over
time) and ``queue_share.png`` (each queue's share of GPU-seconds beside its fair share).
matplotlib and pyarrow are imported only here, when asked for.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from kumo.core.errors import ConfigError
from kumo.sim.engine import SimResult
from kumo.sim.metrics import per_job, utilization_series

JOB_FORMATS = ("csv", "parquet")


def write_outputs(result: SimResult, summary: dict[str, Any], folder: str | Path, jobs_format: str = "csv",
                  plots: bool = True) -> list[Path]:
    """Write everything into ``folder`` (created if needed); returns the files written."""
    if jobs_format not in JOB_FORMATS:
        raise ConfigError(f"sim: jobs format must be one of {', '.join(JOB_FORMATS)}, got {jobs_format!r}")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "summary.json"]
    written[0].write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    rows = per_job(result)
    written.append(write_jobs(rows, out / f"jobs.{jobs_format}"))
    if plots:
        written += plot_all(result, rows, summary, out)
    return written


def write_jobs(rows: list[dict[str, Any]], path: Path) -> Path:
    if path.suffix == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:  # pragma: no cover - depends on the installation
            raise ConfigError("Parquet output needs pyarrow: pip install 'kumo[parquet]'") from None
        pq.write_table(pa.Table.from_pylist(rows), path)
        return path
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["id"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - depends on the installation
        raise ConfigError("plots need matplotlib: pip install 'kumo[plots]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_all(result: SimResult, rows: list[dict[str, Any]], summary: dict[str, Any], out: Path) -> list[Path]:
    plt = _pyplot()
    title = f"{Path(result.trace.source).name} on {result.cluster.source or 'cluster'} — {summary['policy']}"
    return [_jct_cdf(plt, rows, title, out / "jct_cdf.png"),
            _utilization(plt, result, title, out / "utilization.png"),
            _queue_share(plt, summary, title, out / "queue_share.png")]


def _jct_cdf(plt: Any, rows: list[dict[str, Any]], title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, label in (("jct_s", "job completion time"), ("lower_bound_s", "lower bound (alone, fastest GPU)")):
        xs = sorted(r[key] / 3600.0 for r in rows if r[key] is not None and r["status"] == "finished")
        if xs:
            ax.step(xs, [(i + 1) / len(xs) for i in range(len(xs))], where="post", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("hours (log scale)")
    ax.set_ylabel("fraction of jobs")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(plt, fig, path)


def _utilization(plt: Any, result: SimResult, title: str, path: Path) -> Path:
    ts, used, waiting = utilization_series(result)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    hours = [t / 3600.0 for t in ts]
    ax.step(hours, used, where="post", color="tab:blue", label="GPUs held")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("hours since the first arrival")
    ax.set_ylabel("fraction of GPUs held", color="tab:blue")
    ax2 = ax.twinx()
    ax2.step(hours, waiting, where="post", color="tab:orange", alpha=0.7, label="waiting jobs")
    ax2.set_ylabel("waiting jobs", color="tab:orange")
    ax.set_title(title, fontsize=9)
    return _save(plt, fig, path)


def _queue_share(plt: Any, summary: dict[str, Any], title: str, path: Path) -> Path:
    queues = summary["queues"]
    names = list(queues)
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(names) + 2), 4.5))
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [queues[n]["gpu_share"] for n in names], width=0.4, label="received")
    ax.bar([x + 0.2 for x in xs], [queues[n]["fair_share"] for n in names], width=0.4, label="fair share")
    ax.set_xticks(list(xs), names, rotation=45, ha="right")
    ax.set_ylabel("share of GPU-seconds")
    ax.set_title(title, fontsize=9)
    ax.legend()
    return _save(plt, fig, path)


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
