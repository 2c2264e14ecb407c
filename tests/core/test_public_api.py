"""The core's public surface is explicit: ``__all__`` is pinned, and the core does no I/O."""

from __future__ import annotations

import ast
import pathlib

import kumo.core

EXPECTED = {
    "DEFAULT_PROFILE", "GPU_MILLI", "ORDER_POLICIES", "Allocation", "Cohort", "ConfigError", "CycleStats",
    "Decisions", "DuplicateError", "FairShareParams", "GrantStanding", "InvalidValueError", "Job", "KumoError",
    "LASParams", "Node",
    "NodeState", "Placement", "Preempt", "Profile", "Programme", "Project", "Queue", "Quota", "QuotaCycleError",
    "Reason", "Reject", "Requeue", "Reservation", "Snapshot", "StaleDecisionsError", "Start", "StateError",
    "Topology", "UnknownReferenceError", "UnsatisfiableJobError", "UsageSample", "ValidationError",
    "WorkerPlacement", "gpu_flavor", "schedule", "slice_milli",
}


def test_all_is_pinned():
    assert set(kumo.core.__all__) == EXPECTED
    for name in kumo.core.__all__:
        assert hasattr(kumo.core, name)


def test_core_imports_nothing_that_does_io():
    """core/ imports only the standard library's pure modules and itself (ARCHITECTURE.md)."""
    allowed = {"__future__", "bisect", "collections", "contextlib", "dataclasses", "enum", "fractions", "gc",
               "heapq", "math", "re", "typing"}  # gc: the collector is paused around core work (decision 0008)
    core = pathlib.Path(kumo.core.__file__).parent
    for path in core.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert name.startswith("kumo.core") or top in allowed, f"{path.name} imports {name}"
