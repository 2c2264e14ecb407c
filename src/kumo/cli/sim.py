"""``kumo sim``: replay a trace through the scheduling core and report what a planner needs.

    kumo sim --trace PATH --format {philly,gavel,alibaba2020,helios,kumo} --cluster FILE_OR_SPEC \\
             --policy NAME [--throughputs PATH] [--json] [--out DIR]
    kumo sim --list-policies

Every problem with the input (a malformed trace, cluster or option) ends with one line on stderr
naming what was wrong and where, and exit status 2.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from kumo.cli.options import (
    CheckpointOnPreemptOpt,
    EstimatesOpt,
    FormatOpt,
    GraceOpt,
    MissingThroughputOpt,
    ThroughputsOpt,
    TickOpt,
    TraceOpt,
    load_trace,
)
from kumo.core import ORDER_POLICIES, KumoError, Profile
from kumo.sim.cluster import load_cluster
from kumo.sim.engine import SimConfig, SimResult, simulate
from kumo.sim.isolated import isolated_jcts
from kumo.sim.metrics import summary
from kumo.sim.report import write_outputs
from kumo.traces import Trace, TraceJob

SIZE_BLIND = ("fifo", "priority", "fair-share", "las")  # policies that read neither durations nor estimates


def register(app: typer.Typer) -> None:
    app.command("sim")(sim)


def sim(
    trace: TraceOpt = None,
    fmt: FormatOpt = "kumo",
    cluster: Annotated[str | None, typer.Option(
        "--cluster", help="Cluster YAML file, or a spec like 'v100=8,p100=8,k80=8' (1 GPU per node) "
                          "or 'h200=512/8' (8 GPUs per node).")] = None,
    policy: Annotated[str, typer.Option("--policy", help="Order policy (see --list-policies).")] = "fair-share",
    throughputs: ThroughputsOpt = None,
    missing_throughput: MissingThroughputOpt = "drop",
    preemption: Annotated[bool, typer.Option("--preemption/--no-preemption")] = True,
    backfill: Annotated[bool, typer.Option("--backfill/--no-backfill")] = True,
    heterogeneity: Annotated[bool, typer.Option("--heterogeneity/--no-heterogeneity")] = True,
    migration: Annotated[bool, typer.Option(
        "--migration/--no-migration", help="Move running jobs to faster GPUs left free (a restart).")] = False,
    grace: GraceOpt = 600.0,
    tick: TickOpt = None,
    estimates: EstimatesOpt = "none",
    checkpoint_on_preempt: CheckpointOnPreemptOpt = False,
    checkpoint_interval: Annotated[float | None, typer.Option(
        "--checkpoint-interval", help="Checkpoint interval (s) for jobs the trace gives none.")] = None,
    restart_cost: Annotated[float, typer.Option("--restart-cost", help="Seconds added to every restart.")] = 0.0,
    mtbf: Annotated[float | None, typer.Option("--mtbf", help="Mean seconds between failures, per node.")] = None,
    mttr: Annotated[float, typer.Option("--mttr", help="Mean seconds to repair a node.")] = 3600.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed for node failures.")] = 0,
    isolated: Annotated[bool, typer.Option(
        "--isolated", help="Also replay each queue alone on its fair share (finish-time fairness rho).")] = False,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Folder for summary.json, per-job rows and PNG plots.")] = None,
    jobs_format: Annotated[str, typer.Option("--jobs-format", help="Per-job rows: csv or parquet.")] = "csv",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
    list_policies: Annotated[bool, typer.Option("--list-policies", help="List policy names and exit.")] = False,
) -> None:
    """Replay a trace through kumo's scheduler on a simulated cluster."""
    if list_policies:
        for name in ORDER_POLICIES:
            typer.echo(name)
        return
    try:
        if trace is None or cluster is None:
            missing = "--trace" if trace is None else "--cluster"
            raise KumoError(f"{missing} is required (or --list-policies)")
        loaded = load_trace(trace, fmt, throughputs, missing_throughput)
        if checkpoint_interval is not None:
            loaded = _with_checkpoints(loaded, checkpoint_interval)
        sim_cluster = load_cluster(cluster)
        profile = Profile(order=policy, preemption=preemption, reclaim=preemption, backfill=backfill,
                          heterogeneity=heterogeneity, migration=migration, preemption_min_runtime_s=grace)
        config = SimConfig(profile=profile, tick_s=tick, restart_cost_s=restart_cost,
                           checkpoint_on_preempt=checkpoint_on_preempt, estimates=estimates, mtbf_s=mtbf,
                           mttr_s=mttr, seed=seed)
        started = time.perf_counter()
        result = _run(loaded, sim_cluster, config, quiet=as_json)
        iso = isolated_jcts(result) if isolated else None
        report = summary(result, iso)
        report["wall_s"] = round(time.perf_counter() - started, 3)
        report.update(trace=str(trace), format=fmt, cluster=cluster, size_blind=policy in SIZE_BLIND,
                      estimates=estimates, notes=loaded.notes + result.cluster.notes)
        if out is not None:
            report["outputs"] = [str(p) for p in write_outputs(result, report, out, jobs_format)]
    except (KumoError, OSError) as e:
        typer.echo("error: " + " ".join(str(e).split()), err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(report))
    else:
        render(report, result, Console(highlight=False))


