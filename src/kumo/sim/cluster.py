"""The simulated cluster: nodes and tenancy from a YAML file or a short spec string.

Two forms are accepted wherever a cluster is asked for:

- a spec string, as Gavel writes clusters: ``v100=8,p100=8,k80=8`` (8 GPUs of each model, one GPU
  per node), or with GPUs per node ``h200=512/8,h100=256/8`` (64 and 32 eight-GPU nodes). Nodes
  are in region ``sim``, one block per model;
- a YAML file in kumo's spec schema (``src/kumo/spec.py``): ``node_groups``, ``programmes``,
  ``projects``, ``cohorts`` and ``queues``; its ``jobs`` and ``running`` are ignored.

Queues and projects that a trace names but the cluster does not define are created: each such
project (weight 1) goes into the programme the trace names for it (``Trace.programme_of``, e.g.
the synthetic generator's programmes) or else programme ``trace``, and each such queue's nominal
quota is the whole cluster of every GPU model — no quota limits, so fair share alone arbitrates.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from kumo.core import GPU_MILLI, Cohort, Node, Programme, Project, Queue
from kumo.core.errors import ValidationError
from kumo.spec import load_spec

_ENTRY = re.compile(r"^\s*([a-z][a-z0-9_-]*)\s*=\s*(\d+)\s*(?:/\s*(\d+))?\s*$")
AUTO_PROGRAMME = "trace"


class ClusterSpecError(ValidationError):
    """A cluster given on the command line that cannot be built."""


@dataclass(slots=True)
class SimCluster:
    nodes: list[Node]
    queues: list[Queue]
    cohorts: list[Cohort] = field(default_factory=list)
    programmes: list[Programme] = field(default_factory=list)
    projects: list[Project] = field(default_factory=list)
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def gpus(self) -> dict[str, int]:
        """Whole GPUs per model."""
        out: dict[str, int] = {}
        for n in self.nodes:
            out[n.gpu_model] = out.get(n.gpu_model, 0) + n.gpus
        return out

    def total_gpus(self) -> int:
        return sum(n.gpus for n in self.nodes)

    def with_tenancy(self, queues: list[str], projects: list[str],
                     programme_of: dict[str, str] | None = None) -> SimCluster:
        """A copy in which every named queue and project exists (see the module docstring);
        ``programme_of`` places new projects in the trace's programmes."""
        have_q = {q.name for q in self.queues}
        have_p = {p.name for p in self.projects}
        new_q = [q for q in queues if q not in have_q]
        new_p = [p for p in projects if p not in have_p]
        owner = {p: (programme_of or {}).get(p, AUTO_PROGRAMME) for p in new_p}
        programmes = list(self.programmes)
        have_g = {g.name for g in programmes}
        programmes += [Programme(g) for g in dict.fromkeys(owner.values()) if g not in have_g]
        whole = {f"gpu.{m}": g for m, g in self.gpus().items()}
        notes = list(self.notes)
        if new_q:
            notes.append(f"{len(new_q)} queue(s) named by the trace were created with the whole cluster as quota")
        return SimCluster(
            self.nodes, self.queues + [Queue(q, whole) for q in new_q], self.cohorts, programmes,
            self.projects + [Project(p, owner[p]) for p in new_p], self.source, notes,
        )


SPLIT_COHORT = "split"


def split_quota(cluster: SimCluster, shares: dict[str, float], queues: list[str]) -> SimCluster:
    """Every queue of ``queues`` with a nominal quota of its share of each GPU model (rounded
    down): the queues named in ``shares`` get those fractions, the others split what is left
    equally. All sit in one cohort without borrowing limits, so idle quota is lent and reclaimed."""
    unknown = [q for q in shares if q not in queues]
    if unknown:
        raise ClusterSpecError("quota split", f"queue {unknown[0]!r} is not in the trace (queues: {', '.join(queues)})")
    if any(not 0 <= v <= 1 for v in shares.values()) or sum(shares.values()) > 1 + 1e-9:
        raise ClusterSpecError("quota split", f"shares must be between 0 and 1 and add up to at most 1, got {shares}")
    rest = [q for q in queues if q not in shares]
    left = max(0.0, 1.0 - sum(shares.values()))
    share = {**{q: left / len(rest) for q in rest}, **shares}
    gpus = cluster.gpus()
    out = [Queue(q, {f"gpu.{m}": math.floor(share[q] * g) for m, g in gpus.items()}, SPLIT_COHORT) for q in queues]
    return SimCluster(cluster.nodes, out, [Cohort(SPLIT_COHORT)], cluster.programmes, cluster.projects,
                      cluster.source, cluster.notes)


def parse_spec_string(text: str, region: str = "sim") -> SimCluster:
    """``v100=8,p100=8,k80=8`` or ``h200=512/8``: GPUs per model, optionally GPUs per node."""
    nodes: list[Node] = []
    seen: set[str] = set()
    for part in text.split(","):
        m = _ENTRY.match(part)
        if m is None:
            raise ClusterSpecError(f"cluster {text!r}", f"expected entries like 'v100=8' or 'h200=512/8', got {part!r}")
        model, total, per = m.group(1), int(m.group(2)), int(m.group(3) or 1)
        if model in seen:
            raise ClusterSpecError(f"cluster {text!r}", f"GPU model {model!r} is given twice")
        seen.add(model)
        if total <= 0 or per <= 0 or total % per:
            raise ClusterSpecError(f"cluster {text!r}", f"{part.strip()}: GPUs must be a positive multiple of "
                                                        f"GPUs per node ({per})")
        nodes += [Node(f"{model}-{i:05d}", region, model, per, block=f"{region}-{model}") for i in range(total // per)]
    return SimCluster(nodes, [], source=text)


def load_cluster(value: str) -> SimCluster:
    """A YAML file if ``value`` names an existing file (or ends in .yaml/.yml), else a spec string."""
    path = Path(value)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        spec = load_spec(path)
        data = spec.snapshot.export()
        notes = ["jobs and running jobs in the cluster file are ignored"] if data["jobs"] or data["running"] else []
        return SimCluster(data["nodes"], data["queues"], data["cohorts"], data["programmes"], data["projects"],
                          str(path), notes)
    return parse_spec_string(value)


def capacity_milli(cluster: SimCluster) -> int:
    return cluster.total_gpus() * GPU_MILLI
