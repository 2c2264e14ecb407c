"""kumo's pure scheduling core: ``schedule(snapshot, now) -> decisions``.

No I/O, no clock, no randomness: the same snapshot and ``now`` always give the same decisions.
"""

from kumo.core.decisions import (
    CycleStats,
    Decisions,
    Preempt,
    Reject,
    Requeue,
    Reservation,
    Start,
)
from kumo.core.errors import (
    ConfigError,
    DuplicateError,
    InvalidValueError,
    KumoError,
    QuotaCycleError,
    StaleDecisionsError,
    StateError,
    UnknownReferenceError,
    UnsatisfiableJobError,
    ValidationError,
)
from kumo.core.explain import Reason
from kumo.core.model import (
    Allocation,
    Cohort,
    GrantStanding,
    Job,
    Node,
    NodeState,
    Placement,
    Programme,
    Project,
    Queue,
    Quota,
    Topology,
    UsageSample,
    WorkerPlacement,
)
from kumo.core.policies import ORDER_POLICIES
from kumo.core.profile import DEFAULT_PROFILE, FairShareParams, LASParams, Profile
from kumo.core.resources import GPU_MILLI, gpu_flavor, slice_milli
from kumo.core.schedule import schedule
from kumo.core.snapshot import Snapshot

__all__ = [
    "DEFAULT_PROFILE",
    "GPU_MILLI",
    "ORDER_POLICIES",
    "Allocation",
    "Cohort",
    "ConfigError",
    "CycleStats",
    "Decisions",
    "DuplicateError",
    "FairShareParams",
    "GrantStanding",
    "InvalidValueError",
    "Job",
    "KumoError",
    "LASParams",
    "Node",
    "NodeState",
    "Placement",
    "Preempt",
    "Profile",
    "Programme",
    "Project",
    "Queue",
    "Quota",
    "QuotaCycleError",
    "Reason",
    "Reject",
    "Requeue",
    "Reservation",
    "Snapshot",
    "StaleDecisionsError",
    "Start",
    "StateError",
    "Topology",
    "UnknownReferenceError",
    "UnsatisfiableJobError",
    "UsageSample",
    "ValidationError",
    "WorkerPlacement",
    "gpu_flavor",
    "schedule",
    "slice_milli",
]
