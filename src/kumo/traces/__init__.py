"""Trace readers: public GPU-cluster workloads (and kumo's own format) as jobs for the simulator.

``read_trace(path, format, **options)`` dispatches to the reader named in :data:`READERS`; each
returns a :class:`Trace`. See ``docs/concepts/traces.md`` for how each format maps to kumo's job
model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kumo.traces.base import Trace, TraceFormatError, TraceJob


def _gavel(path: str | Path, **options: Any) -> Trace:
    from kumo.traces import gavel

    return gavel.read(path, **options)


def _philly(path: str | Path, **options: Any) -> Trace:
    from kumo.traces import philly

    return philly.read(path, **options)


def _alibaba2020(path: str | Path, **options: Any) -> Trace:
    from kumo.traces import alibaba

    return alibaba.read(path, **options)


def _helios(path: str | Path, **options: Any) -> Trace:
    from kumo.traces import helios

    return helios.read(path, **options)


def _kumo(path: str | Path, **options: Any) -> Trace:
    from kumo.traces import kumo_format

    return kumo_format.read(path, **options)


READERS: dict[str, Callable[..., Trace]] = {
    "philly": _philly,
    "gavel": _gavel,
    "alibaba2020": _alibaba2020,
    "helios": _helios,
    "kumo": _kumo,
}


def read_trace(path: str | Path, format: str, **options: Any) -> Trace:
    """Read ``path`` as ``format`` (a key of :data:`READERS`)."""
    reader = READERS.get(format)
    if reader is None:
        raise TraceFormatError(str(path), f"unknown trace format {format!r}; choose one of {', '.join(READERS)}")
    if not Path(path).exists():
        raise TraceFormatError(str(path), "no such file or directory")
    return reader(path, **options)


__all__ = ["READERS", "Trace", "TraceFormatError", "TraceJob", "read_trace"]
