"""Money and GPU-hours as exact decimals with six places.

Every amount kumo meters — a price per GPU-hour, a charge, a grant's amount — is a
:class:`~decimal.Decimal` with exactly six decimal places (a *micro-unit*: 0.000001 yen, dollar or
GPU-hour). Charges are rounded once, per usage record, to the nearest micro-unit with ties to the
even neighbour (``ROUND_HALF_EVEN``, banker's rounding), so summing many records has no drift
in either direction. The store keeps amounts as integer micro-units (exact sums on SQLite, which
has no decimal type); :func:`to_micro` and :func:`from_micro` convert.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from kumo.core.errors import InvalidValueError

MICRO = Decimal("0.000001")
"""The smallest amount kumo keeps: one millionth of a yen, dollar or GPU-hour."""

MICROS_PER_UNIT = 1_000_000
CURRENCIES: frozenset[str] = frozenset({"JPY", "USD"})
"""Currencies of credits grants and rate cards."""

GPU_HOURS = "gpu_hours"
"""The unit of a ``gpu_hours`` grant's amount and charges (it stands where a currency would)."""


def money(value: object, where: str = "amount") -> Decimal:
    """``value`` (a ``Decimal``, an ``int``, a decimal string or a finite ``float``, read through its
    shortest repr) as a six-place decimal, rounded half to even. ``InvalidValueError`` otherwise."""
    if isinstance(value, bool):
        raise InvalidValueError(where, f"must be a number, got {value!r}")
    try:
        if isinstance(value, Decimal):
            number = value
        elif isinstance(value, int | str):
            number = Decimal(value)
        elif isinstance(value, float) and math.isfinite(value):
            number = Decimal(repr(value))
        else:
            raise InvalidValueError(where, f"must be a number, got {value!r}")
        if not number.is_finite():
            raise InvalidValueError(where, f"must be a finite number, got {value!r}")
        return number.quantize(MICRO, rounding=ROUND_HALF_EVEN)
    except InvalidOperation:
        raise InvalidValueError(where, f"must be a number, got {value!r}") from None


def to_micro(value: Decimal) -> int:
    """A six-place decimal as an integer count of micro-units (``Decimal("1.5") -> 1_500_000``)."""
    return int(value.quantize(MICRO, rounding=ROUND_HALF_EVEN).scaleb(6))


def from_micro(micro: int) -> Decimal:
    """Integer micro-units as a six-place decimal (``1_500_000 -> Decimal("1.500000")``)."""
    return Decimal(micro).scaleb(-6).quantize(MICRO)


def div_half_even(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded to the nearest integer, ties to even (exact, integers only)."""
    quotient, rest = divmod(numerator, denominator)
    twice = 2 * rest
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        quotient += 1
    return quotient
