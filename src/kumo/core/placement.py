"""Place a whole gang or nothing on one pool.

Whole-GPU gangs, in order of preference:

1. one node, best fit (the node with the fewest free GPUs that still holds the gang);
2. one NVLink domain, where domains span several nodes (NVL72-style racks);
3. the fewest nodes: if one block can hold the gang on as few nodes as the whole pool could, use
   the best-fitting such block, else one zone, else span the pool — always largest nodes first
   and the best-fitting node for the remainder, so that whole nodes stay whole.

A ``topology`` requirement turns a preference into a rule. Fractional workers go to the partly
used GPU with the least room that still fits, else open a GPU on the fullest node that has one.

``exclude`` holds nodes (local ids) the job may not use: nodes reserved by EASY backfill for a
job that this one would otherwise delay.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

from kumo.core import explain
from kumo.core.explain import Reason
from kumo.core.model import Topology
from kumo.core.pools import Cluster, GroupLevel, PoolIndex
from kumo.core.resources import GPU_MILLI, format_amount

NO_EXCLUDE: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class Shape:
    """What a gang needs per worker, and how many workers."""

    workers: int
    gpus: int  # whole GPUs per worker (0 for a slice)
    milli: int  # slice per worker (0 for whole GPUs)
    cpu: int
    mem: int
    topology: Topology | None

    @property
    def total_gpus_text(self) -> str:
        if self.gpus:
            return str(self.workers * self.gpus)
        return format_amount("gpu.x", self.workers * self.milli)


Slot = tuple[int, tuple[int, ...], int]  # (global node, GPU indices, milli per GPU)


def place(cluster: Cluster, pool: PoolIndex, shape: Shape, exclude: frozenset[int] = NO_EXCLUDE) -> list[Slot] | Reason:
    """Slots for every worker (rank order), or why the gang does not fit now."""
    if shape.milli:
        return _place_slices(cluster, pool, shape, exclude)
    chosen = _choose_nodes(cluster, pool, shape, exclude)
    if isinstance(chosen, Reason):
        return chosen
    slots: list[Slot] = []
    t = cluster.table
    for n, count in chosen:
        free = [i for i, v in enumerate(t.gpu_free[n]) if v == GPU_MILLI]
        for w in range(count):
            slots.append((n, tuple(free[w * shape.gpus : (w + 1) * shape.gpus]), GPU_MILLI))
    return slots


# --------------------------------------------------------------------------- whole GPUs


class _Ctx:
    __slots__ = ("cluster", "exclude", "pool", "shape")

    def __init__(self, cluster: Cluster, pool: PoolIndex, shape: Shape, exclude: frozenset[int]):
        self.cluster, self.pool, self.shape, self.exclude = cluster, pool, shape, exclude

    def cap(self, local: int) -> int:
        """Workers node ``local`` can hold now."""
        if local in self.exclude:
            return 0
        s, t = self.shape, self.cluster.table
        n = self.pool.nodes[local]
        c = self.pool.fw[local] // s.gpus
        if s.cpu and t.cpu_cap[n]:
            c = min(c, t.cpu_free[n] // s.cpu)
        if s.mem and t.mem_cap[n]:
            c = min(c, t.mem_free[n] // s.mem)
        return c

    def hist(self, level: GroupLevel | None, group: int) -> list[int]:
        h = self.pool.buckets if level is None else None
        base = [len(b) for b in h] if h is not None else level.hist[group][:]  # type: ignore[union-attr]
        for e in self.exclude:
            if level is None or level.group_of[e] == group:
                base[self.pool.fw[e]] -= 1
        return base


def _capacity(hist: list[int], g: int) -> int:
    return sum((k // g) * hist[k] for k in range(g, len(hist)))


def _min_nodes(hist: list[int], g: int, workers: int) -> int | None:
    """Fewest nodes that hold ``workers`` g-GPU workers, by GPU counts alone."""
    rem, nodes = workers, 0
    for k in range(len(hist) - 1, g - 1, -1):
        per = k // g
        if not hist[k] or not per:
            continue
        take = min(hist[k], -(-rem // per))
        nodes += take
        rem -= take * per
        if rem <= 0:
            return nodes
    return None


def _pick(ctx: _Ctx, locals_: list[int], tiebreak: dict[int, int] | None = None) -> list[tuple[int, int]] | None:
    """Largest nodes first; the best-fitting node for the remainder."""
    items = []
    for local in locals_:
        c = ctx.cap(local)
        if c > 0:
            items.append((-c, tiebreak.get(local, 0) if tiebreak else 0, local))
    items.sort()
    rem = ctx.shape.workers
    out: list[tuple[int, int]] = []
    i = 0
    while rem > 0 and i < len(items):
        c = -items[i][0]
        if c >= rem:
            j = i
            while j + 1 < len(items) and -items[j + 1][0] >= rem:
                j += 1
            while j > i and -items[j - 1][0] == -items[j][0]:
                j -= 1
            out.append((items[j][2], rem))
            rem = 0
            break
        out.append((items[i][2], c))
        rem -= c
        i += 1
    if rem > 0:
        return None
    nodes = ctx.pool.nodes
    return [(nodes[local], count) for local, count in out]


def _single_node(ctx: _Ctx) -> list[tuple[int, int]] | None:
    s, pool = ctx.shape, ctx.pool
    for k in range(s.workers * s.gpus, pool.gmax + 1):
        for local in pool.buckets[k]:
            if ctx.cap(local) >= s.workers:
                return [(pool.nodes[local], s.workers)]
    return None


def _best_group(ctx: _Ctx, level_name: str) -> tuple[int, int, int] | None:
    """(min nodes, leftover workers, group) of the best group that can hold the gang."""
    level = ctx.pool.levels[level_name]
    s = ctx.shape
    best: tuple[int, int, int] | None = None
    for gi in range(len(level.names)):
        hist = ctx.hist(level, gi) if ctx.exclude else level.hist[gi]
        cap = _capacity(hist, s.gpus)
        if cap < s.workers:
            continue
        m = _min_nodes(hist, s.gpus, s.workers)
        if m is not None and (best is None or (m, cap - s.workers, gi) < best):
            best = (m, cap - s.workers, gi)
    return best


def _largest_group(ctx: _Ctx, level_name: str) -> int:
    level = ctx.pool.levels[level_name]
    return max((_capacity(ctx.hist(level, gi), ctx.shape.gpus) for gi in range(len(level.names))), default=0)


def _choose_nodes(
    cluster: Cluster, pool: PoolIndex, shape: Shape, exclude: frozenset[int]
) -> list[tuple[int, int]] | Reason:
    ctx = _Ctx(cluster, pool, shape, exclude)
    g, w, topo = shape.gpus, shape.workers, shape.topology
    pool_hist = ctx.hist(None, 0)
    if _capacity(pool_hist, g) < w:
        return _no_room(ctx, pool_hist)
    if w * g <= pool.gmax and (found := _single_node(ctx)):
        return found
    if topo is Topology.NODE:
        return _too_spread(ctx, "one node", pool.largest_free_node())
    if pool.multi_node_nvlink:
        best = _best_group(ctx, "nvlink")
        if best and (found := _pick(ctx, pool.levels["nvlink"].members[best[2]])) and _respects(ctx, found):
            return found
    if topo is Topology.NVLINK:
        return _too_spread(ctx, "one NVLink domain", _largest_group(ctx, "nvlink") * g)
    fewest = _min_nodes(pool_hist, g, w)
    for level_name, required in (("block", Topology.BLOCK), ("zone", Topology.ZONE)):
        best = _best_group(ctx, level_name)
        if best and (best[0] == fewest or topo is required):
            members = pool.levels[level_name].members[best[2]]
            if (found := _pick(ctx, members, _block_tiebreak(ctx))):
                return found
        if topo is required:
            return _too_spread(ctx, f"one {level_name}", _largest_group(ctx, level_name) * g)
    found = _pick(ctx, list(range(len(pool.nodes))), _block_tiebreak(ctx))
    if found:
        return found
    return explain.placement(
        f"needs {w} workers x {g} {pool.model} GPUs in {pool.region}; the free GPUs are on nodes "
        "without enough CPU or memory"
    )


def _respects(ctx: _Ctx, chosen: list[tuple[int, int]]) -> bool:
    """Whether nodes chosen at a finer level also keep a required block or zone."""
    topo = ctx.shape.topology
    if topo not in (Topology.BLOCK, Topology.ZONE):
        return True
    level = ctx.pool.levels["block" if topo is Topology.BLOCK else "zone"]
    t = ctx.cluster.table
    return len({level.group_of[t.pool_local[n]] for n, _ in chosen}) == 1


def _block_tiebreak(ctx: _Ctx) -> dict[int, int]:
    """Among nodes with equal room, prefer those in blocks with more room (fewer blocks spanned)."""
    level = ctx.pool.levels["block"]
    room = [-_capacity(h, ctx.shape.gpus) for h in level.hist]
    return {local: room[level.group_of[local]] for local in range(len(ctx.pool.nodes))}


def _no_room(ctx: _Ctx, hist: list[int]) -> Reason:
    s, pool = ctx.shape, ctx.pool
    free = sum(k * c for k, c in enumerate(hist))
    largest = max((k for k, c in enumerate(hist) if c), default=0)
    what = f"{s.workers} workers x {s.gpus}" if s.workers > 1 and s.gpus > 1 else str(s.workers * s.gpus)
    return explain.placement(
        f"needs {what} {pool.model} GPUs in {pool.region}; {free} free, the largest free node has {largest}"
    )


def _too_spread(ctx: _Ctx, where: str, largest: int) -> Reason:
    s, pool = ctx.shape, ctx.pool
    return explain.placement(
        f"needs {s.workers * s.gpus} {pool.model} GPUs in {where} in {pool.region}; "
        f"the largest free {where.removeprefix('one ')} has {largest}"
    )


# --------------------------------------------------------------------------- slices


def _node_fits(cluster: Cluster, n: int, shape: Shape) -> bool:
    t = cluster.table
    if shape.cpu and t.cpu_cap[n] and t.cpu_free[n] < shape.cpu:
        return False
    return not (shape.mem and t.mem_cap[n] and t.mem_free[n] < shape.mem)


def _one_slice(cluster: Cluster, pool: PoolIndex, shape: Shape, exclude: frozenset[int],
               within: set[int] | None) -> Slot | None:
    m = shape.milli
    i = bisect_left(pool.partial, (m, -1, -1))
    for _free, local, gpu in pool.partial[i:]:
        if local in exclude or (within is not None and local not in within):
            continue
        n = pool.nodes[local]
        if _node_fits(cluster, n, shape):
            return (n, (gpu,), m)
    for k in range(1, pool.gmax + 1):
        for local in pool.buckets[k]:
            if local in exclude or (within is not None and local not in within):
                continue
            n = pool.nodes[local]
            if _node_fits(cluster, n, shape):
                gpu = cluster.table.gpu_free[n].index(GPU_MILLI)
                return (n, (gpu,), m)
    return None


_LEVEL = {Topology.NVLINK: "nvlink", Topology.BLOCK: "block", Topology.ZONE: "zone"}


def _place_slices(cluster: Cluster, pool: PoolIndex, shape: Shape, exclude: frozenset[int]) -> list[Slot] | Reason:
    if shape.workers == 1 or shape.topology is None:
        groups: list[set[int] | None] = [None]
    elif shape.topology is Topology.NODE:
        groups = [{local} for local in range(len(pool.nodes))]
    else:
        groups = [set(m) for m in pool.levels[_LEVEL[shape.topology]].members]
    slots: list[Slot] = []
    for within in groups:
        slots = _slices_within(cluster, pool, shape, exclude, within)
        if len(slots) == shape.workers:
            return slots
    largest = max((v for v, _, _ in pool.partial), default=0)
    if pool.largest_free_node():
        largest = GPU_MILLI
    where = f" within one {shape.topology.value}" if shape.topology is not None and shape.workers > 1 else ""
    return explain.placement(
        f"needs {shape.workers} slice{'s' if shape.workers > 1 else ''} of "
        f"{format_amount('gpu.x', shape.milli)} {pool.model} GPU{where} in {pool.region}; "
        f"the roomiest GPU has {format_amount('gpu.x', largest)} free"
    )


def _slices_within(cluster: Cluster, pool: PoolIndex, shape: Shape, exclude: frozenset[int],
                   within: set[int] | None) -> list[Slot]:
    slots: list[Slot] = []
    for _ in range(shape.workers):
        slot = _one_slice(cluster, pool, shape, exclude, within)
        if slot is None:
            break
        slots.append(slot)
        if shape.workers > 1:
            cluster.take(slot[0], slot[1], slot[2], shape.cpu, shape.mem)
            pool = cluster.pools[pool.id]  # a write may have replaced the index (copy on write)
    if shape.workers > 1:
        for n, gpus, milli in slots:
            cluster.give(n, gpus, milli, shape.cpu, shape.mem)
    return slots