def _with_checkpoints(trace: Trace, interval: float) -> Trace:
    jobs = [t if t.job.checkpoint_interval_s else
            TraceJob(dataclasses.replace(t.job, checkpoint_interval_s=interval), t.work_s) for t in trace.jobs]
    return Trace(jobs, trace.source, trace.format, trace.dropped, trace.notes, trace.programme_of)


def _run(trace: Trace, cluster: Any, config: SimConfig, quiet: bool) -> SimResult:
    console = Console(stderr=True)
    if quiet or not console.is_terminal:
        return simulate(trace, cluster, config)
    with Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TextColumn("jobs done"),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("sim", total=len(trace.jobs))
        return simulate(trace, cluster, config, progress=lambda done, total: bar.update(task, completed=done))


def _h(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds / 3600:,.2f} h"


def render(report: dict[str, Any], result: SimResult, console: Console) -> None:
    console.print(f"[bold]{report['trace']}[/] ({report['format']}, {report['jobs']} jobs) on "
                  f"[bold]{report['cluster']}[/] ({report['gpus']} GPUs), policy [bold]{report['policy']}[/]")
    t = Table(show_header=True, header_style="bold")
    for col in ("figure", "value", "lower bound"):
        t.add_column(col)
    t.add_row("average JCT", _h(report["avg_jct_s"]), _h(report["lower_bound_avg_jct_s"]))
    t.add_row("p50 / p95 / p99 JCT", " / ".join(_h(report[f"jct_s_{p}"]) for p in ("p50", "p95", "p99")), "")
    t.add_row("mean queueing delay", _h(report["queueing_s_mean"]), "")
    t.add_row("mean slowdown", "—" if report["slowdown_mean"] is None else f"{report['slowdown_mean']:.2f}", "1.00")
    t.add_row("makespan", _h(report["makespan_s"]), _h(report["lower_bound_makespan_s"]))
    t.add_row("utilization", f"{report['utilization']:.3f}", "")
    t.add_row("preemptions / migrations / GPU-h lost",
              f"{report['preemptions']} / {report['migrations']} / {report['work_lost_gpu_h']:,.1f}", "")
    jain = "—" if report["jain_index"] is None else f"{report['jain_index']:.3f} (over {report['jain_over']})"
    t.add_row("Jain's index", jain, "")
    t.add_row("finished / rejected / never started",
              f"{report['finished']} / {report['rejected']} / {report['waiting_at_end']}", "")
    t.add_row("simulated in", f"{report['wall_s']:.1f} s ({report['cycles']} scheduling rounds)", "")
    console.print(t)
    for note in report["notes"]:
        console.print(f"note: {note}")
    problems = [(r.job.id, r.rejected) for r in result.records.values() if r.rejected]
    problems += list(result.stuck.items())
    for jid, why in problems[:10]:
        console.print(f"[yellow]not run[/] {jid}: {why}")
    if len(problems) > 10:
        console.print(f"... and {len(problems) - 10} more (see jobs.csv with --out)")
    if "outputs" in report:
        console.print("wrote " + ", ".join(report["outputs"]))


