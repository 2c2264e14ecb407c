"""Prometheus exposition of the control plane's metrics."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from kumo.api.metrics import Metrics
from kumo.core import Job, Node, Programme, Project, Queue, Snapshot, schedule


def samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_cycle_and_state_are_exposed() -> None:
    snap = Snapshot([Node("n0", "japan-east", "h200", 8)], [Queue("q", {"gpu.h200": 8})],
                    programmes=[Programme("p")], projects=[Project("x", "p")],
                    jobs=[Job("a", "q", "x", gpus=8), Job("b", "q", "x", gpus=8)])
    m = Metrics()
    m.cycle(schedule(snap, 0.0), 0.004)
    m.state({"q": 1, "other": 3}, {"gpu.h200": 8.0})
    s = samples(m)
    assert s[("kumo_decisions_total", (("kind", "start"),))] == 1
    assert s[("kumo_decisions_total", (("kind", "preempt"),))] == 0
    assert s[("kumo_scheduling_cycle_seconds_count", ())] == 1
    assert s[("kumo_scheduling_cycle_seconds_bucket", (("le", "0.005"),))] == 1
    assert s[("kumo_queue_depth", (("queue", "q"),))] == 1
    assert s[("kumo_running_gpus", (("flavor", "gpu.h200"),))] == 8.0
    m.state({"q": 0}, {})
    s = samples(m)
    assert s[("kumo_queue_depth", (("queue", "other"),))] == 0
    assert s[("kumo_running_gpus", (("flavor", "gpu.h200"),))] == 0


def test_registries_are_separate() -> None:
    a, b = Metrics(), Metrics()
    a.state({"q": 5}, {})
    assert ("kumo_queue_depth", (("queue", "q"),)) not in samples(b)
