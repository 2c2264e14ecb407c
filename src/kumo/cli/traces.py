"""``kumo trace``: make and convert traces for the simulator.

    kumo trace generate --jobs N --seed S [--arrival poisson|bursty] [--rate-per-h R]
                        [--programmes research=0.5,industry=0.3] [--out FILE.jsonl|.parquet]
    kumo trace convert --trace PATH --format FORMAT --out FILE.jsonl|.parquet

Both write kumo's own format (``docs/concepts/traces.md``), which ``kumo sim --format kumo`` reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from kumo.core import KumoError
from kumo.core.errors import InvalidValueError
from kumo.traces import READERS, Trace, read_trace
from kumo.traces.kumo_format import write_jsonl, write_parquet
from kumo.traces.synthetic import generate as synthesize

trace_app = typer.Typer(name="trace", help="Make and convert traces for the simulator.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(trace_app)


def _programmes(text: str | None) -> dict[str, float] | None:
    if text is None:
        return None
    out: dict[str, float] = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        try:
            out[name.strip()] = float(weight) if weight else 1.0
        except ValueError:
            raise InvalidValueError("--programmes", f"expected NAME=WEIGHT, got {part!r}") from None
    return out


def _write(trace: Trace, out: Path) -> None:
    if out.suffix == ".parquet":
        write_parquet(trace, out)
    elif out.suffix in (".jsonl", ".json"):
        write_jsonl(trace, out)
    else:
        raise InvalidValueError("--out", f"expected a .jsonl or .parquet file, got {out.name!r}")


def _fail(e: Exception) -> typer.Exit:
    typer.echo("error: " + " ".join(str(e).split()), err=True)
    return typer.Exit(2)


@trace_app.command("generate")
def generate(
    jobs: Annotated[int, typer.Option("--jobs", help="Number of jobs.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed: the same seed gives the same trace.")] = 0,
    arrival: Annotated[str, typer.Option("--arrival", help="poisson or bursty.")] = "poisson",
    rate_per_h: Annotated[float, typer.Option("--rate-per-h", help="Mean arrivals per hour.")] = 60.0,
    programmes: Annotated[str | None, typer.Option(
        "--programmes", help="NAME=WEIGHT,... (each a queue and project); default research, industry, education.")
    ] = None,
    median_s: Annotated[float, typer.Option("--median-s", help="Median job run time (s).")] = 3600.0,
    out: Annotated[Path, typer.Option("--out", help="Where to write it (.jsonl or .parquet).")] = Path("trace.jsonl"),
) -> None:
    """Generate a seeded synthetic workload in kumo's trace format."""
    try:
        trace = synthesize(jobs, seed, arrival=arrival, rate_per_h=rate_per_h, programmes=_programmes(programmes),
                           median_s=median_s)
        _write(trace, out)
    except (KumoError, OSError) as e:
        raise _fail(e) from None
    typer.echo(f"wrote {len(trace.jobs)} jobs to {out}")


@trace_app.command("convert")
def convert(
    trace: Annotated[Path, typer.Option("--trace", help="Trace file (a folder for alibaba2020).")],
    fmt: Annotated[str, typer.Option("--format", help=f"Its format: {', '.join(READERS)}.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write it (.jsonl or .parquet).")],
    throughputs: Annotated[Path | None, typer.Option("--throughputs", help="Gavel's throughput table.")] = None,
) -> None:
    """Read a trace in any supported format and write it in kumo's format."""
    options: dict[str, Any] = {"throughputs": throughputs} if fmt == "gavel" else {}
    try:
        loaded = read_trace(trace, fmt, **options)
        _write(loaded, out)
    except (KumoError, OSError) as e:
        raise _fail(e) from None
    typer.echo(f"wrote {len(loaded.jobs)} jobs to {out}" + (f" ({loaded.dropped} dropped)" if loaded.dropped else ""))
