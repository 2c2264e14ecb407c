"""Metering: one job attempt's use of GPUs, as usage records charged to the project's grants.

:func:`meter` turns an :class:`AttemptUse` — a gang of ``gpu_milli`` milli-GPUs of one flavor
running in one tier over ``[start, end)`` (``end=None``: still running, metered up to ``now``) —
into :class:`UsageRecord` values. The interval is cut at every UTC midnight, every rate-card
version boundary and every start or end of a grant of the project, so that inside one record
the day, the price and the charged grant are constant; neighbouring pieces that agree on all
three are one record.

The grant charged for a moment is the one the job names (spec field ``grant``), if that grant
can take it; otherwise, among the project's grants that can, the one that ends first (ties: the
lowest id). A grant can take a moment inside its charging period (:class:`GrantTerms`) if it
allows the flavor and — for a credits grant — the rate card prices the flavor then, in the
grant's currency. Usage no grant can take is *unfunded* (``grant_id=None``).

Each record's ``gpu_seconds`` is ``gpu_milli / 1000 × seconds`` (a half GPU for an hour is 1,800
GPU-seconds). Its ``charge``:

- credits grant: GPU-hours × the price per GPU-hour, in the grant's currency;
- gpu_hours grant: the GPU-hours themselves (``currency="gpu_hours"``);
- unfunded: the list price (GPU-hours × price, in the version's currency) — what the use would
  have cost — or 0 with ``currency=""`` where the rate card has no price.

A charge is computed exactly from integer microseconds and rounded once to six places, half to
even. Metering is a pure function of the attempt, the rate card and the grants: metering the same
attempt again gives the same records (an open attempt metered later gets the same records for the
days already metered, and a longer last one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Protocol

from kumo.core.errors import InvalidValueError
from kumo.core.resources import GPU_MILLI, check_name, is_gpu_flavor
from kumo.grants.grant import GrantKind, GrantLike, GrantTerms
from kumo.grants.money import GPU_HOURS, MICRO, div_half_even
from kumo.grants.ratecard import RateCard, RateCardVersion, Tier, tier_of, utc

UNPRICED = ""
"""The ``currency`` of an unfunded record that the rate card does not price (its charge is 0)."""

_DAY = timedelta(days=1)
_US = timedelta(microseconds=1)
# charge in micro-units = gpu_milli × µs × price_micro / (1000 milli × 3600 s × 10⁶ µs)
_MILLI_US_PER_GPU_HOUR = GPU_MILLI * 3600 * 1_000_000
# GPU-hours in micro-units = gpu_milli × µs × 10⁶ / _MILLI_US_PER_GPU_HOUR
_MILLI_US_PER_MICRO_GPU_HOUR = _MILLI_US_PER_GPU_HOUR // 1_000_000


class AttemptLike(Protocol):
    """What :func:`meter` reads from an attempt (the store's ``AttemptSpan`` has it)."""

    @property
    def job_id(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def project(self) -> str: ...
    @property
    def user(self) -> str: ...
    @property
    def flavor(self) -> str: ...
    @property
    def gpu_milli(self) -> int: ...
    @property
    def tier(self) -> str: ...
    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime | None: ...
    @property
    def grant(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class AttemptUse:
    """One attempt of a job: ``gpu_milli`` milli-GPUs of ``flavor`` (the whole gang) in ``tier``
    over ``[start, end)``; ``end=None`` while it runs. ``grant`` is the grant the job names, if any."""

    job_id: str
    attempt: int
    project: str
    user: str
    flavor: str
    gpu_milli: int
    tier: Tier
    start: datetime
    end: datetime | None = None
    grant: int | None = None

    def __post_init__(self) -> None:
        where = f"attempt {self.job_id!r}#{self.attempt}"
        check_name(f"{where} job_id", self.job_id)
        check_name(f"{where} project", self.project)
        check_name(f"{where} user", self.user)
        for name in ("attempt", "gpu_milli"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InvalidValueError(where, f"{name} must be a positive integer, got {value!r}")
        if not is_gpu_flavor(check_name(f"{where} flavor", self.flavor)):
            raise InvalidValueError(where, f"flavor {self.flavor!r} is not a GPU flavor (gpu.<model>)")
        object.__setattr__(self, "tier", tier_of(self.tier, f"{where} tier"))
        start = utc(self.start, f"{where} start")
        object.__setattr__(self, "start", start)
        if self.end is not None:
            end = utc(self.end, f"{where} end")
            if end < start:
                raise InvalidValueError(where, f"end {end.isoformat()} is before start {start.isoformat()}")
            object.__setattr__(self, "end", end)
        if self.grant is not None and (isinstance(self.grant, bool) or not isinstance(self.grant, int)):
            raise InvalidValueError(where, f"grant must be a grant id or None, got {self.grant!r}")


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """``gpu_seconds`` of use over ``[start, end)`` and its ``charge`` to ``grant_id`` (None: unfunded).

    ``final`` is False for the provisional records of an attempt still running (metered up to
    ``now``); the store never lets them replace the records of the ended attempt.
    """

    job_id: str
    attempt: int
    project: str
    user: str
    flavor: str
    tier: Tier
    grant_id: int | None
    start: datetime
    end: datetime
    gpu_seconds: float
    charge: Decimal
    currency: str
    final: bool

    @property
    def t0(self) -> float:
        """``start`` in seconds since the Unix epoch (the store's key and clipping column)."""
        return self.start.timestamp()

    @property
    def t1(self) -> float:
        return self.end.timestamp()

    @property
    def gpu_hours(self) -> float:
        return self.gpu_seconds / 3600


def meter(
    use: AttemptLike, now: datetime, ratecard: RateCard, grants_of_project: Sequence[GrantTerms | GrantLike]
) -> list[UsageRecord]:
    """The usage records of ``use`` up to its end (or ``now`` while it runs), oldest first.

    ``grants_of_project`` are the grants of ``use.project`` (others must not be passed: they would
    be charged); grants that are not chargeable are ignored. See the module's docstring for the rules.
    """
    start = utc(use.start, "attempt start")
    final = use.end is not None
    end = utc(use.end, "attempt end") if use.end is not None else utc(now, "now")
    if end <= start:
        return []
    tier = tier_of(use.tier)
    flavor = use.flavor
    terms = [
        t for t in map(GrantTerms.of, grants_of_project)
        if t.chargeable and t.start < end and t.charge_end > start and t.allows(flavor)
    ]  # fmt: skip
    cuts = ratecard.boundaries(start, end)
    for t in terms:
        if start < t.start < end:
            cuts.append(t.start)
        if start < t.charge_end < end:
            cuts.append(t.charge_end)
    midnight = datetime(start.year, start.month, start.day, tzinfo=UTC) + _DAY
    while midnight < end:
        cuts.append(midnight)
        midnight += _DAY
    if not cuts:  # the usual case: one day, one price, one grant
        version = ratecard.version_at(start)
        price = None if version is None else version.price_micro(flavor, tier)
        grant = _charged(use.grant, terms, start, version, price)
        return [_record(use, tier, start, end, grant, version, price, final)]
    points = [start, *sorted(set(cuts)), end]

    # One piece per pair of neighbouring cuts; neighbours of one day, grant and version merge.
    pieces: list[_Piece] = []
    for lo, hi in pairwise(points):
        version = ratecard.version_at(lo)
        price = None if version is None else version.price_micro(flavor, tier)
        grant = _charged(use.grant, terms, lo, version, price)
        last = pieces[-1] if pieces else None
        if last is not None and last.grant is grant and last.version is version and last.start.date() == lo.date():
            last.end = hi
        else:
            pieces.append(_Piece(lo, hi, grant, version, price))
    return [_record(use, tier, p.start, p.end, p.grant, p.version, p.price, final) for p in pieces]


@dataclass(slots=True)
class _Piece:
    start: datetime
    end: datetime
    grant: GrantTerms | None
    version: RateCardVersion | None
    price: int | None


def _charged(
    named: int | None, terms: list[GrantTerms], at: datetime, version: RateCardVersion | None, price: int | None
) -> GrantTerms | None:
    best: GrantTerms | None = None
    for t in terms:
        if not (t.start <= at < t.charge_end):
            continue
        if t.kind is GrantKind.CREDITS and (price is None or version is None or version.currency != t.currency):
            continue
        if t.id == named:
            return t
        if best is None or (t.charge_end, t.id) < (best.charge_end, best.id):
            best = t
    return best


def _record(
    use: AttemptLike, tier: Tier, lo: datetime, hi: datetime, grant: GrantTerms | None,
    version: RateCardVersion | None, price: int | None, final: bool,
) -> UsageRecord:  # fmt: skip
    milli_us = use.gpu_milli * ((hi - lo) // _US)
    if grant is not None and grant.kind is GrantKind.GPU_HOURS:
        micro, currency = div_half_even(milli_us, _MILLI_US_PER_MICRO_GPU_HOUR), GPU_HOURS
    elif price is not None and version is not None:
        micro, currency = div_half_even(milli_us * price, _MILLI_US_PER_GPU_HOUR), version.currency
    else:
        micro, currency = 0, UNPRICED
    return UsageRecord(
        job_id=use.job_id, attempt=use.attempt, project=use.project, user=use.user, flavor=use.flavor, tier=tier,
        grant_id=None if grant is None else grant.id, start=lo, end=hi, gpu_seconds=milli_us / 1e9,
        charge=Decimal(micro) * MICRO, currency=currency, final=final,
    )  # fmt: skip

