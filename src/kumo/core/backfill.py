"""EASY backfill: the first job in order that cannot start gets a reservation in one pool.

To find when it could start, kumo replays the pool's future: running jobs end at their expected
times (start + walltime estimate, else limit, at the speed of their GPU model; jobs past it are
taken to end now), freeing their GPUs, until the job fits. The nodes it would use then are
*reserved*: a later job may use them only if it ends before the reservation starts. Jobs
without an estimate or limit never end in this replay, so a pool whose running jobs have none
gets no reservation. One reservation per pool (EASY); slices get none.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from kumo.core.model import NodeState
from kumo.core.placement import Shape, _choose_nodes
from kumo.core.pools import Cluster, PoolIndex
from kumo.core.resources import GPU_MILLI

MAX_ATTEMPTS = 32


@dataclass(frozen=True, slots=True)
class Hold:
    """A reservation as the cycle enforces it."""

    job_id: str
    pool: int
    start_at: float
    nodes: frozenset[int]  # local ids in the pool
    gpus: tuple[tuple[int, int], ...]  # (global node, GPUs)


def reserve(cluster: Cluster, pool: PoolIndex, shape: Shape, job_id: str, now: float,
            ends: list[tuple[float, str]], takes_of: dict[str, list[tuple[int, tuple[int, ...], int, int, int]]]
            ) -> Hold | None:
    """Earliest start of ``shape`` in ``pool`` as running jobs end, and the nodes it would use."""
    if shape.milli:
        return None
    t = cluster.table
    future = pool.clone()
    gpu_free: dict[int, list[int]] = {}
    bare = replace(shape, cpu=0, mem=0)
    attempts = 0
    i = 0
    while i < len(ends):
        at = max(ends[i][0], now)
        while i < len(ends) and max(ends[i][0], now) == at:
            for n, gpus, milli, _, _ in takes_of[ends[i][1]]:
                free = gpu_free.get(n)
                if free is None:
                    free = gpu_free[n] = t.gpu_free[n][:]
                for g in gpus:
                    free[g] += milli
                if t.state[n] is NodeState.UP:
                    future.set_free(t.pool_local[n], free.count(GPU_MILLI))
            i += 1
        if future.worker_capacity(shape.gpus) < shape.workers:
            continue
        chosen = _choose_nodes(cluster, future, bare, frozenset())
        if not isinstance(chosen, list):
            attempts += 1
            if attempts >= MAX_ATTEMPTS:
                return None
            continue
        nodes = frozenset(t.pool_local[n] for n, _ in chosen)
        return Hold(job_id, pool.id, at, nodes, tuple((n, c * shape.gpus) for n, c in chosen))
    return None
