"""Options that ``kumo sim`` and ``kumo plan`` share, as ``Annotated`` aliases, and loading the
trace they name (in the spirit of FastAPI's dependency aliases: one definition, many commands)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from kumo.core import KumoError
from kumo.traces import READERS, Trace, read_trace

TraceOpt = Annotated[Path | None, typer.Option("--trace", help="Trace file (a folder for alibaba2020).")]
FormatOpt = Annotated[str, typer.Option("--format", help=f"Trace format: {', '.join(READERS)}.")]
ThroughputsOpt = Annotated[Path | None, typer.Option(
    "--throughputs", help="Gavel's throughput table (simulation_throughputs.json).")]
MissingThroughputOpt = Annotated[str, typer.Option(
    "--missing-throughput", help="Gavel jobs without a throughput entry: drop or clamp.")]
CheckpointOnPreemptOpt = Annotated[bool, typer.Option(
    "--checkpoint-on-preempt/--no-checkpoint-on-preempt",
    help="A preempted job saves its work as it stops (Gavel's assumption).")]
GraceOpt = Annotated[float, typer.Option(
    "--preemption-grace", help="Seconds a job runs before it may be preempted.")]
EstimatesOpt = Annotated[str, typer.Option(
    "--estimates", help="Walltime estimates the scheduler sees: none, or exact (the real run time).")]
TickOpt = Annotated[float | None, typer.Option(
    "--tick", help="Seconds between rounds while jobs wait (default: 360 for LAS and SRTF, none otherwise; 0: none).")]


def load_trace(trace: Path | None, fmt: str, throughputs: Path | None, missing_throughput: str) -> Trace:
    """The trace named by ``--trace``/``--format`` (Gavel's options passed to its reader only)."""
    if trace is None:
        raise KumoError("--trace is required")
    options: dict[str, Any] = {}
    if fmt == "gavel":
        options = {"throughputs": throughputs, "missing_throughput": missing_throughput}
    return read_trace(trace, fmt, **options)
