"""``kumo plan``: the smallest cluster, and the policy, that meets a target on a trace.

    kumo plan --trace PATH --format FORMAT --sweep MODEL=START:STOP:STEP[/PER_NODE] [--sweep ...] \\
              --target METRIC<=VALUE [--base-cluster SPEC] [--policies a,b] [--workers N] [--json] [--out DIR]

Every configuration of the sweep runs through the simulator (in ``--workers`` processes); the
answer is the one meeting the target with the fewest GPUs. Every problem with the input ends with
one line on stderr and exit status 2; "no configuration meets the target" is an answer (status 0).
"""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
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
from kumo.core import KumoError, Profile
from kumo.core.errors import ConfigError
from kumo.sim.engine import SimConfig
from kumo.sim.plan import (
    Config,
    ConfigResult,
    PlanResult,
    Target,
    grid,
    parse_split,
    parse_sweep,
    parse_target,
    run_plan,
)
from kumo.traces import Trace


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)


def plan(
    trace: TraceOpt = None,
    fmt: FormatOpt = "kumo",
    throughputs: ThroughputsOpt = None,
    missing_throughput: MissingThroughputOpt = "drop",
    sweep: Annotated[list[str] | None, typer.Option(
        "--sweep", help="Sizes of one GPU model: MODEL=START:STOP:STEP\\[/PER_NODE] (STOP included) or "
                        "MODEL=N\\[/PER_NODE]; once per swept model.")] = None,  # "\\[": not Rich markup
    base_cluster: Annotated[str | None, typer.Option(
        "--base-cluster", help="Models that are not swept, as a spec like 'p100=8,k80=8'.")] = None,
    policies: Annotated[str, typer.Option("--policies", help="Order policies to try, comma-separated.")] = "las",
    quota_split: Annotated[str | None, typer.Option(
        "--quota-split", help="Shares of every GPU model's quota to give one queue: QUEUE=START:STOP:STEP "
                              "(e.g. geniac=0.2:0.8:0.2) or QUEUE=SHARE; the other queues split the rest, "
                              "all in one cohort.")] = None,
    target: Annotated[str | None, typer.Option(
        "--target", help="METRIC<=VALUE or METRIC>=VALUE over the summary, or queue:NAME:METRIC<=VALUE; "
                         "VALUE in seconds or as 90s, 30m, 2h30m, 1d.")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", help="Simulations run at once, in separate processes (default: the CPU count).")] = None,
    checkpoint_on_preempt: CheckpointOnPreemptOpt = False,
    grace: GraceOpt = 600.0,
    estimates: EstimatesOpt = "none",
    tick: TickOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as one JSON object.")] = False,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Folder for plan.json, plan.csv and plan.png.")] = None,
) -> None:
    """Find the smallest cluster (GPUs per model) and policy that meet a target on a trace."""
    try:
        if trace is None or target is None or not sweep:
            missing = "--trace" if trace is None else "--target" if target is None else "--sweep"
            raise KumoError(f"{missing} is required")
        goal = parse_target(target)
        names = list(dict.fromkeys(p.strip() for p in policies.split(",") if p.strip()))
        split = parse_split(quota_split) if quota_split else None
        configs = grid([parse_sweep(s) for s in sweep], names, base_cluster, split)
        base = SimConfig(profile=Profile(order=names[0] if names else "las", preemption_min_runtime_s=grace),
                         tick_s=tick, checkpoint_on_preempt=checkpoint_on_preempt, estimates=estimates)
        n = (os.cpu_count() or 1) if workers is None else workers
        if n < 1:
            raise ConfigError(f"--workers must be at least 1, got {n}")
        loaded = load_trace(trace, fmt, throughputs, missing_throughput)
        started = time.perf_counter()
        result = _run(loaded, configs, base, goal, n, quiet=as_json)
        report = plan_report(result, loaded.jobs, loaded.notes, trace=str(trace), format=fmt, workers=n,
                             wall_s=round(time.perf_counter() - started, 3))
        if out is not None:
            report["outputs"] = [str(p) for p in write_plan(result, report, out, title=f"{trace.name} ({fmt})")]
    except (KumoError, OSError) as e:
        typer.echo("error: " + " ".join(str(e).split()), err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(report))
    else:
        render(report, result, Console(highlight=False))


def _run(trace: Trace, configs: list[Config], base: SimConfig, target: Target, workers: int,
         quiet: bool) -> PlanResult:
    console = Console(stderr=True)
    if quiet or not console.is_terminal:
        return run_plan(trace, configs, base, target, workers)
    with Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TextColumn("configurations"),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("plan", total=len(configs))
        return run_plan(trace, configs, base, target, workers,
                        progress=lambda done, total: bar.update(task, completed=done))


def plan_report(result: PlanResult, jobs: list[Any], notes: list[str], **extra: Any) -> dict[str, Any]:
    """The plan as one JSON-ready dict; ``extra`` (trace, format, workers, wall_s) goes in as given."""
    best = result.best
    closest = result.closest()
    return {
        **extra, "jobs": len(jobs),
        "target": str(result.target), "target_metric": result.target.metric, "target_queue": result.target.queue,
        "target_programme": result.target.programme,
        "target_op": result.target.op, "target_bound": result.target.value,
        "configs": [r.to_dict() for r in result.results],
        "best": best.to_dict() if best else None,
        "closest": None if best or closest is None else closest.to_dict(),
        "notes": notes,
    }


