"""Helpers shared by the CSV trace readers (Philly, Helios, Alibaba) and the generator: reading
rows with file/line/column errors, cleaning names into valid core names, mapping a GPU count to a
gang, and turning parsed rows into sorted :class:`~kumo.traces.base.TraceJob` objects."""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kumo.core import Job
from kumo.core.errors import ValidationError
from kumo.traces.base import TraceFormatError, TraceJob

_BAD_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.:/-]")
_BAD_MODEL_CHARS = re.compile(r"[^a-z0-9_-]")


# --------------------------------------------------------------------------- shared helpers


def gang(num_gpus: int, gpus_per_node: int = 8) -> tuple[int, int]:
    """``(workers, gpus per worker)`` for a job of ``num_gpus`` whole GPUs.

    ``gang(4) == (1, 4)``, ``gang(32) == (4, 8)``, ``gang(12) == (12, 1)`` (12 is not a multiple
    of 8: twelve one-GPU workers, which the scheduler may pack as 8 + 4).
    """
    if num_gpus <= gpus_per_node:
        return 1, num_gpus
    if num_gpus % gpus_per_node == 0:
        return num_gpus // gpus_per_node, gpus_per_node
    return num_gpus, 1


def clean_name(text: str, fallback: str = "unknown") -> str:
    """``text`` as a valid core name: bad characters become ``_``, at most 128 characters."""
    name = _BAD_NAME_CHARS.sub("_", text.strip())
    if not name:
        return fallback
    if not name[0].isalnum():
        name = "x" + name
    return name[:128]


def clean_model(text: str) -> str:
    """``text`` as a GPU model name: ``'V100M32'`` → ``'v100m32'``."""
    model = _BAD_MODEL_CHARS.sub("_", text.strip().lower())
    if model and not model[0].isalnum():
        model = "x" + model
    return model[:32]


def unique(name: str, seen: set[str]) -> str:
    """``name``, or ``name-2``, ``name-3``, ... if already in ``seen``; adds the result to ``seen``."""
    out, n = name, 1
    while out in seen:
        n += 1
        out = f"{name[:120]}-{n}"
    seen.add(out)
    return out


class Row:
    """One CSV row: typed access to its cells, raising :class:`TraceFormatError` on bad values."""

    __slots__ = ("cells", "file", "index", "line")

    def __init__(self, file: str, line: int, cells: list[str], index: dict[str, int]) -> None:
        self.file, self.line, self.cells, self.index = file, line, cells, index

    def error(self, column: str, problem: str) -> TraceFormatError:
        return TraceFormatError(self.file, problem, line=self.line, column=column)

    def text(self, column: str) -> str:
        return self.cells[self.index[column]].strip()

    def integer(self, column: str, default: int | None = None) -> int:
        """A whole number >= 0 (``'8'`` or ``'8.0'``); an empty cell is ``default`` if given."""
        text = self.text(column)
        if not text and default is not None:
            return default
        value = _float(text)
        if not (math.isfinite(value) and value >= 0 and value == int(value)):
            raise self.error(column, f"expected a whole number >= 0, got {text!r}")
        return int(value)

    def number(self, column: str, default: float | None = None) -> float:
        """A finite number >= 0; an empty cell is ``default`` if given."""
        text = self.text(column)
        if not text and default is not None:
            return default
        value = _float(text)
        if not (math.isfinite(value) and value >= 0):
            raise self.error(column, f"expected a number >= 0, got {text!r}")
        return value

    def time(self, column: str) -> float:
        """A ``YYYY-MM-DD HH:MM:SS`` date-time (taken as UTC) in seconds since the epoch."""
        text = self.text(column)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise self.error(column, f"expected a date-time like '2017-10-09 07:01:55', got {text!r}") from None
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def csv_rows(path: Path, required: Sequence[str], header: bool | None = True) -> Iterator[Row]:
    """Rows of a CSV file. ``header=True``: the first line names the columns and must hold
    ``required``; ``False``: columns are ``required`` in order; ``None``: a header if the first
    cell is ``required[0]``, else none. Blank lines are skipped."""
    file = path.name
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as e:
        raise TraceFormatError(file, f"cannot open: {e.strerror}") from None
    with handle:
        reader = csv.reader(handle)
        index = {c: i for i, c in enumerate(required)}
        width = len(required)
        first = True
        for cells in _records(file, reader):
            if not any(c.strip() for c in cells):
                continue
            if first:
                first = False
                if header is True or (header is None and cells[0].strip() == required[0]):
                    index = _header_index(file, reader.line_num, cells, required)
                    width = max(index.values()) + 1
                    continue
            if len(cells) < width:
                problem = f"expected at least {width} columns, got {len(cells)}"
                raise TraceFormatError(file, problem, line=reader.line_num)
            yield Row(file, reader.line_num, cells, index)


