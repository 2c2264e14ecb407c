"""Prometheus metrics of the control plane, served at ``/metrics``.

- ``kumo_queue_depth{queue}`` — waiting jobs per queue;
- ``kumo_running_gpus{flavor}`` — GPUs held by running jobs, per flavor (slices count as fractions);
- ``kumo_scheduling_cycle_seconds`` — how long ``schedule()`` took, a histogram;
- ``kumo_decisions_total{kind}`` — decisions by kind: start, preempt, requeue, reject.

Each :class:`Metrics` has its own registry, so several apps (and tests) never share counters.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from kumo.core import Decisions

CONTENT_TYPE = CONTENT_TYPE_LATEST
_CYCLE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.queue_depth = Gauge("kumo_queue_depth", "Waiting jobs per queue.", ["queue"], registry=self.registry)
        self.running_gpus = Gauge("kumo_running_gpus", "GPUs held by running jobs, per flavor.", ["flavor"],
                                  registry=self.registry)
        self.cycle_seconds = Histogram("kumo_scheduling_cycle_seconds", "Duration of one scheduling cycle.",
                                       buckets=_CYCLE_BUCKETS, registry=self.registry)
        self.decisions = Counter("kumo_decisions_total", "Scheduling decisions by kind.", ["kind"],
                                 registry=self.registry)
        self._queues: set[str] = set()
        self._flavors: set[str] = set()
        for kind in ("start", "preempt", "requeue", "reject"):
            self.decisions.labels(kind)  # present at 0 before the first cycle

    def cycle(self, decisions: Decisions, seconds: float) -> None:
        """Count one cycle's decisions and its duration."""
        self.cycle_seconds.observe(seconds)
        for kind, items in (("start", decisions.starts), ("preempt", decisions.preemptions),
                            ("requeue", decisions.requeues), ("reject", decisions.rejects)):
            if items:
                self.decisions.labels(kind).inc(len(items))

    def state(self, queue_depth: Mapping[str, int], running_gpus: Mapping[str, float]) -> None:
        """Set the gauges to the current picture (queues or flavors that vanished drop to 0)."""
        for gauge, seen, values in ((self.queue_depth, self._queues, queue_depth),
                                    (self.running_gpus, self._flavors, running_gpus)):
            for name in seen - set(values):  # zero what is no longer reported
                gauge.labels(name).set(0)
            for name, value in values.items():
                gauge.labels(name).set(value)
            seen.update(values)

    def render(self) -> bytes:
        return generate_latest(self.registry)
