"""Burn-down, forecast and pace of a grant, from its charges per UTC day.

The plan of a grant is linear: by ``now`` it expects to have spent
``expected_fraction = (now - start) / (end - start)`` of its amount (0 before the start, 1 after
the end). :func:`pace` compares what was spent with that: ``actual fraction / expected fraction``,
1.0 on plan, above 1 spending faster, below 1 slower (the scheduler's pacing input).

:func:`forecast` projects from the *recent burn rate*: the charges of the last ``window_days``
days (7 by default; only the part of the window after the grant's start counts) divided by the
window's length. A day's charge is taken as spread evenly over that day (over its elapsed part
for today), since usage records are cut at UTC midnights and the store sums them per day. At that
rate the grant runs out at ``projected_exhaustion`` (None if not before its end), and spends
``projected_spend_at_end`` by its end; ``under_spend`` warns when that is below 90% of the amount
(``under_spend_below``) while the grant is running.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Protocol

from kumo.core.errors import InvalidValueError
from kumo.grants.money import money
from kumo.grants.ratecard import utc

PACE_CAP = 100.0
""":func:`pace` never exceeds this (spending before the plan expects anything is "far ahead")."""

UNDER_SPEND_BELOW = Decimal("0.9")
WINDOW_DAYS = 7
_DAY = timedelta(days=1)
_US = timedelta(microseconds=1)


class PlanLike(Protocol):
    """What pacing reads from a grant (a stored ``Grant`` row or :class:`~kumo.grants.GrantTerms`)."""

    @property
    def amount(self) -> Decimal: ...
    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime: ...


class ForecastLike(PlanLike, Protocol):
    @property
    def id(self) -> int: ...
    @property
    def currency(self) -> str: ...


def expected_fraction(start: datetime, end: datetime, now: datetime) -> float:
    """The share of a grant the linear plan expects spent by ``now``, from 0.0 to 1.0."""
    if now <= start:
        return 0.0
    if now >= end:
        return 1.0
    return (now - start) / (end - start)


def pace(grant: PlanLike, used: Decimal, now: datetime) -> float:
    """Actual over expected fraction spent: 1.0 on plan, 2.0 twice as fast, 0.5 half as fast.

    Before the start: 1.0 if nothing was spent, else :data:`PACE_CAP`; never above the cap.
    """
    expected = expected_fraction(grant.start, grant.end, utc(now, "now"))
    actual = float(used / grant.amount) if grant.amount > 0 else math.inf
    if expected == 0.0:
        return 1.0 if actual <= 0 else PACE_CAP
    return min(max(actual, 0.0) / expected, PACE_CAP)


@dataclass(frozen=True, slots=True)
class BurnPoint:
    """The state of a grant at the end of ``day`` (at ``now`` for today).

    ``planned`` is what the linear plan expects spent by then.
    """

    day: date
    used: Decimal
    remaining: Decimal
    planned: Decimal


def burn_down(grant: PlanLike, daily: Mapping[date, Decimal], now: datetime) -> list[BurnPoint]:
    """One point per UTC day from the grant's start to ``now`` (or its end, if earlier)."""
    when = utc(now, "now")
    last = min(when, grant.end - _US)
    if last < grant.start:
        return []
    day = grant.start.date()
    used = sum((charge for d, charge in daily.items() if d < day), Decimal(0))
    points = []
    while day <= last.date():
        used += daily.get(day, Decimal(0))
        close = min(datetime(day.year, day.month, day.day, tzinfo=UTC) + _DAY, when, grant.end)
        planned = money(grant.amount * Decimal(expected_fraction(grant.start, grant.end, close)))
        points.append(BurnPoint(day, used, grant.amount - used, planned))
        day += _DAY
    return points


@dataclass(frozen=True, slots=True)
class Forecast:
    """Where a grant stands at ``now`` and where it is heading at its recent burn rate."""

    grant_id: int
    currency: str
    now: datetime
    amount: Decimal
    used: Decimal
    remaining: Decimal
    fraction_used: float
    expected_fraction: float
    pace: float
    window_days: int
    burn_rate_per_day: Decimal
    projected_exhaustion: datetime | None
    projected_spend_at_end: Decimal
    exhausted: bool
    under_spend: bool


def forecast(
    grant: ForecastLike,
    daily: Mapping[date, Decimal],
    now: datetime,
    *,
    window_days: int = WINDOW_DAYS,
    under_spend_below: Decimal = UNDER_SPEND_BELOW,
) -> Forecast:
    """The grant's forecast from its charges per UTC day (``daily``; see the module's docstring)."""
    when = utc(now, "now")
    if isinstance(window_days, bool) or not isinstance(window_days, int) or window_days < 1:
        raise InvalidValueError("window_days", f"must be a positive integer, got {window_days!r}")
    used = sum(daily.values(), Decimal(0))
    remaining = grant.amount - used
    lo = max(when - window_days * _DAY, grant.start)
    hi = min(when, grant.end)
    rate_per_us = Decimal(0)
    if hi > lo:
        rate_per_us = _spread(daily, lo, hi, when) / Decimal((hi - lo) // _US)
    running = grant.start < when < grant.end
    left_us = Decimal((grant.end - when) // _US) if running else Decimal(0)
    projected = money(used + rate_per_us * left_us)
    exhaustion = None
    if remaining > 0 and rate_per_us > 0 and running and remaining / rate_per_us < left_us:
        exhaustion = when + timedelta(microseconds=int(remaining / rate_per_us))
    return Forecast(
        grant_id=grant.id, currency=grant.currency, now=when, amount=grant.amount, used=used, remaining=remaining,
        fraction_used=float(used / grant.amount), expected_fraction=expected_fraction(grant.start, grant.end, when),
        pace=pace(grant, used, when), window_days=window_days,
        burn_rate_per_day=money(rate_per_us * Decimal(_DAY // _US)), projected_exhaustion=exhaustion,
        projected_spend_at_end=projected, exhausted=remaining <= 0,
        under_spend=running and projected < grant.amount * under_spend_below,
    )  # fmt: skip


def _spread(daily: Mapping[date, Decimal], lo: datetime, hi: datetime, now: datetime) -> Decimal:
    """The charges falling in ``[lo, hi)``, each day's charge spread evenly over the day (its elapsed part)."""
    total = Decimal(0)
    for day, charge in daily.items():
        begin = datetime(day.year, day.month, day.day, tzinfo=UTC)
        close = min(begin + _DAY, now)
        overlap = min(close, hi) - max(begin, lo)
        if close > begin and overlap > timedelta(0):
            total += charge * Decimal(overlap // _US) / Decimal((close - begin) // _US)
    return total