# --------------------------------------------------------------------------- human output


def _fmt(value: float | None, seconds: bool) -> str:
    if value is None:
        return "—"
    return f"{value / 3600:,.2f} h" if seconds else f"{value:,.3f}"


def render(report: dict[str, Any], result: PlanResult, console: Console) -> None:
    target = result.target
    console.print(f"[bold]{escape(report['trace'])}[/] ({report['format']}, {report['jobs']} jobs): "
                  f"{len(result.results)} configurations, target [bold]{escape(str(target))}[/]")
    t = Table(show_header=True, header_style="bold")
    scope_name = target.queue or target.programme
    metric = f"{target.metric} ({scope_name})" if scope_name else target.metric
    split = any(r.config.quota for r in result.results)
    cols = ["GPUs per model", "GPUs", "policy", *(["quota split"] if split else []), metric, "avg JCT",
            "p95 queueing", "utilization", "meets"]
    for col in cols:
        t.add_column(col, justify="left" if col in ("GPUs per model", "policy", "quota split") else "right")
    for r in result.results:
        f = r.figures
        meets = "[green]✓[/]" if r.meets else "[red]✗[/]" + (f" ({r.why_not})" if r.why_not else "")
        t.add_row(r.config.spec_string(), str(r.config.total_gpus), r.config.policy,
                  *([r.config.quota_string()] if split else []), _fmt(r.value, target.seconds),
                  _fmt(f["avg_jct_s"], True), _fmt(f["queueing_s_p95"], True), f"{f['utilization']:.3f}", meets)
    console.print(t)
    for note in report["notes"]:
        console.print(f"note: {escape(note)}")
    console.print(escape(conclusion(result)))
    console.print(f"simulated in {report['wall_s']:.1f} s with {report['workers']} worker(s)")
    if "outputs" in report:
        console.print(escape("wrote " + ", ".join(report["outputs"])))


def conclusion(result: PlanResult) -> str:
    """The answer, in one line."""
    target, best = result.target, result.best
    if best is not None:
        return (f"smallest configuration meeting {target}: {best.config.spec_string()} with {best.config.policy}"
                f"{_quota(best.config)} ({_gpus(best.config.total_gpus)})")
    closest = result.closest()
    if closest is None:
        return f"no configuration meets {target}; none gave {target.metric} a value"
    return (f"no configuration meets {target}; the best reached {_fmt(closest.value, target.seconds)} "
            f"({closest.config.spec_string()} with {closest.config.policy}{_quota(closest.config)})")


def _quota(config: Config) -> str:
    return f", quota split {config.quota_string()}" if config.quota else ""


# --------------------------------------------------------------------------- files


def write_plan(result: PlanResult, report: dict[str, Any], folder: Path, title: str = "") -> list[Path]:
    """``plan.json``, ``plan.csv`` (one row per configuration) and ``plan.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "plan.json", folder / "plan.csv", folder / "plan.png"]
    written[0].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    _write_csv(result, written[1])
    _plot(result, written[2], title)
    return written


def _write_csv(result: PlanResult, path: Path) -> None:
    models = list(dict.fromkeys(m for r in result.results for m in r.config.gpus))
    rows = []
    for r in result.results:
        row = r.to_dict()
        gpus = row.pop("gpus")
        rows.append({"spec": row.pop("spec"), **{f"gpus_{m}": gpus.get(m, 0) for m in models}, **row})
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["spec"])
        writer.writeheader()
        writer.writerows(rows)


def _plot(result: PlanResult, path: Path, title: str) -> None:
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - depends on the installation
        raise ConfigError("plots need matplotlib: pip install 'kumo[plots]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    target = result.target
    scale = 3600.0 if target.seconds else 1.0
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for policy, points in _lines(result.results, target).items():
        ax.plot([x for x, _ in points], [y / scale for _, y in points], marker="o", label=policy)
    ax.axhline(target.value / scale, color="tab:red", linestyle="--", label=f"target {target}")
    best = result.best
    if best is not None and best.value is not None:
        label = f"chosen: {best.config.spec_string()}, {best.config.policy}{_quota(best.config)}"
        ax.plot([best.config.total_gpus], [best.value / scale], marker="*", markersize=18, color="gold",
                markeredgecolor="black", linestyle="none", label=label)
    ax.set_xlabel("total GPUs")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    scope = f", queue {target.queue}" if target.queue else f", programme {target.programme}" if target.programme else ""
    ax.set_ylabel(target.metric + (" (h)" if target.seconds else "") + scope)
    ax.set_title(f"{title}: {len(result.results)} configurations", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _lines(results: list[ConfigResult], target: Target) -> dict[str, list[tuple[int, float]]]:
    """Per policy, the best value reached at each total GPU count (several mixes may share a total)."""
    better = min if target.op == "<=" else max
    by: dict[str, dict[int, float]] = {}
    for r in results:
        if r.value is None:
            continue
        at = by.setdefault(r.config.policy + (f" {r.config.quota_string()}" if r.config.quota else ""), {})
        total = r.config.total_gpus
        at[total] = better(at[total], r.value) if total in at else r.value
    return {p: sorted(at.items()) for p, at in by.items()}


def _gpus(n: int) -> str:
    return f"{n} GPU" if n == 1 else f"{n} GPUs"
