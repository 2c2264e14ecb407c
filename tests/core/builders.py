"""Small fluent builders for core tests (in the spirit of Kueue's test wrappers).

    snap = (cluster()
            .pool("japan-east", "h200", nodes=4, gpus=8, block_size=2)
            .queue("q", {"gpu.h200": 32})
            .job("a", gpus=8, workers=2)
            .snapshot())
"""

from __future__ import annotations

from typing import Any

from kumo.core import (
    Allocation,
    Cohort,
    Job,
    Node,
    Placement,
    Programme,
    Project,
    Queue,
    Quota,
    Snapshot,
    WorkerPlacement,
)


class ClusterBuilder:
    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.queues: list[Queue] = []
        self.cohorts: list[Cohort] = []
        self.programmes: dict[str, Programme] = {}
        self.projects: dict[str, Project] = {}
        self.jobs: list[Job] = []
        self.running: list[Allocation] = []
        self._t = 0.0

    def pool(self, region: str, model: str, nodes: int, gpus: int = 8, block_size: int | None = None,
             prefix: str | None = None, zone: str | None = None, nvlink_size: int | None = None,
             **node_kw: Any) -> ClusterBuilder:
        """``nodes`` nodes named ``{prefix}{i}`` (prefix defaults to the region's initial + model),
        grouped into blocks of ``block_size`` (default: one block)."""
        prefix = prefix if prefix is not None else f"{region.split('-')[-1][0]}{model}-"
        for i in range(nodes):
            block = f"b{i // block_size}" if block_size else "b0"
            nv = f"{prefix}nv{i // nvlink_size}" if nvlink_size else ""
            self.nodes.append(Node(f"{prefix}{i}", region, model, gpus, zone=zone or region, block=block,
                                   nvlink_domain=nv, **node_kw))
        return self

    def node(self, node: Node) -> ClusterBuilder:
        self.nodes.append(node)
        return self

    def cohort(self, name: str, quota: dict[str, Any] | None = None, parent: str | None = None) -> ClusterBuilder:
        self.cohorts.append(Cohort(name, parent=parent, quota=quota or {}))
        return self

    def queue(self, name: str, quota: dict[str, Any] | None = None, cohort: str | None = None,
              project: str | None = None, programme: str = "prog", weight: float = 1.0) -> ClusterBuilder:
        """A queue; by default also a project of the same name in programme ``prog``."""
        self.queues.append(Queue(name, quota=quota or {}, cohort=cohort))
        self.project(project or name, programme, weight)
        return self

    def project(self, name: str, programme: str = "prog", weight: float = 1.0,
                programme_weight: float = 1.0) -> ClusterBuilder:
        if programme not in self.programmes:
            self.programmes[programme] = Programme(programme, programme_weight)
        if name not in self.projects:
            self.projects[name] = Project(name, programme, weight)
        return self

    def job(self, id: str, queue: str = "q", project: str | None = None, **kw: Any) -> ClusterBuilder:
        """A waiting job; ``submit_time`` defaults to the order of the calls."""
        if "submit_time" not in kw:
            kw["submit_time"] = self._t
            self._t += 1.0
        if not kw.get("gpu_milli") and "gpus" not in kw:
            kw["gpus"] = 1
        self.jobs.append(Job(id, queue, project or queue, **kw))
        return self

    def running_job(self, id: str, nodes: list[tuple[str, tuple[int, ...]]], queue: str = "q",
                    project: str | None = None, model: str | None = None, region: str | None = None,
                    start: float = 0.0, gpu_milli: int = 1000, **kw: Any) -> ClusterBuilder:
        """A running job: one worker per ``(node, gpus)`` entry."""
        by_name = {n.name: n for n in self.nodes}
        first = by_name[nodes[0][0]]
        if gpu_milli < 1000:
            kw["gpu_milli"] = gpu_milli
        else:
            kw.setdefault("gpus", len(nodes[0][1]))
        job = Job(id, queue, project or queue, workers=len(nodes), **kw)
        workers = tuple(WorkerPlacement(i, n, g, gpu_milli) for i, (n, g) in enumerate(nodes))
        pl = Placement(model or first.gpu_model, region or first.region, workers)
        self.running.append(Allocation(job, pl, start))
        return self

    def snapshot(self, **kw: Any) -> Snapshot:
        return Snapshot(self.nodes, self.queues, cohorts=self.cohorts,
                        programmes=list(self.programmes.values()), projects=list(self.projects.values()),
                        jobs=self.jobs, running=self.running, **kw)


def cluster() -> ClusterBuilder:
    return ClusterBuilder()


def quota(nominal: float, borrowing_limit: float | None = None, lending_limit: float | None = None) -> Quota:
    return Quota(nominal, borrowing_limit, lending_limit)
