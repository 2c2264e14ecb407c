"""Burn-down, forecast and pace of a grant from its charges per day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from kumo.core.errors import InvalidValueError
from kumo.grants import PACE_CAP, GrantKind, GrantTerms, burn_down, expected_fraction, forecast, pace

APR = datetime(2025, 4, 1, tzinfo=UTC)
# 3,000 JPY over the 30 days of April: the plan spends 100 a day.
GRANT = GrantTerms(1, GrantKind.CREDITS, Decimal(3000), "JPY", APR, APR + timedelta(days=30))


def at(day: float) -> datetime:
    """The start of April ``day`` (fractions: hours into it)."""
    return APR + timedelta(days=day - 1)


def daily(per_day: int, days: int, first: int = 1) -> dict[date, Decimal]:
    return {(APR + timedelta(days=first - 1 + i)).date(): Decimal(per_day) for i in range(days)}


def test_expected_fraction_is_linear_and_clamped() -> None:
    assert expected_fraction(GRANT.start, GRANT.end, at(0)) == 0.0
    assert expected_fraction(GRANT.start, GRANT.end, at(1)) == 0.0
    assert expected_fraction(GRANT.start, GRANT.end, at(11)) == pytest.approx(10 / 30)
    assert expected_fraction(GRANT.start, GRANT.end, at(31)) == 1.0
    assert expected_fraction(GRANT.start, GRANT.end, at(60)) == 1.0


def test_pace_is_actual_over_expected() -> None:
    # Ten days in, the plan expects 1,000 of 3,000 spent.
    assert pace(GRANT, Decimal(1000), at(11)) == pytest.approx(1.0)
    assert pace(GRANT, Decimal(2000), at(11)) == pytest.approx(2.0)
    assert pace(GRANT, Decimal(250), at(11)) == pytest.approx(0.25)
    assert pace(GRANT, Decimal(0), at(1)) == 1.0  # nothing expected, nothing spent: on plan
    assert pace(GRANT, Decimal(1), at(1)) == PACE_CAP  # spent before anything was expected
    assert pace(GRANT, Decimal(3000 * 200), at(2)) == PACE_CAP  # capped


def test_burn_down_has_one_point_a_day_until_now() -> None:
    points = burn_down(GRANT, daily(150, 3), at(3.5))  # 150 on each of Apr 1-3; now Apr 3 12:00
    assert [p.day for p in points] == [date(2025, 4, 1), date(2025, 4, 2), date(2025, 4, 3)]
    assert [p.used for p in points] == [Decimal(150), Decimal(300), Decimal(450)]
    assert [p.remaining for p in points] == [Decimal(2850), Decimal(2700), Decimal(2550)]
    # The plan: 100 a day by the end of each day; today's point is at now (2.5 days: 250).
    assert [p.planned for p in points] == [Decimal(100), Decimal(200), Decimal(250)]
    assert burn_down(GRANT, {}, at(0)) == []  # not started
    assert len(burn_down(GRANT, daily(10, 30), at(90))) == 30  # ends with the grant


def test_an_under_spending_grant_is_flagged() -> None:
    # 50 a day for the first 10 days: 500 used on Apr 11 00:00, 2,500 left for 20 days.
    f = forecast(GRANT, daily(50, 10), at(11))
    assert (f.used, f.remaining) == (Decimal(500), Decimal(2500))
    assert f.burn_rate_per_day == Decimal(50)  # the last 7 days: 350 / 7
    # At 50 a day: 500 + 50 × 20 = 1,500 by the end, under 90% of 3,000 (2,700); never exhausted.
    assert f.projected_spend_at_end == Decimal(1500)
    assert (f.projected_exhaustion, f.under_spend, f.exhausted) == (None, True, False)
    assert f.pace == pytest.approx(0.5)  # half of the 1,000 the plan expected


def test_a_fast_grant_gets_a_projected_exhaustion_date() -> None:
    # 200 a day for 10 days: 2,000 used, 1,000 left: 5 more days at 200 a day.
    f = forecast(GRANT, daily(200, 10), at(11))
    assert f.projected_exhaustion == at(16)
    assert f.projected_spend_at_end == Decimal(6000)  # 2,000 + 200 × 20
    assert (f.under_spend, f.exhausted, f.pace) == (False, False, pytest.approx(2.0))


def test_the_window_counts_recent_days_only_and_not_before_the_start() -> None:
    # 300 a day on Apr 1-3, then nothing for a week: the last 7 days burnt nothing.
    idle = forecast(GRANT, daily(300, 3), at(11))
    assert (idle.burn_rate_per_day, idle.projected_exhaustion, idle.under_spend) == (Decimal(0), None, True)
    # Two days in, the 7-day window has only two days: 2 × 300 / 2 = 300 a day.
    young = forecast(GRANT, daily(300, 2), at(3))
    assert young.burn_rate_per_day == Decimal(300)
    # A day's charge is spread over the day, today's over its elapsed part. At Apr 3 12:00 a one-day
    # window holds the second half of Apr 2 (240 / 2 = 120) and all of today's 12 hours (120): 240.
    today = forecast(GRANT, {date(2025, 4, 2): Decimal(240), date(2025, 4, 3): Decimal(120)}, at(3.5), window_days=1)
    assert today.burn_rate_per_day == Decimal(240)


def test_an_ended_or_exhausted_grant() -> None:
    spent = forecast(GRANT, daily(110, 30), at(40))
    assert (spent.used, spent.exhausted, spent.under_spend, spent.projected_exhaustion) == (
        Decimal(3300), True, False, None,
    )  # fmt: skip
    assert spent.projected_spend_at_end == Decimal(3300)  # ended: what was spent
    with pytest.raises(InvalidValueError, match="window_days"):
        forecast(GRANT, {}, at(5), window_days=0)
