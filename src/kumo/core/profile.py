"""Scheduler profiles: which policy and stages a cycle uses, validated on construction."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from kumo.core.errors import ConfigError

PREEMPTION_SCOPES = ("queue", "cohort", "cluster")


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"profile: {name} must be a positive number, got {value!r}")


@dataclass(frozen=True, slots=True)
class FairShareParams:
    """Fair share: usage decays with ``half_life_s``; ``history_weight`` scales past usage against
    what runs now (0: only running jobs count, as in Kueue; 1: both count equally)."""

    half_life_s: float = 7 * 86400.0
    history_weight: float = 1.0

    def __post_init__(self) -> None:
        _positive("fair_share.half_life_s", self.half_life_s)
        if not isinstance(self.history_weight, int | float) or self.history_weight < 0:
            raise ConfigError(f"profile: fair_share.history_weight must be >= 0, got {self.history_weight!r}")


@dataclass(frozen=True, slots=True)
class LASParams:
    """Tiresias-style discretised LAS: queue boundaries in attained GPU-seconds, ascending."""

    thresholds_gpu_s: tuple[float, ...] = (3600.0, 36000.0, 360000.0)

    def __post_init__(self) -> None:
        t = self.thresholds_gpu_s
        if not isinstance(t, tuple) or not t:
            raise ConfigError("profile: las.thresholds_gpu_s must be a non-empty tuple")
        for v in t:
            _positive("las.thresholds_gpu_s", v)
        if list(t) != sorted(set(t)):
            raise ConfigError(f"profile: las.thresholds_gpu_s must be strictly ascending, got {t}")


@dataclass(frozen=True, slots=True)
class Profile:
    """What a cycle does.

    - ``order``: a name from :data:`kumo.core.policies.ORDER_POLICIES`
      (``fifo``, ``priority``, ``fair-share``, ``grant-pacing``, ``las``, ``srtf``);
    - ``preemption``: a waiting job may stop running jobs of lower rank in its ``preemption_scope``
      (``queue``, ``cohort`` or ``cluster``); ``reclaim``: a queue under its nominal quota may stop
      jobs of cohort queues that borrow; non-preemptible jobs are never stopped, nor jobs that
      started less than ``preemption_min_runtime_s`` ago (they would lose all their work, and
      stopping them invites thrashing: start, stop, start again);
    - ``backfill``: EASY backfill, one reservation per pool for the first job that cannot start;
    - ``heterogeneity``: prefer the GPU model a job runs fastest on unless that model is contended
      and the job gains less from it than the waiting jobs do on average;
    - ``migration``: once every waiting job has had its turn, move a running job that has run for
      ``preemption_min_runtime_s`` to GPUs left free on a model at least ``migration_min_speedup``
      times faster for it (it is stopped and restarted there: enable this where jobs save their
      state when stopped). Off by default.
    """

    order: str = "fair-share"
    preemption: bool = True
    preemption_scope: str = "queue"
    reclaim: bool = True
    preemption_min_runtime_s: float = 600.0
    backfill: bool = True
    heterogeneity: bool = True
    migration: bool = False
    migration_min_speedup: float = 1.25
    fair_share: FairShareParams = field(default_factory=FairShareParams)
    las: LASParams = field(default_factory=LASParams)

    def __post_init__(self) -> None:
        from kumo.core.policies import ORDER_POLICIES

        if self.order not in ORDER_POLICIES:
            raise ConfigError(
                f"profile: order policy {self.order!r} is unknown; choose one of {', '.join(ORDER_POLICIES)}"
            )
        if self.preemption_scope not in PREEMPTION_SCOPES:
            raise ConfigError(
                f"profile: preemption_scope {self.preemption_scope!r} is not one of {', '.join(PREEMPTION_SCOPES)}"
            )
        m = self.preemption_min_runtime_s
        if isinstance(m, bool) or not isinstance(m, int | float) or not m >= 0 or m == float("inf"):
            raise ConfigError(f"profile: preemption_min_runtime_s must be a number >= 0, got {m!r}")
        s = self.migration_min_speedup
        if isinstance(s, bool) or not isinstance(s, int | float) or not 1.0 < s < float("inf"):
            raise ConfigError(f"profile: migration_min_speedup must be a number above 1, got {s!r}")
        for name in ("preemption", "reclaim", "backfill", "heterogeneity", "migration"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"profile: {name} must be true or false")


DEFAULT_PROFILE = Profile()