def _records(file: str, reader: Any) -> Iterator[list[str]]:
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except UnicodeDecodeError as e:
            raise TraceFormatError(file, f"expected UTF-8 text, found byte {e.object[e.start]:#04x}") from None
        except csv.Error as e:
            raise TraceFormatError(file, f"not a readable CSV file ({e})", line=reader.line_num) from None
        yield cells


def _header_index(file: str, line: int, cells: list[str], required: Sequence[str]) -> dict[str, int]:
    names = [c.strip() for c in cells]
    missing = [c for c in required if c not in names]
    if missing:
        raise TraceFormatError(
            file, f"missing column {missing[0]!r}; the header has {', '.join(names)}", line=line, column=missing[0]
        )
    return {c: names.index(c) for c in required}


@dataclass(slots=True)
class Pending:
    """A mapped job before the trace's time origin is known: ``submit`` is absolute seconds."""

    line: int
    submit: float
    work_s: float
    fields: dict[str, Any]  # Job keyword arguments other than submit_time


@dataclass(slots=True)
class Selection:
    """Which mapped jobs to keep: a submission window (seconds after the first submission) and a count."""

    limit: int | None = None
    start: float | None = None
    end: float | None = None
    notes: list[str] = field(default_factory=list)

    def apply(self, pending: list[Pending]) -> list[Pending]:
        """Rebase submissions to the earliest (or to ``start``), keep the window, then the first ``limit``."""
        if not pending:
            return pending
        origin = min(p.submit for p in pending)
        for p in pending:
            p.submit -= origin
        kept = pending
        if self.start is not None or self.end is not None:
            lo = self.start or 0.0
            hi = math.inf if self.end is None else self.end
            kept = [p for p in pending if lo <= p.submit < hi]
            for p in kept:
                p.submit -= lo
            self.notes.append(f"kept the {len(kept)} of {len(pending)} jobs submitted in [{lo:g} s, {hi:g} s)")
        kept.sort(key=lambda p: (p.submit, p.line))
        if self.limit is not None and len(kept) > self.limit:
            self.notes.append(f"kept the first {self.limit} of {len(kept)} jobs by submission time")
            kept = kept[: self.limit]
        return kept


def build(file: str, pending: list[Pending], selection: Selection) -> list[TraceJob]:
    """TraceJobs of the selected pending jobs; a core validation error names the file and line."""
    if not pending:
        raise TraceFormatError(file, "no jobs")
    out = []
    for p in selection.apply(pending):
        try:
            out.append(TraceJob(Job(**p.fields, submit_time=p.submit), p.work_s))
        except TraceFormatError:
            raise
        except ValidationError as e:
            raise TraceFormatError(file, str(e), line=p.line) from None
    if not out:
        raise TraceFormatError(file, "no jobs in the selected window")
    return out


def check_selection(limit: int | None, start: float | None, end: float | None) -> Selection:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise TraceFormatError("options", f"limit must be a positive integer, got {limit!r}")
    for name, value in (("start", start), ("end", end)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
            raise TraceFormatError("options", f"{name} must be a number of seconds >= 0, got {value!r}")
    if start is not None and end is not None and end <= start:
        raise TraceFormatError("options", f"end ({end}) must be after start ({start})")
    return Selection(limit, start, end)


# --------------------------------------------------------------------------- the reader


def _float(text: str) -> float:
    """``float(text)``, or NaN where it is not a number."""
    try:
        return float(text)
    except ValueError:
        return math.nan
