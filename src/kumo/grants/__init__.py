"""Grants, the rate card, metering and forecasts: pure values and functions, no I/O.

- :mod:`kumo.grants.ratecard` — :class:`RateCard` of :class:`RateCardVersion` values: prices per
  GPU-hour per flavor and :class:`Tier`, versioned by effective dates, never overlapping.
- :mod:`kumo.grants.grant` — :class:`GrantTerms`, :class:`GrantKind`, :class:`GrantStatus`.
- :mod:`kumo.grants.metering` — :func:`meter`: an :class:`AttemptUse` to :class:`UsageRecord`
  values charged to the project's grants.
- :mod:`kumo.grants.forecast` — :func:`burn_down`, :func:`forecast` and :func:`pace`.

The store (``kumo.store.repos.grants``) keeps them; its rows have the shapes these functions read
(:class:`RateVersionLike`, :class:`GrantLike`, :class:`AttemptLike`). See ``docs/concepts/grants.md``.
"""

from __future__ import annotations

from kumo.grants.forecast import (
    PACE_CAP,
    UNDER_SPEND_BELOW,
    WINDOW_DAYS,
    BurnPoint,
    Forecast,
    PlanLike,
    burn_down,
    expected_fraction,
    forecast,
    pace,
)
from kumo.grants.grant import GrantKind, GrantLike, GrantStatus, GrantTerms, check_terms
from kumo.grants.metering import UNPRICED, AttemptLike, AttemptUse, UsageRecord, meter
from kumo.grants.money import CURRENCIES, GPU_HOURS, MICRO, from_micro, money, to_micro
from kumo.grants.ratecard import (
    DEFAULT_PREEMPTIBLE_DISCOUNT,
    RateCard,
    RateCardVersion,
    RateVersionLike,
    Tier,
    check_no_overlap,
)

__all__ = [
    "CURRENCIES",
    "DEFAULT_PREEMPTIBLE_DISCOUNT",
    "GPU_HOURS",
    "MICRO",
    "PACE_CAP",
    "UNDER_SPEND_BELOW",
    "UNPRICED",
    "WINDOW_DAYS",
    "AttemptLike",
    "AttemptUse",
    "BurnPoint",
    "Forecast",
    "GrantKind",
    "GrantLike",
    "GrantStatus",
    "GrantTerms",
    "PlanLike",
    "RateCard",
    "RateCardVersion",
    "RateVersionLike",
    "Tier",
    "UsageRecord",
    "burn_down",
    "check_no_overlap",
    "check_terms",
    "expected_fraction",
    "forecast",
    "from_micro",
    "meter",
    "money",
    "pace",
    "to_micro",
]
