"""The scheduler's pacing input: how fast a grant must spend from now on, relative to its plan.

:func:`kumo.grants.forecast.pace` (spent so far over the plan's expectation) says how a grant
*has* done. Scheduling needs how it *must* do: a grant that has spent 25 % of its amount half-way
through must spend the remaining 75 % in the remaining 50 % of its time — 1.5 times its planned
rate — and one that has spent 75 % only 0.5 times. :func:`scheduling_pace` is the inverse of that
factor, ``(1 - expected) / (1 - spent)``, which is what :class:`kumo.core.GrantStanding` carries as
``pace``: the ``grant-pacing`` order policy scales the project's fair-share weight by ``1 / pace``
(clamped), so GPUs are shared in proportion to the rates the grants need, and each grant, if its
project keeps work waiting, spends its amount by its end — neither burnt in a month nor left unused.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from kumo.grants.forecast import PlanLike, expected_fraction
from kumo.grants.ratecard import utc

PACE_CEILING = 100.0  # a spent grant (nothing left to spend): as far ahead as can be


def scheduling_pace(grant: PlanLike, used: Decimal, now: datetime) -> float:
    """``(1 - expected fraction by now) / (1 - fraction spent)``: 1.0 on plan, below 1 behind, above 1
    ahead. Before its start and after its end a grant is on plan (1.0); spent out it is
    :data:`PACE_CEILING`."""
    expected = expected_fraction(grant.start, grant.end, utc(now, "now"))
    if expected <= 0.0 or expected >= 1.0:
        return 1.0
    spent = float(used / grant.amount) if grant.amount > 0 else 1.0
    if spent >= 1.0:
        return PACE_CEILING
    return min(PACE_CEILING, (1.0 - expected) / (1.0 - max(0.0, spent)))
