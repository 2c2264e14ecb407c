"""The rate card: what one GPU-hour of a flavor costs, per tier, over time.

A :class:`RateCard` is a list of :class:`RateCardVersion` values, each in force over
``[effective_from, effective_to)`` (``effective_to=None``: until further notice). Versions never
overlap — a card that would have two prices for one moment is refused with an
``InvalidValueError`` naming both versions — but may leave gaps (no price then).

A version prices ``(flavor, tier)`` pairs per GPU-hour, in its currency (JPY or USD). A job that
may be preempted runs in the ``preemptible`` tier. When a version lists no preemptible price for
a flavor, it is the guaranteed price times ``1 - preemptible_discount`` (default 0.4 off, so 0.6×),
rounded to six places, half to even.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from itertools import pairwise
from types import MappingProxyType
from typing import Protocol

from kumo.core.errors import InvalidValueError
from kumo.core.resources import check_name, is_gpu_flavor
from kumo.grants.money import CURRENCIES, MICRO, money, to_micro

DEFAULT_PREEMPTIBLE_DISCOUNT = Decimal("0.4")
"""The share taken off the guaranteed price for preemptible use when a version names no preemptible price."""


class Tier(enum.StrEnum):
    """How a job may be treated: ``guaranteed`` runs until it ends; ``preemptible`` may be stopped
    for other work, and is cheaper."""

    GUARANTEED = "guaranteed"
    PREEMPTIBLE = "preemptible"


def tier_of(value: object, where: str = "tier") -> Tier:
    """A :class:`Tier` from itself or its value; ``InvalidValueError`` otherwise."""
    if type(value) is Tier:
        return value
    try:
        return Tier(value)  # type: ignore[arg-type]  # a wrong type is a ValueError too
    except ValueError:
        raise InvalidValueError(where, f"{value!r} is not one of {[t.value for t in Tier]}") from None


def utc(value: object, where: str) -> datetime:
    """``value`` in UTC; naive datetimes are refused (kumo never guesses a time zone)."""
    if type(value) is datetime and value.tzinfo is UTC:
        return value
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InvalidValueError(where, f"must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


class RateVersionLike(Protocol):
    """What :class:`RateCard` reads from a stored version (the store's ``RateVersion`` row has it)."""

    @property
    def label(self) -> str: ...
    @property
    def effective_from(self) -> datetime: ...
    @property
    def effective_to(self) -> datetime | None: ...
    @property
    def currency(self) -> str: ...
    @property
    def prices(self) -> Mapping[tuple[str, str], Decimal]: ...
    @property
    def preemptible_discount(self) -> Decimal: ...


@dataclass(frozen=True, slots=True)
class RateCardVersion:
    """Prices per GPU-hour in force over ``[effective_from, effective_to)``.

    ``prices`` maps ``(flavor, tier)`` to a price (``Decimal``, ``int`` or decimal string; six
    places kept). ``label`` names the version in error messages (default: its start).
    """

    effective_from: datetime
    effective_to: datetime | None
    currency: str
    prices: Mapping[tuple[str, Tier], Decimal] = field(hash=False)
    preemptible_discount: Decimal = DEFAULT_PREEMPTIBLE_DISCOUNT
    label: str = ""
    _micro: Mapping[tuple[str, Tier], int] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        where = f"rate card version {self.label or '(unnamed)'}"
        start = utc(self.effective_from, f"{where} effective_from")
        end = None if self.effective_to is None else utc(self.effective_to, f"{where} effective_to")
        if end is not None and end <= start:
            raise InvalidValueError(
                where, f"effective_to {end.isoformat()} is not after effective_from {start.isoformat()}"
            )
        if self.currency not in CURRENCIES:
            raise InvalidValueError(where, f"currency {self.currency!r} is not one of {sorted(CURRENCIES)}")
        discount = money(self.preemptible_discount, f"{where} preemptible_discount")
        if not Decimal(0) <= discount <= Decimal(1):
            raise InvalidValueError(where, f"preemptible_discount must be from 0 to 1, got {discount}")
        if not isinstance(self.prices, Mapping):
            raise InvalidValueError(where, f"prices must map (flavor, tier) to a price, got {self.prices!r}")
        prices: dict[tuple[str, Tier], Decimal] = {}
        for key, value in self.prices.items():
            if not isinstance(key, tuple) or len(key) != 2:
                raise InvalidValueError(where, f"a price's key must be (flavor, tier), got {key!r}")
            flavor, tier = check_name(f"{where} flavor", key[0]), tier_of(key[1], f"{where} tier")
            if not is_gpu_flavor(flavor):
                raise InvalidValueError(where, f"flavor {flavor!r} is not a GPU flavor (gpu.<model>)")
            price = money(value, f"{where} price of {flavor} ({tier.value})")
            if price < 0:
                raise InvalidValueError(where, f"price of {flavor} ({tier.value}) must not be negative, got {price}")
            prices[flavor, tier] = price
        label = self.label or f"from {start.isoformat()}"
        object.__setattr__(self, "effective_from", start)
        object.__setattr__(self, "effective_to", end)
        object.__setattr__(self, "preemptible_discount", discount)
        object.__setattr__(self, "prices", MappingProxyType(prices))
        object.__setattr__(self, "label", label)
        micro = {key: to_micro(price) for key, price in prices.items()}
        for (flavor, tier), price in prices.items():
            if tier is Tier.GUARANTEED and (flavor, Tier.PREEMPTIBLE) not in prices:
                micro[flavor, Tier.PREEMPTIBLE] = to_micro(_discounted(price, discount))
        object.__setattr__(self, "_micro", MappingProxyType(micro))

    @classmethod
    def of(cls, row: RateCardVersion | RateVersionLike) -> RateCardVersion:
        """A version from a stored row (anything shaped like :class:`RateVersionLike`)."""
        if isinstance(row, RateCardVersion):
            return row
        return cls(
            row.effective_from, row.effective_to, row.currency,
            {(flavor, tier_of(tier)): price for (flavor, tier), price in row.prices.items()},
            row.preemptible_discount, row.label,
        )  # fmt: skip

    def covers(self, at: datetime) -> bool:
        return self.effective_from <= at and (self.effective_to is None or at < self.effective_to)

    def price(self, flavor: str, tier: Tier | str) -> Decimal | None:
        """The price of one GPU-hour, or None if this version does not price the flavor."""
        micro = self._micro.get((flavor, tier_of(tier)))
        return None if micro is None else (Decimal(micro) * MICRO)

    def price_micro(self, flavor: str, tier: Tier) -> int | None:
        """:meth:`price` in micro-units (what metering multiplies with)."""
        return self._micro.get((flavor, tier))

    def describe(self) -> str:
        end = "open-ended" if self.effective_to is None else f"to {self.effective_to.isoformat()}"
        return f"{self.label} ({self.effective_from.isoformat()} {end})"


def _discounted(price: Decimal, discount: Decimal) -> Decimal:
    return money(price * (Decimal(1) - discount))


def check_no_overlap(versions: Iterable[RateCardVersion]) -> list[RateCardVersion]:
    """``versions`` sorted by start; ``InvalidValueError`` naming the first two that overlap."""
    ordered = sorted(versions, key=lambda v: v.effective_from)
    for before, after in pairwise(ordered):
        if before.effective_to is None or before.effective_to > after.effective_from:
            raise InvalidValueError("rate card", f"version {before.describe()} overlaps version {after.describe()}")
    return ordered


class RateCard:
    """Versions of prices over time, never overlapping (see the module's docstring)."""

    def __init__(self, versions: Iterable[RateCardVersion | RateVersionLike] = ()) -> None:
        self.versions: tuple[RateCardVersion, ...] = tuple(check_no_overlap(RateCardVersion.of(v) for v in versions))
        self._starts = [v.effective_from for v in self.versions]
        ends = (v.effective_to for v in self.versions)
        self._cuts = sorted({*self._starts, *(t for t in ends if t is not None)})

    def __repr__(self) -> str:
        return f"RateCard({list(self.versions)!r})"

    def with_version(self, version: RateCardVersion) -> RateCard:
        """A card with one more version (``InvalidValueError`` if it overlaps one of these)."""
        return RateCard([*self.versions, version])

    def version_at(self, at: datetime) -> RateCardVersion | None:
        """The version in force at ``at``, or None in a gap."""
        i = bisect.bisect_right(self._starts, at) - 1
        if i < 0:
            return None
        version = self.versions[i]
        return version if version.effective_to is None or at < version.effective_to else None

    def price(self, flavor: str, tier: Tier | str, at: datetime) -> Decimal:
        """The price of one GPU-hour of ``flavor`` in ``tier`` at ``at``; ``InvalidValueError`` if
        no version is in force then or it does not price the flavor."""
        when = utc(at, "at")
        version = self.version_at(when)
        if version is None:
            raise InvalidValueError("rate card", f"no version is in force at {when.isoformat()}")
        price = version.price(flavor, tier)
        if price is None:
            raise InvalidValueError("rate card", f"version {version.label} has no price for {flavor}")
        return price

    def boundaries(self, start: datetime, end: datetime) -> list[datetime]:
        """Every version start or end strictly inside ``(start, end)``, in order."""
        return self._cuts[bisect.bisect_right(self._cuts, start) : bisect.bisect_left(self._cuts, end)]

    def segments(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime, RateCardVersion | None]]:
        """``[start, end)`` cut at version boundaries: ``(from, to, version in force or None)``."""
        a, b = utc(start, "start"), utc(end, "end")
        if b <= a:
            return []
        points = [a, *self.boundaries(a, b), b]
        return [(lo, hi, self.version_at(lo)) for lo, hi in pairwise(points)]
