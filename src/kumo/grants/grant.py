"""Grants: compute handed to a project, as money or as GPU-hours, over ``[start, end)``.

A ``credits`` grant holds an amount of money (JPY or USD) that usage is charged against through
the rate card; a ``gpu_hours`` grant holds GPU-hours, and usage is charged in GPU-hours
(``currency`` is then :data:`~kumo.grants.money.GPU_HOURS`). Either may be limited to some
flavors (``flavors=None``: every GPU flavor).

Which grants can be charged (:attr:`GrantStatus.chargeable`): an ``active``, ``exhausted`` or
``expired`` grant over ``[start, end)``, a ``revoked`` one over ``[start, revoked_at)``; never a
grant still ``requested`` or one whose request was ``denied``. An exhausted grant keeps taking
the charges of its period (it shows overspend): metering never depends on how much was used, so
replaying an attempt always charges the same grants.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from kumo.core.errors import InvalidValueError
from kumo.core.resources import check_name, is_gpu_flavor
from kumo.grants.money import CURRENCIES, GPU_HOURS, money
from kumo.grants.ratecard import utc


class GrantKind(enum.StrEnum):
    CREDITS = "credits"
    GPU_HOURS = "gpu_hours"


class GrantStatus(enum.StrEnum):
    """Where a grant is. ``requested`` waits for a programme manager; ``denied`` never ran."""

    REQUESTED = "requested"
    ACTIVE = "active"
    EXHAUSTED = "exhausted"
    EXPIRED = "expired"
    REVOKED = "revoked"
    DENIED = "denied"

    @property
    def chargeable(self) -> bool:
        """Whether usage inside the grant's period may be charged to it."""
        return self not in (GrantStatus.REQUESTED, GrantStatus.DENIED)

    @property
    def final(self) -> bool:
        return self in (GrantStatus.REVOKED, GrantStatus.DENIED)


def grant_kind(value: object) -> GrantKind:
    try:
        return GrantKind(value)  # type: ignore[arg-type]  # a wrong type is a ValueError too
    except ValueError:
        raise InvalidValueError("grant kind", f"{value!r} is not one of {[k.value for k in GrantKind]}") from None


def grant_status(value: object) -> GrantStatus:
    try:
        return GrantStatus(value)  # type: ignore[arg-type]  # a wrong type is a ValueError too
    except ValueError:
        raise InvalidValueError("grant status", f"{value!r} is not one of {[s.value for s in GrantStatus]}") from None


def check_terms(
    kind: GrantKind | str, amount: object, currency: str | None, start: datetime, end: datetime,
    flavors: Sequence[str] | None,
) -> tuple[GrantKind, Decimal, str, datetime, datetime, tuple[str, ...] | None]:  # fmt: skip
    """A grant's terms checked and normalised: a positive amount, ``end`` after ``start``, a
    currency that fits the kind (JPY/USD for credits; none or ``gpu_hours`` for GPU-hours) and GPU
    flavors. Raises ``InvalidValueError`` saying what is wrong."""
    k = grant_kind(kind)
    value = money(amount, "grant amount")
    if value <= 0:
        raise InvalidValueError("grant amount", f"must be positive, got {value}")
    a, b = utc(start, "grant start"), utc(end, "grant end")
    if b <= a:
        raise InvalidValueError("grant", f"end {b.isoformat()} is not after start {a.isoformat()}")
    if k is GrantKind.CREDITS:
        if currency not in CURRENCIES:
            wanted = sorted(CURRENCIES)
            raise InvalidValueError("grant currency", f"a credits grant needs one of {wanted}, got {currency!r}")
        unit = str(currency)
    else:
        if currency not in (None, GPU_HOURS):
            raise InvalidValueError("grant currency", f"a gpu_hours grant is counted in GPU-hours, got {currency!r}")
        unit = GPU_HOURS
    limited: tuple[str, ...] | None = None
    if flavors is not None:
        if isinstance(flavors, str) or not isinstance(flavors, Sequence) or not flavors:
            raise InvalidValueError("grant flavors", f"must be a non-empty list of flavors or None, got {flavors!r}")
        for flavor in flavors:
            if not is_gpu_flavor(check_name("grant flavor", flavor)):
                raise InvalidValueError("grant flavors", f"{flavor!r} is not a GPU flavor (gpu.<model>)")
        if len(set(flavors)) != len(flavors):
            raise InvalidValueError("grant flavors", f"lists a flavor twice: {list(flavors)}")
        limited = tuple(sorted(flavors))
    return k, value, unit, a, b, limited


class GrantLike(Protocol):
    """What metering and forecasting read from a grant (the store's ``Grant`` row has it)."""

    @property
    def id(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def amount(self) -> Decimal: ...
    @property
    def currency(self) -> str: ...
    @property
    def flavors(self) -> Sequence[str] | None: ...
    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime: ...
    @property
    def status(self) -> str: ...
    @property
    def revoked_at(self) -> datetime | None: ...


@dataclass(frozen=True, slots=True)
class GrantTerms:
    """A grant as metering sees it (checked with :func:`check_terms`)."""

    id: int
    kind: GrantKind
    amount: Decimal
    currency: str
    start: datetime
    end: datetime
    flavors: tuple[str, ...] | None = None
    status: GrantStatus = GrantStatus.ACTIVE
    revoked_at: datetime | None = None
    charge_end: datetime = field(init=False, repr=False, compare=False)
    """When the grant stops taking charges: its end, or its revocation if earlier."""
    chargeable: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.id, bool) or not isinstance(self.id, int):
            raise InvalidValueError("grant id", f"must be an integer, got {self.id!r}")
        currency = None if self.kind == GrantKind.GPU_HOURS and self.currency == "" else self.currency
        kind, amount, unit, start, end, flavors = check_terms(
            self.kind, self.amount, currency, self.start, self.end, self.flavors
        )
        for name, value in (
            ("kind", kind),
            ("amount", amount),
            ("currency", unit),
            ("start", start),
            ("end", end),
            ("flavors", flavors),
            ("status", grant_status(self.status)),
        ):
            object.__setattr__(self, name, value)
        charge_end = end
        if self.revoked_at is not None:
            revoked = utc(self.revoked_at, "grant revoked_at")
            object.__setattr__(self, "revoked_at", revoked)
            if self.status is GrantStatus.REVOKED and revoked < end:
                charge_end = max(revoked, start)
        object.__setattr__(self, "charge_end", charge_end)
        object.__setattr__(self, "chargeable", self.status.chargeable)

    @classmethod
    def of(cls, grant: GrantTerms | GrantLike) -> GrantTerms:
        """Terms from a stored grant (anything shaped like :class:`GrantLike`)."""
        if isinstance(grant, GrantTerms):
            return grant
        flavors = None if grant.flavors is None else tuple(grant.flavors)
        return cls(grant.id, grant_kind(grant.kind), grant.amount, grant.currency, grant.start, grant.end, flavors,
                   grant_status(grant.status), grant.revoked_at)  # fmt: skip

    def allows(self, flavor: str) -> bool:
        return self.flavors is None or flavor in self.flavors
