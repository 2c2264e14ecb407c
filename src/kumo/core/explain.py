"""Why a job waits: typed reasons with a stable ``code`` and a sentence a person can act on.

A cycle blocks thousands of jobs; their sentences are only written when someone reads them
(``detail`` is rendered on first access from values captured at the time of the decision).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kumo.core.resources import format_amount, format_duration

QUOTA = "quota"
PLACEMENT = "placement"
BACKFILL = "backfill"
PREEMPTION = "preemption"
ORDER = "order"
REJECTED = "rejected"
LOST = "node-lost"
MIGRATION = "migration"
GRANT = "grant"


class Reason:
    """A reason a job waits or was rejected: ``code`` is stable, ``detail`` is the sentence."""

    __slots__ = ("_args", "_detail", "_render", "code")

    def __init__(self, code: str, detail: str | None = None, render: Callable[..., str] | None = None,
                 *args: Any) -> None:
        self.code = code
        self._detail = detail
        self._render = render
        self._args = args

    @property
    def detail(self) -> str:
        if self._detail is None:
            assert self._render is not None
            self._detail = self._render(*self._args)
        return self._detail

    @property
    def message(self) -> str:
        return f"{self.code}: {self.detail}"

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"Reason({self.code!r}, {self.detail!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reason) and (self.code, self.detail) == (other.code, other.detail)

    def __hash__(self) -> int:
        return hash((self.code, self.detail))


def quota(detail: str) -> Reason:
    return Reason(QUOTA, detail)


def placement(detail: str) -> Reason:
    return Reason(PLACEMENT, detail)


def quota_blocked(flavor: str, need: int, holder: str, parts: tuple[Any, ...]) -> Reason:
    """Over quota, rendered lazily from :meth:`QuotaTree.describe_parts` values."""
    return Reason(QUOTA, None, _render_quota, flavor, need, holder, parts)


def _render_quota(flavor: str, need: int, holder: str, parts: tuple[Any, ...]) -> str:
    return f"needs {format_amount(flavor, need)} {flavor}; {holding(flavor, holder, parts)}"


def holding(flavor: str, holder: str, parts: tuple[Any, ...]) -> str:
    """``'queue nlp-lab holds 64/64 gpu.h200 and cohort geniac has no idle quota'``."""
    used, nominal, limit, cohort, idle = parts
    text = f"{holder} holds {format_amount(flavor, used)}/{format_amount(flavor, nominal)} {flavor}"
    if limit is not None:
        return text + f" and may borrow at most {format_amount(flavor, limit)}"
    if cohort is None:
        return text
    if idle <= 0:
        return text + f" and cohort {cohort} has no idle quota"
    return text + f" and cohort {cohort} has {format_amount(flavor, idle)} idle"


def backfill(holder: str, pool: str, start_in: float) -> Reason:
    return Reason(BACKFILL, None, _render_backfill, holder, pool, start_in)


def _render_backfill(holder: str, pool: str, start_in: float) -> str:
    return (f"would delay job {holder}, which holds a reservation on {pool} starting in "
            f"{format_duration(start_in)}; a walltime estimate under that would let it backfill")


def combine(reasons: list[Reason]) -> Reason:
    """One reason for several options (GPU models, regions): the first code, every detail."""
    if len(reasons) == 1:
        return reasons[0]
    codes = sorted({r.code for r in reasons})
    code = reasons[0].code if len(codes) == 1 else "+".join(codes)
    return Reason(code, None, _render_combined, tuple(reasons))


def _render_combined(reasons: tuple[Reason, ...]) -> str:
    unique: list[Reason] = []
    for r in reasons:
        if r not in unique:
            unique.append(r)
    first = unique[0].code
    return "; ".join(r.detail if r.code == first else r.message for r in unique)
