"""From a project's grants to its :class:`kumo.core.GrantStanding`: may its new jobs run, and how
far is its grant from plan?

A programme's :class:`GrantPolicy` says what happens when a project has no grant to charge:

- ``required``: a project of the programme must hold a grant (without one its jobs wait); when
  false (the default), a project that never had a grant runs unmetered against any grant;
- ``on_exhausted``: ``hold`` (the default) — a project whose grants are spent, expired or revoked
  has its new jobs held, with a sentence saying which grant and what to ask for — or
  ``preemptible`` — its jobs run, as preemptible work charged at the discounted tier;
- ``stop_running``: accounting stops a held project's running jobs (off by default: accounting
  never kills running work unless the programme says so).

A project with a live grant (active, started, not ended, not spent) is funded; the grant charged
first (the one ending first) gives its ``pace`` (:func:`kumo.grants.pacing.scheduling_pace`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from kumo.core.errors import InvalidValueError
from kumo.core.model import GrantStanding
from kumo.grants.pacing import scheduling_pace

ON_EXHAUSTED = ("hold", "preemptible")


@dataclass(frozen=True, slots=True)
class GrantPolicy:
    """A programme's rules for projects without a grant to charge (see the module docstring)."""

    required: bool = False
    on_exhausted: str = "hold"
    stop_running: bool = False

    def __post_init__(self) -> None:
        for name in ("required", "stop_running"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidValueError("grant policy", f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.on_exhausted not in ON_EXHAUSTED:
            raise InvalidValueError(
                "grant policy", f"on_exhausted must be one of {', '.join(ON_EXHAUSTED)}, got {self.on_exhausted!r}")

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> GrantPolicy:
        """The policy stored as JSON (``{}`` or None: the defaults); unknown keys are refused."""
        data = dict(data or {})
        unknown = sorted(set(data) - {"required", "on_exhausted", "stop_running"})
        if unknown:
            raise InvalidValueError("grant policy", f"unknown keys {unknown}; known: required, on_exhausted, "
                                                    "stop_running")
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        return {"required": self.required, "on_exhausted": self.on_exhausted, "stop_running": self.stop_running}


class GrantState(Protocol):
    """What a standing reads of a grant: a stored ``Grant`` row has all of it."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def amount(self) -> Decimal: ...
    @property
    def currency(self) -> str: ...
    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime: ...
    @property
    def status(self) -> str: ...
    @property
    def revoked_at(self) -> datetime | None: ...


def _unit(grant: GrantState) -> str:
    return "GPU-hours" if grant.currency == "gpu_hours" else grant.currency


def _amount(value: Decimal) -> str:
    text = f"{value:,.2f}"
    return text[:-3] if text.endswith(".00") else text


def project_standing(project: str, programme: str, policy: GrantPolicy, grants: Sequence[GrantState],
                     used: Mapping[int, Decimal], now: datetime) -> GrantStanding | None:
    """The project's standing at ``now`` (None: not governed by grants — no grant ever, none required)."""
    known = [g for g in grants if str(g.status) not in ("requested", "denied")]
    live = [g for g in known if str(g.status) in ("active", "exhausted") and g.start <= now < g.end
            and used.get(g.id, Decimal(0)) < g.amount]
    if live:
        first = min(live, key=lambda g: (g.end, g.id))
        return GrantStanding(project, pace=scheduling_pace(first, used.get(first.id, Decimal(0)), now))
    if not known and not policy.required:
        return None
    if policy.on_exhausted == "preemptible" and known:
        return GrantStanding(project, preemptible_only=True)
    return GrantStanding(project, hold=_why(project, programme, known, used, now), stop_running=policy.stop_running)


def _why(project: str, programme: str, known: Sequence[GrantState], used: Mapping[int, Decimal],
         now: datetime) -> str:
    if not known:
        return (f"project {project} has no grant and programme {programme} requires one; "
                f"request one with: kumo grants request --project {project} ...")
    upcoming = [g for g in known if g.start > now and str(g.status) == "active"]
    if upcoming:
        g = min(upcoming, key=lambda g: (g.start, g.id))
        return f"grant {g.name} (#{g.id}) of project {project} starts on {g.start:%Y-%m-%d %H:%M} UTC"
    g = max(known, key=lambda g: (min(g.end, now), g.id))  # the most recent one
    spent = used.get(g.id, Decimal(0))
    if str(g.status) == "revoked":
        when = f" on {g.revoked_at:%Y-%m-%d}" if g.revoked_at is not None else ""
        return (f"grant {g.name} (#{g.id}) of project {project} was revoked{when}; "
                f"ask a programme manager of {programme} for a new grant")
    if spent >= g.amount:
        return (f"grant {g.name} (#{g.id}) of project {project} is spent: {_amount(spent)} of "
                f"{_amount(g.amount)} {_unit(g)} used; ask a programme manager of {programme} for a top-up: "
                f"kumo grants topup {g.id} --amount ...")
    return (f"grant {g.name} (#{g.id}) of project {project} ended on {g.end:%Y-%m-%d}; "
            f"ask a programme manager of {programme} for a renewal: kumo grants renew {g.id} --until ...")
