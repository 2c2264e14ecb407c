"""Order policies, registered by name. Each answers: in what order should waiting jobs be tried,
and how important is a job when deciding whom to preempt?"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from kumo.core.policies.base import OrderPolicy
from kumo.core.policies.basic import Fifo, StrictPriority
from kumo.core.policies.fairshare import FairShare, GrantPacing
from kumo.core.policies.las import LeastAttainedService
from kumo.core.policies.srtf import ShortestRemainingTime

if TYPE_CHECKING:
    from kumo.core.profile import Profile

ORDER_POLICIES: dict[str, Callable[[Profile], OrderPolicy]] = {
    "fifo": Fifo,
    "priority": StrictPriority,
    "fair-share": FairShare,
    "grant-pacing": GrantPacing,
    "las": LeastAttainedService,
    "srtf": ShortestRemainingTime,
}


def order_policy(profile: Profile) -> OrderPolicy:
    return ORDER_POLICIES[profile.order](profile)


__all__ = ["ORDER_POLICIES", "OrderPolicy", "order_policy"]
