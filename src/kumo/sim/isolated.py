"""Isolated runs for finish-time fairness: each queue's jobs alone on its fair share.

For queue ``q`` with fair share ``s`` (see :func:`kumo.sim.metrics.fair_shares`), the isolated
cluster keeps ``round(s x n)`` of the ``n`` nodes of every GPU model — at least enough nodes of one
model to hold the queue's largest gang — with no quota limits; the queue's jobs are replayed on it
with the same configuration. ρ = (mean JCT in the shared run) / (mean JCT in the isolated run):
below 1 the queue gained from sharing, above 1 it lost (Themis, NSDI'20).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from kumo.core import Node
from kumo.sim.cluster import SimCluster
from kumo.sim.engine import SimResult, simulate
from kumo.sim.metrics import fair_shares
from kumo.traces.base import Trace


def share_cluster(cluster: SimCluster, share: float, largest_gang_gpus: int) -> SimCluster:
    by_model: dict[str, list[Node]] = {}
    for n in cluster.nodes:
        by_model.setdefault(n.gpu_model, []).append(n)
    keep = []
    for nodes in by_model.values():
        keep += nodes[:round(share * len(nodes))]
    if sum(n.gpus for n in keep) < largest_gang_gpus or not keep:
        # the model whose nodes hold the gang with the fewest nodes
        best = min(by_model.values(), key=lambda ns: math.ceil(largest_gang_gpus / ns[0].gpus))
        need = min(len(best), max(1, math.ceil(largest_gang_gpus / best[0].gpus)))
        have = {n.name for n in keep}
        keep += [n for n in best[:need] if n.name not in have]
    return SimCluster(keep, [], source=f"{share:.3f} of {cluster.source}")


def isolated_jcts(result: SimResult, progress: Callable[[str], None] | None = None) -> dict[str, float]:
    """Per queue, the mean JCT of its finished jobs when it runs alone on its fair share."""
    out: dict[str, float] = {}
    shares = fair_shares(result)
    for q, share in shares.items():
        jobs = [rec.trace for rec in result.records.values() if rec.job.queue == q and rec.rejected is None]
        if not jobs:
            continue
        if len(shares) == 1:  # alone on the whole cluster: the shared run is the isolated run
            alone = result
        else:
            largest = max(t.job.total_gpu_milli // 1000 or 1 for t in jobs)
            trace = Trace(list(jobs), result.trace.source, result.trace.format,
                          programme_of=result.trace.programme_of)
            alone = simulate(trace, share_cluster(result.cluster, share, largest), result.config)
        jcts = [r.finish - r.job.submit_time for r in alone.records.values() if r.finish is not None]
        if jcts:
            out[q] = sum(jcts) / len(jcts)
        if progress is not None:
            progress(q)
    return out
