"""``kumo demo``: schedule a small bundled cluster and workload and show what happened and why.

The command loads the bundled :mod:`kumo.demo` spec (or ``--spec PATH``), runs one scheduling
cycle with the default profile, prints what started where, what was preempted, why every other
job waits and which reservations EASY backfill made, then applies the decisions to the snapshot.
``--json`` prints the same report as one JSON object.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from kumo.core import GPU_MILLI, Decisions, InvalidValueError, Job, KumoError, Snapshot, schedule
from kumo.demo import demo_spec_text
from kumo.spec import Spec, load_spec, load_spec_text

BUNDLED = "kumo/demo/demo.yaml"
Report = dict[str, Any]


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to ``app``."""
    app.command("demo")(demo)


def demo(
    spec: Annotated[
        Path | None,
        typer.Option("--spec", help="Cluster and workload spec (YAML); default: the bundled one."),
    ] = None,
    now: Annotated[
        float | None,
        typer.Option("--now", help="Schedule at this time, in seconds; default: the spec's "
                                   "latest submit or start time."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of tables.")
    ] = False,
    platform: Annotated[
        bool, typer.Option("--platform", help="Start kumo (API, control loop, local executor) and run the "
                                              "demo workload as real processes.")
    ] = False,
    once: Annotated[
        bool, typer.Option("--once", help="Run the platform demo and exit (0 if every job succeeded) when it is done.")
    ] = False,
) -> None:
    """Schedule a small cluster and workload: which jobs start where, and why the others wait."""
    if platform or once:  # --once implies the platform demo
        from kumo.cli import platform_demo

        raise typer.Exit(platform_demo.run(once, Console(highlight=False)))
    try:
        loaded = load_spec(spec) if spec is not None else load_spec_text(demo_spec_text(), BUNDLED)
        at = loaded.now if now is None else now
        if not math.isfinite(at):
            raise InvalidValueError("--now", f"expected a finite number of seconds, got {at}")
        decisions = schedule(loaded.snapshot, at)
        report = build_report(loaded, decisions)
        loaded.snapshot.apply(decisions)
    except KumoError as e:
        typer.echo("error: " + " ".join(str(e).split()), err=True)
        raise typer.Exit(2) from None
    report["after"] = _after(loaded.snapshot)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        render(report, Console(highlight=False))


# --------------------------------------------------------------------------- the report


def build_report(spec: Spec, decisions: Decisions) -> Report:
    """Everything the command shows, as plain JSON-ready values (computed before ``apply``)."""
    snap, now = spec.snapshot, decisions.now
    return {
        "spec": spec.source,
        "now": now,
        "cluster": _cluster(snap),
        "started": [
            {**_job(snap.pending[s.job_id]), "model": s.placement.model,
             "region": s.placement.region, "nodes": list(s.placement.nodes),
             "placement": s.placement.describe(),
             "backfill": s.backfilled, "preempting": list(s.preempting)}
            for s in decisions.starts
        ],
        "preempted": [
            {"job": p.job_id, "by": p.by, "reason": p.reason.message, "work_lost_s": p.work_lost_s}
            for p in decisions.preemptions
        ],
        "requeued": [{"job": r.job_id, "reason": r.reason.message} for r in decisions.requeues],
        "rejected": [{**_job(snap.pending[r.job_id]), "reason": r.reason.message}
                     for r in decisions.rejects],
        "waiting": [
            {**_job(snap.pending[jid]), "code": reason.code, "reason": reason.message}
            for jid, reason in sorted(decisions.waiting.items())
        ],
        "reservations": [
            {"job": r.job_id, "pool": r.pool, "start_at": r.start_at,
             "starts_in_s": r.start_at - now, "nodes": [{"node": n, "gpus": g} for n, g in r.nodes]}
            for r in decisions.reservations
        ],
    }


def _cluster(snap: Snapshot) -> Report:
    pools: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for node in snap.nodes.values():
        pool = pools[(node.region, node.gpu_model)]
        pool[0] += 1
        pool[1] += node.gpus
    return {
        "nodes": len(snap.nodes),
        "gpus": sum(g for _, g in pools.values()),
        "pools": [{"region": r, "model": m, "nodes": n, "gpus": g}
                  for (r, m), (n, g) in sorted(pools.items(), key=lambda p: (p[0][0], -p[1][1]))],
    }


def _job(job: Job) -> Report:
    return {"job": job.id, "project": job.project, "queue": job.queue, "workers": job.workers,
            "gpus": job.total_gpu_milli / GPU_MILLI, "gpus_text": _gpus_text(job)}


def _gpus_text(job: Job) -> str:
    """``'32'`` for whole GPUs; ``'1/7'`` or ``'2 x 1/7'`` for slices."""
    if not job.fractional:
        return str(job.workers * job.gpus)
    frac = Fraction(job.gpu_milli, GPU_MILLI).limit_denominator(16)
    exact = int(frac * GPU_MILLI) == job.gpu_milli
    text = str(frac) if exact else f"{job.gpu_milli / GPU_MILLI:g}"
    return text if job.workers == 1 else f"{job.workers} x {text}"


def _after(snap: Snapshot) -> Report:
    busy = sum(r.job.total_gpu_milli for r in snap.running.values()) / GPU_MILLI
    return {"running": len(snap.running), "waiting": len(snap.pending), "busy_gpus": busy}


# --------------------------------------------------------------------------- rendering


def _duration(seconds: float) -> str:
    s = round(abs(seconds))
    h, m = divmod(s // 60, 60)
    text = (f"{h}h {m}m" if m else f"{h}h") if h else (f"{m}m" if m else f"{s}s")
    return text if seconds >= 0 else f"-{text}"


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", header_style="bold cyan",
                  box=box.SIMPLE_HEAD)
    for k, c in enumerate(columns):
        table.add_column(c, no_wrap=k == 0, overflow="fold")
    return table


def _row(*cells: object) -> list[Text]:
    return [c if isinstance(c, Text) else Text(str(c)) for c in cells]


def _job_cell(entry: Report) -> Text:
    """The job id, and its project and queue dimmed beneath."""
    return Text.assemble(entry["job"], "\n", (f"{entry['project']} / {entry['queue']}", "dim"))


def render(report: Report, console: Console) -> None:
    """Print the report as Rich tables."""
    console.rule(f"kumo demo: {report['spec']} at t={report['now']:g}s")
    _render_cluster(report["cluster"], console)
    _render_started(report, console)
    _render_waiting(report, console)
    _render_reservations(report, console)
    a, total = report["after"], report["cluster"]["gpus"]
    busy = round(a["busy_gpus"], 1)
    console.print(Text(
        f"Applied: {len(report['started'])} started, {len(report['preempted'])} preempted -> "
        f"{a['running']} running, {a['waiting']} waiting; {busy:g} of {total} GPUs busy."
    ))


def _render_cluster(cluster: Report, console: Console) -> None:
    console.print(Text(f"Cluster: {cluster['nodes']} nodes, {cluster['gpus']} GPUs", style="bold"))
    grid = Table.grid(padding=(0, 2))
    for p in cluster["pools"]:
        nodes = f"{p['nodes']} node{'s' if p['nodes'] != 1 else ''}"
        grid.add_row(*_row(f"  {p['region']}", p["model"], nodes, f"{p['gpus']} GPUs"))
    console.print(grid)
    console.print()


def _render_started(report: Report, console: Console) -> None:
    table = _table(f"Started ({len(report['started'])})", "Job, project / queue", "GPUs",
                   "Model, region / placement", "Notes")
    for s in report["started"]:
        notes = ["backfill"] if s["backfill"] else []
        notes += [f"preempts {', '.join(s['preempting'])}"] if s["preempting"] else []
        where = f"{s['model']}, {s['region']}\n{s['placement']}"
        table.add_row(*_row(_job_cell(s), s["gpus_text"], where, "; ".join(notes)))
    console.print(table)
    if report["preempted"]:
        pre = _table("Preempted", "Job", "For", "Work lost", "Reason")
        for p in report["preempted"]:
            pre.add_row(*_row(p["job"], p["by"], _duration(p["work_lost_s"]), p["reason"]))
        console.print(pre)


def _render_waiting(report: Report, console: Console) -> None:
    table = _table(f"Waiting ({len(report['waiting'])})", "Job, project / queue", "GPUs",
                   "Why it waits")
    for w in report["waiting"]:
        table.add_row(*_row(_job_cell(w), w["gpus_text"], w["reason"]))
    console.print(table)
    for kind in ("rejected", "requeued"):
        if report[kind]:
            extra = _table(kind.capitalize(), "Job", "Reason")
            for r in report[kind]:
                extra.add_row(*_row(r["job"], r["reason"]))
            console.print(extra)


def _render_reservations(report: Report, console: Console) -> None:
    if not report["reservations"]:
        console.print(Text("Reservations: none."))
        return
    table = _table("Reservations (EASY backfill)", "Job", "Pool", "Starts", "Nodes")
    for r in report["reservations"]:
        nodes = ", ".join(f"{n['node']} ({n['gpus']} GPUs)" for n in r["nodes"])
        when = f"in {_duration(r['starts_in_s'])} (t={r['start_at']:g}s)"
        table.add_row(*_row(r["job"], r["pool"], when, nodes))
    console.print(table)
