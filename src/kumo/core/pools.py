"""Node state and per-pool indexes that make placement fast.

A *pool* is the set of nodes with one GPU model in one region (``japan-east/h200``). For each
pool kumo keeps, per node, the number of wholly free GPUs, bucketed (``buckets[k]`` holds the
nodes with ``k`` free GPUs, sorted), a histogram of those counts per topology group (NVLink
domain, block, zone), and the partly used GPUs sorted by free milli-GPUs (for slices).

Everything here is plain in-memory data. ``Cluster.clone()`` is cheap so that a scheduling cycle
can work on a private copy and leave the snapshot untouched: flat per-node lists are copied, while
a node's per-GPU row and a pool's index are copied only when the cycle first writes to them.
"""

from __future__ import annotations

from bisect import bisect_left, insort

from kumo.core.model import Node, NodeState
from kumo.core.resources import GPU_MILLI

LEVELS = ("nvlink", "block", "zone")


class GroupLevel:
    """One topology level of a pool: which group each node is in, and a histogram per group."""

    __slots__ = ("group_of", "hist", "members", "names")

    def __init__(self, names: list[str], group_of: list[int], members: list[list[int]], gmax: int):
        self.names = names
        self.group_of = group_of
        self.members = members
        self.hist = [[0] * (gmax + 1) for _ in names]

    def clone(self) -> GroupLevel:
        c = GroupLevel.__new__(GroupLevel)
        c.names, c.group_of, c.members = self.names, self.group_of, self.members
        c.hist = [h[:] for h in self.hist]
        return c


