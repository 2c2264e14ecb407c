"""Why a job waits: typed reasons with a stable ``code`` and a sentence a person can act on."""

from __future__ import annotations

from dataclasses import dataclass

from kumo.core.resources import format_duration


@dataclass(frozen=True, slots=True)
class Reason:
    """A reason a job waits or was rejected. ``code`` is stable; ``detail`` is the sentence."""

    code: str
    detail: str

    @property
    def message(self) -> str:
        return f"{self.code}: {self.detail}"

    def __str__(self) -> str:
        return self.message


QUOTA = "quota"
PLACEMENT = "placement"
BACKFILL = "backfill"
PREEMPTION = "preemption"
ORDER = "order"
REJECTED = "rejected"
LOST = "node-lost"


def quota(detail: str) -> Reason:
    return Reason(QUOTA, detail)


def placement(detail: str) -> Reason:
    return Reason(PLACEMENT, detail)


def backfill(holder: str, pool: str, start_in: float) -> Reason:
    return Reason(
        BACKFILL,
        f"would delay job {holder}, which holds a reservation on {pool} starting in "
        f"{format_duration(start_in)}; a walltime estimate under that would let it backfill",
    )


def combine(reasons: list[Reason]) -> Reason:
    """One reason for several options (GPU models, regions): the first code, every detail."""
    unique: list[Reason] = []
    for r in reasons:
        if r not in unique:
            unique.append(r)
    if len(unique) == 1:
        return unique[0]
    codes = {r.code for r in unique}
    code = unique[0].code if len(codes) == 1 else "+".join(sorted(codes))
    return Reason(code, "; ".join(r.detail if r.code == unique[0].code else r.message for r in unique))
