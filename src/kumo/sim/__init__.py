"""kumo's trace-driven simulator: a shell that replays a trace through the scheduling core.

``simulate(trace, cluster, config) -> SimResult``; ``summary(result)`` turns a result into the
figures a planner reads. See ``docs/concepts/simulator.md``.
"""

from kumo.sim.cluster import SimCluster, load_cluster, parse_spec_string
from kumo.sim.engine import JobRecord, SimConfig, SimResult, Simulator, simulate
from kumo.sim.metrics import per_job, summary

__all__ = [
    "JobRecord",
    "SimCluster",
    "SimConfig",
    "SimResult",
    "Simulator",
    "load_cluster",
    "parse_spec_string",
    "per_job",
    "simulate",
    "summary",
]