class PoolIndex:
    """Free-capacity index of one pool (region x GPU model)."""

    __slots__ = ("buckets", "free_total", "fw", "gmax", "id", "levels", "model", "multi_node_nvlink",
                 "nodes", "partial", "partial_total", "region")

    def __init__(self, pool_id: int, region: str, model: str, nodes: list[int], table: NodeTable):
        self.id = pool_id
        self.region = region
        self.model = model
        self.nodes = nodes  # global ids, sorted by name; position = local id
        self.gmax = max(table.gpus[n] for n in nodes)
        self.fw = [0] * len(nodes)
        self.buckets: list[list[int]] = [[] for _ in range(self.gmax + 1)]
        self.buckets[0] = list(range(len(nodes)))
        self.partial: list[tuple[int, int, int]] = []
        self.free_total = 0  # wholly free GPUs on schedulable nodes
        self.partial_total = 0  # free milli-GPUs on partly used GPUs
        self.levels: dict[str, GroupLevel] = {}
        for level in LEVELS:
            labels = [table.label(level, n) for n in nodes]
            names = sorted(set(labels))
            pos = {name: i for i, name in enumerate(names)}
            group_of = [pos[lab] for lab in labels]
            members: list[list[int]] = [[] for _ in names]
            for local, g in enumerate(group_of):
                members[g].append(local)
            self.levels[level] = GroupLevel(names, group_of, members, self.gmax)
            for g in range(len(names)):
                self.levels[level].hist[g][0] = len(members[g])
        self.multi_node_nvlink = any(len(m) > 1 for m in self.levels["nvlink"].members)

    def clone(self) -> PoolIndex:
        c = PoolIndex.__new__(PoolIndex)
        c.id, c.region, c.model, c.nodes, c.gmax = self.id, self.region, self.model, self.nodes, self.gmax
        c.multi_node_nvlink = self.multi_node_nvlink
        c.fw = self.fw[:]
        c.buckets = [b[:] for b in self.buckets]
        c.partial = self.partial[:]
        c.free_total, c.partial_total = self.free_total, self.partial_total
        c.levels = {k: v.clone() for k, v in self.levels.items()}
        return c

    @property
    def name(self) -> str:
        return f"{self.region}/{self.model}"

    # ---- updates ---------------------------------------------------------------------
    def set_free(self, local: int, value: int) -> None:
        old = self.fw[local]
        if old == value:
            return
        self.fw[local] = value
        self.free_total += value - old
        b = self.buckets[old]
        del b[bisect_left(b, local)]
        insort(self.buckets[value], local)
        for level in self.levels.values():
            h = level.hist[level.group_of[local]]
            h[old] -= 1
            h[value] += 1

    def drop_partial(self, free: int, local: int, gpu: int) -> None:
        p = self.partial
        del p[bisect_left(p, (free, local, gpu))]
        self.partial_total -= free

    def add_partial(self, free: int, local: int, gpu: int) -> None:
        insort(self.partial, (free, local, gpu))
        self.partial_total += free

    # ---- queries ---------------------------------------------------------------------
    def free_gpus(self) -> int:
        return self.free_total

    def worker_capacity(self, g: int) -> int:
        """How many g-GPU workers the pool could hold, ignoring CPU and memory."""
        return sum((k // g) * len(self.buckets[k]) for k in range(g, self.gmax + 1))

    def largest_free_node(self) -> int:
        for k in range(self.gmax, 0, -1):
            if self.buckets[k]:
                return k
        return 0


class NodeTable:
    """Static node attributes and mutable free resources, indexed by a dense node id."""

    __slots__ = ("_owned", "block", "cpu_cap", "cpu_free", "domain", "gpu_free", "gpus", "index", "mem_cap",
                 "mem_free", "model", "names", "pool_local", "pool_of", "region", "state", "zone")

    def __init__(self, nodes: list[Node]):
        ordered = sorted(nodes, key=lambda n: n.name)
        self.names = [n.name for n in ordered]
        self.index = {name: i for i, name in enumerate(self.names)}
        self.region = [n.region for n in ordered]
        self.zone = [n.zone for n in ordered]
        self.block = [n.block for n in ordered]
        self.domain = [n.nvlink_domain for n in ordered]
        self.model = [n.gpu_model for n in ordered]
        self.gpus = [n.gpus for n in ordered]
        self.cpu_cap = [n.cpu_milli for n in ordered]
        self.mem_cap = [n.mem_mib for n in ordered]
        self.state = [n.state for n in ordered]
        self.gpu_free = [[GPU_MILLI] * n.gpus for n in ordered]
        self.cpu_free = self.cpu_cap[:]
        self.mem_free = self.mem_cap[:]
        self.pool_of = [0] * len(ordered)
        self.pool_local = [0] * len(ordered)
        self._owned: set[int] | None = None  # None: every row is this table's own

    def label(self, level: str, n: int) -> str:
        if level == "nvlink":
            return self.domain[n]
        if level == "block":
            return f"{self.zone[n]}/{self.block[n]}"
        return self.zone[n]

    def clone(self) -> NodeTable:
        c = NodeTable.__new__(NodeTable)
        for name in ("names", "index", "region", "zone", "block", "domain", "model", "gpus",
                     "cpu_cap", "mem_cap", "pool_of", "pool_local"):
            setattr(c, name, getattr(self, name))
        c.state = self.state[:]
        c.gpu_free = self.gpu_free[:]  # rows are shared until written (copy on write)
        c._owned = set()
        c.cpu_free = self.cpu_free[:]
        c.mem_free = self.mem_free[:]
        return c

    def gpus_for_write(self, n: int) -> list[int]:
        """Node ``n``'s per-GPU free milli, owned by this table (copied on first write)."""
        owned = self._owned
        if owned is not None and n not in owned:
            self.gpu_free[n] = self.gpu_free[n][:]
            owned.add(n)
        return self.gpu_free[n]


class Cluster:
    """All nodes and their pools; the mutable half of a snapshot's cluster picture."""

    __slots__ = ("_own_pools", "pool_by_key", "pools", "table")

    def __init__(self, nodes: list[Node]):
        self.table = NodeTable(nodes)
        t = self.table
        keys = sorted({(t.region[n], t.model[n]) for n in range(len(t.names))})
        self.pool_by_key = {k: i for i, k in enumerate(keys)}
        members: list[list[int]] = [[] for _ in keys]
        for n in range(len(t.names)):
            p = self.pool_by_key[(t.region[n], t.model[n])]
            t.pool_of[n] = p
            t.pool_local[n] = len(members[p])
            members[p].append(n)
        self.pools = [PoolIndex(i, k[0], k[1], members[i], t) for i, k in enumerate(keys)]
        self._own_pools: list[bool] | None = None  # None: every pool index is this cluster's own
        for n in range(len(t.names)):
            self.refresh(n, None)

    def clone(self) -> Cluster:
        c = Cluster.__new__(Cluster)
        c.table = self.table.clone()
        c.pool_by_key = self.pool_by_key
        c.pools = self.pools[:]  # shared until written (copy on write)
        c._own_pools = [False] * len(self.pools)
        return c

    def pool_for_write(self, p: int) -> PoolIndex:
        own = self._own_pools
        if own is not None and not own[p]:
            self.pools[p] = self.pools[p].clone()
            own[p] = True
        return self.pools[p]

    # ---- mutation primitives -----------------------------------------------------------
    def refresh(self, n: int, before: list[int] | None) -> None:
        """Bring node ``n``'s pool entries up to date after its GPUs or state changed.

        ``before`` is the node's per-GPU free milli before the change (``None``: the node was
        not indexed yet, or was not schedulable).
        """
        t = self.table
        pool = self.pool_for_write(t.pool_of[n])
        local = t.pool_local[n]
        up = t.state[n] is NodeState.UP
        if before is not None:
            for g, v in enumerate(before):
                if 0 < v < GPU_MILLI:
                    pool.drop_partial(v, local, g)
        free = t.gpu_free[n]
        if up:
            for g, v in enumerate(free):
                if 0 < v < GPU_MILLI:
                    pool.add_partial(v, local, g)
        pool.set_free(local, free.count(GPU_MILLI) if up else 0)

    def indexed_before(self, n: int) -> list[int] | None:
        t = self.table
        return t.gpu_free[n][:] if t.state[n] is NodeState.UP else None

    def take(self, n: int, gpus: tuple[int, ...], milli: int, cpu: int, mem: int) -> None:
        before = self.indexed_before(n)
        t = self.table
        free = t.gpus_for_write(n)
        for g in gpus:
            free[g] -= milli
        t.cpu_free[n] -= cpu
        t.mem_free[n] -= mem
        self.refresh(n, before)

    def give(self, n: int, gpus: tuple[int, ...], milli: int, cpu: int, mem: int) -> None:
        before = self.indexed_before(n)
        t = self.table
        free = t.gpus_for_write(n)
        for g in gpus:
            free[g] += milli
        t.cpu_free[n] += cpu
        t.mem_free[n] += mem
        self.refresh(n, before)

    def set_state(self, n: int, state: NodeState) -> None:
        before = self.indexed_before(n)
        self.table.state[n] = state
        self.refresh(n, before)
