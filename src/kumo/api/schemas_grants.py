"""Request and response bodies of the grant, rate-card and usage-report routes (``kumo.api.routes.grants``).

**Money is a string in JSON.** Amounts, prices, charges and GPU-hour amounts of grants are exact
decimals with six places (``kumo.grants.money``); a JSON number would pass through a binary float
in most clients, so every response carries them as decimal strings (``"1500000.000000"``). Requests
accept a decimal string (preferred) or a JSON integer; a JSON number with a fraction is read through
its shortest representation (``0.1`` is ``"0.1"``), and more than six decimal places is a 422.
GPU-hours *measured* (``gpu_hours`` of a report row) are plain numbers: they are floats in the store.

Date-times must carry a time zone (``2025-04-01T00:00:00Z``); a naive one is a 422, as everywhere
in kumo. Input models are strict like :mod:`kumo.api.schemas`'s, except that date-times and
decimals are parsed from their JSON strings.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BeforeValidator, Field, StringConstraints

from kumo.api.schemas import Input, Name, Output

GPU_FLAVOR_PATTERN = r"^gpu\.[a-z0-9][a-z0-9_-]{0,31}$"
MAX_AMOUNT = Decimal(10) ** 15  # a quadrillion yen, dollars or GPU-hours


def _iso_text(value: Any) -> Any:
    if isinstance(value, str | datetime):
        return value
    raise ValueError("must be an ISO 8601 date-time with a time zone, e.g. 2025-04-01T00:00:00Z")


def _decimal_text(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError("must be a decimal string such as \"1500000\" or \"0.5\"")
    return value


Instant = Annotated[AwareDatetime, BeforeValidator(_iso_text), Field(strict=False)]
Money = Annotated[Decimal, BeforeValidator(_decimal_text),
                  Field(strict=False, gt=0, le=MAX_AMOUNT, max_digits=22, decimal_places=6, allow_inf_nan=False)]
Price = Annotated[Decimal, BeforeValidator(_decimal_text),
                  Field(strict=False, ge=0, le=MAX_AMOUNT, max_digits=22, decimal_places=6, allow_inf_nan=False)]
Share = Annotated[Decimal, BeforeValidator(_decimal_text),
                  Field(strict=False, ge=0, le=1, max_digits=8, decimal_places=6, allow_inf_nan=False)]
GpuFlavor = Annotated[str, StringConstraints(pattern=GPU_FLAVOR_PATTERN)]
GrantName = Annotated[str, StringConstraints(pattern=r"^\S(?:[^\x00-\x1f]*\S)?$", max_length=128)]
Comment = Annotated[str, StringConstraints(max_length=4000)]
Unit = Literal["JPY", "USD", "gpu_hours"]
TierName = Literal["guaranteed", "preemptible"]
GrantStatusName = Literal["requested", "active", "exhausted", "expired", "revoked", "denied"]
RequestStatusName = Literal["requested", "approved", "denied"]


# --------------------------------------------------------------------------- rate card


class PriceIn(Input):
    flavor: GpuFlavor
    tier: TierName
    price: Price


class RateVersionCreate(Input):
    """A version of the rate card over ``[effective_from, effective_to)`` (``null``: open-ended).

    ``close_previous``: end the open-ended version in force at ``effective_from`` there (the usual
    way to change prices from a date on). A version overlapping a stored one is a 409 naming both."""

    effective_from: Instant
    effective_to: Instant | None = None
    currency: Literal["JPY", "USD"]
    preemptible_discount: Share = Decimal("0.4")
    prices: Annotated[list[PriceIn], Field(min_length=1, max_length=1000)]
    close_previous: bool = False


class RatePricePublic(Output):
    flavor: str
    tier: str
    price: str
    derived: bool = False
    """True for a preemptible price the version does not list: guaranteed × (1 − discount)."""


class RateVersionPublic(Output):
    id: int
    label: str
    effective_from: datetime
    effective_to: datetime | None
    currency: str
    preemptible_discount: str
    prices: list[RatePricePublic]
    created_by: str | None
    created_at: datetime


class RateCardPublic(Output):
    current: int | None
    """The id of the version in force now, if any."""
    versions: list[RateVersionPublic]


# --------------------------------------------------------------------------- grants


class ComputeGrantCreate(Input):
    """An active grant: ``amount`` of ``unit`` (JPY or USD: a credits grant charged through the rate
    card; ``gpu_hours``: a GPU-hours grant) for ``project`` over ``[start, end)``."""

    project: Name
    amount: Money
    unit: Unit
    start: Instant
    end: Instant
    flavors: Annotated[list[GpuFlavor], Field(min_length=1, max_length=64)] | None = None
    name: GrantName | Literal[""] = ""


class GrantRevoke(Input):
    comment: Comment = ""


class ComputeGrantPublic(Output):
    id: int
    name: str
    project: str
    programme: str
    kind: str
    amount: str
    currency: str
    """JPY, USD, or ``gpu_hours`` for a GPU-hours grant."""
    flavors: list[str] | None
    start: datetime
    end: datetime
    status: str
    created_by: str
    created_at: datetime
    revoked_at: datetime | None
    version: int
    used: str
    remaining: str
    percent_used: float


class ForecastPublic(Output):
    """Where the grant is heading at the burn rate of its last ``window_days`` days."""

    now: datetime
    window_days: int
    fraction_used: float
    expected_fraction: float
    pace: float
    """Spent so far over what the linear plan expects by now (1.0 on plan)."""
    scheduling_pace: float
    """What the scheduler uses: (1 − expected) / (1 − spent); below 1 the grant is behind its plan."""
    burn_rate_per_day: str
    projected_exhaustion: datetime | None
    projected_spend_at_end: str
    exhausted: bool
    under_spend: bool
    """The projected spend by the end is below 90% of the amount while the grant runs."""


class GrantRequestPublic(Output):
    id: int
    kind: str
    grant_id: int
    project: str
    programme: str
    amount: str | None
    """A top-up's amount, or a new grant's."""
    new_end: datetime | None
    comment: str
    requested_by: str
    requested_at: datetime
    status: str
    decided_by: str | None
    decided_at: datetime | None
    decision_comment: str
    grant: ComputeGrantPublic


class ComputeGrantDetail(ComputeGrantPublic):
    forecast: ForecastPublic
    requests: list[GrantRequestPublic]


class BurnPointPublic(Output):
    day: date
    used: str
    remaining: str
    planned: str


class BurndownPublic(Output):
    grant_id: int
    currency: str
    amount: str
    points: list[BurnPointPublic]


# --------------------------------------------------------------------------- requests


class NewGrantRequest(Input):
    """A new grant, stored as ``requested`` (never charged) until a programme manager decides."""

    kind: Literal["new"]
    project: Name
    amount: Money
    unit: Unit
    start: Instant
    end: Instant
    flavors: Annotated[list[GpuFlavor], Field(min_length=1, max_length=64)] | None = None
    name: GrantName | Literal[""] = ""
    comment: Comment = ""


class RenewalRequest(Input):
    """The grant to end later, at ``new_end``, and with ``amount`` (optional) that much more for the
    longer period, in the grant's currency or GPU-hours."""

    kind: Literal["renewal"]
    grant_id: Annotated[int, Field(ge=1, le=2**31 - 1)]
    new_end: Instant
    amount: Money | None = None
    comment: Comment = ""


class TopupRequest(Input):
    """``amount`` more, in the grant's currency or GPU-hours."""

    kind: Literal["topup"]
    grant_id: Annotated[int, Field(ge=1, le=2**31 - 1)]
    amount: Money
    comment: Comment = ""


AnyGrantRequest = NewGrantRequest | RenewalRequest | TopupRequest


class Decision(Input):
    comment: Comment = ""


class Denial(Input):
    comment: Annotated[str, StringConstraints(min_length=1, max_length=4000)]
    """Why (required: the requester reads it)."""


# --------------------------------------------------------------------------- reports


class UsageReportRow(Output):
    group: dict[str, str | int | None]
    """The values of the ``by`` keys; ``grant`` null is unfunded use."""
    currency: str
    """JPY, USD, ``gpu_hours`` (charged to a GPU-hours grant) or ``""`` (unfunded and unpriced)."""
    gpu_hours: float
    charge: str
    records: int


class UsageReportTotal(Output):
    currency: str
    gpu_hours: float
    charge: str
    records: int


class UsageReportPublic(Output):
    since: datetime
    until: datetime
    by: list[str]
    items: list[UsageReportRow]
    totals: list[UsageReportTotal]
    """One per currency: yen, dollars and GPU-hours are never added together."""
