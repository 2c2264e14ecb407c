"""Hierarchical fair share (programme -> project), weighted dominant-resource share.

Within a project, jobs go by priority, then submission time. Across projects and programmes the
cycle interleaves jobs so that the entity with the lowest weighted share goes next; the share is
recomputed after every start (see :mod:`kumo.core.fairshare`).
"""

from __future__ import annotations

from kumo.core.policies.basic import StrictPriority


class FairShare(StrictPriority):
    name = "fair-share"
    fair_share = True
    paced = False


PACE_LIMIT = 4.0  # a project's weight is scaled by at most this much either way


def pace_factor(pace: float) -> float:
    """How much ``grant-pacing`` scales a project's fair-share weight: ``1 / pace`` — a project
    that has spent half of what its plan expects by now counts double, one at twice its plan
    half — clamped to ``[1/PACE_LIMIT, PACE_LIMIT]`` (a project that has spent nothing gets the
    full ``PACE_LIMIT``)."""
    if pace <= 1.0 / PACE_LIMIT:
        return PACE_LIMIT
    return max(1.0 / PACE_LIMIT, min(PACE_LIMIT, 1.0 / pace))


class GrantPacing(FairShare):
    """Fair share whose project weights follow the projects' grant plans (``GrantStanding.pace``):
    a grant behind its expected spend near its end gets a larger share until it catches up, one
    far ahead a smaller one — so a five-year grant is neither burnt in a month nor left unused.
    Projects without a standing keep their weight."""

    name = "grant-pacing"
    paced = True
