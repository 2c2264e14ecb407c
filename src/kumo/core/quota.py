"""Quota admission over a tree of queues and cohorts.

Each queue and cohort has, per flavor, a nominal quota ``N``, an optional borrowing limit ``B``
and an optional lending limit ``L``. A node's *subtree quota* is its own nominal plus what its
children lend to it::

    SQ(x) = N(x) + sum(lendable(c) for c in children(x))
    lendable(c) = min(L(c), SQ(c)) if L(c) is set else SQ(c)
    guaranteed(c) = SQ(c) - lendable(c)          # never lent to anyone

A child uses its guaranteed part first; only usage above it counts against the parent. The
amount a queue can still take of a flavor is::

    available(x) = SQ(x) - U(x)                                  at the root
    available(x) = max(0, guaranteed(x) - U(x)) + min(parent_available, borrow_room(x))

where ``borrow_room`` enforces the borrowing limit. This is the model of Kueue's hierarchical
cohorts, written from its documented semantics.

Flavors that no node of a tree lists are unmanaged for ``cpu`` and ``mem`` (no limit) and zero for
GPU flavors (a queue must be given GPU quota, directly or through its cohort, to use GPUs).
"""

from __future__ import annotations

from typing import Any

from kumo.core.errors import QuotaCycleError, UnknownReferenceError
from kumo.core.explain import holding
from kumo.core.model import Cohort, Queue, quota_units
from kumo.core.resources import is_gpu_flavor

INF = 1 << 62


class QuotaTree:
    """Quota nodes (queues and cohorts), their limits, and their current usage."""

    __slots__ = (
        "_available",
        "_potential",
        "borrow",
        "children",
        "guaranteed",
        "index",
        "is_cohort",
        "lend",
        "managed",
        "names",
        "nominal",
        "parent",
        "root",
        "subtree",
        "usage",
        "version",
    )

    def __init__(self, queues: list[Queue], cohorts: list[Cohort], flavors: set[str]):
        self.names: list[str] = []
        self.is_cohort: list[bool] = []
        self.index: dict[tuple[bool, str], int] = {}
        specs: list[Queue | Cohort] = []
        for c in sorted(cohorts, key=lambda c: c.name):
            self._add(True, c.name)
            specs.append(c)
        for q in sorted(queues, key=lambda q: q.name):
            self._add(False, q.name)
            specs.append(q)
        n = len(specs)
        self.parent: list[int] = [-1] * n
        for i, spec in enumerate(specs):
            ref = spec.parent if isinstance(spec, Cohort) else spec.cohort
            if ref is None:
                continue
            kind = "cohort" if isinstance(spec, Cohort) else "queue"
            p = self.index.get((True, ref))
            if p is None:
                raise UnknownReferenceError(f"{kind} {spec.name!r}", f"cohort {ref!r} does not exist")
            self.parent[i] = p
        self._check_cycles()
        self.children: list[list[int]] = [[] for _ in range(n)]
        for i, p in enumerate(self.parent):
            if p >= 0:
                self.children[p].append(i)
        self.root = [self._root_of(i) for i in range(n)]
        self.nominal: list[dict[str, int]] = [{} for _ in range(n)]
        self.borrow: list[dict[str, int]] = [{} for _ in range(n)]
        self.lend: list[dict[str, int]] = [{} for _ in range(n)]
        listed: dict[int, set[str]] = {}
        for i, spec in enumerate(specs):
            kind = "cohort" if isinstance(spec, Cohort) else "queue"
            for flavor, limits in spec.quotas().items():
                if flavor not in flavors:
                    raise UnknownReferenceError(
                        f"{kind} {spec.name!r} quota",
                        f"flavor {flavor!r} is not in the inventory (known: {', '.join(sorted(flavors))})",
                    )
                nom, bl, ll = quota_units(flavor, limits)
                self.nominal[i][flavor] = nom
                if bl is not None:
                    self.borrow[i][flavor] = bl
                if ll is not None:
                    self.lend[i][flavor] = ll
                listed.setdefault(self.root[i], set()).add(flavor)
        gpu_flavors = {f for f in flavors if is_gpu_flavor(f)}
        self.managed = [gpu_flavors | listed.get(self.root[i], set()) for i in range(n)]
        self.subtree: list[dict[str, int]] = [{} for _ in range(n)]
        self.guaranteed: list[dict[str, int]] = [{} for _ in range(n)]
        for i in self._postorder():
            for f in self.managed[i]:
                sq = self.nominal[i].get(f, 0)
                for child in self.children[i]:
                    sq += self.subtree[child][f] - self.guaranteed[child][f]
                self.subtree[i][f] = sq
                lend = self.lend[i].get(f)
                self.guaranteed[i][f] = sq - min(lend, sq) if lend is not None else 0
        self.usage: list[dict[str, int]] = [dict.fromkeys(self.managed[i], 0) for i in range(n)]
        self._potential: dict[tuple[int, str], int] = {}
        self._available: dict[tuple[int, str], int] = {}  # cleared by every change of usage
        self.version = 0  # counts changes of usage

    def _add(self, cohort: bool, name: str) -> None:
        self.index[(cohort, name)] = len(self.names)
        self.names.append(name)
        self.is_cohort.append(cohort)

    def _check_cycles(self) -> None:
        for start in range(len(self.parent)):
            seen = [start]
            p = self.parent[start]
            while p >= 0:
                if p in seen:
                    loop = " -> ".join(self.names[i] for i in [*seen[seen.index(p):], p])
                    raise QuotaCycleError(f"cohort {self.names[p]!r}", f"parents form a cycle: {loop}")
                seen.append(p)
                p = self.parent[p]

    def _root_of(self, i: int) -> int:
        while self.parent[i] >= 0:
            i = self.parent[i]
        return i

    def _postorder(self) -> list[int]:
        depth = []
        for i in range(len(self.parent)):
            d, p = 0, self.parent[i]
            while p >= 0:
                d, p = d + 1, self.parent[p]
            depth.append(d)
        return sorted(range(len(self.parent)), key=lambda i: -depth[i])

    def clone(self) -> QuotaTree:
        c = QuotaTree.__new__(QuotaTree)
        for name in self.__slots__:
            setattr(c, name, getattr(self, name))
        c.usage = [u.copy() for u in self.usage]
        c._available = {}
        return c

    # ---- queries -----------------------------------------------------------------------
    def queue(self, name: str) -> int | None:
        return self.index.get((False, name))

    def available(self, x: int, flavor: str) -> int:
        """How much more of ``flavor`` node ``x`` may use now (``INF`` if unmanaged)."""
        if flavor not in self.managed[x]:
            return INF
        key = (x, flavor)
        found = self._available.get(key)
        if found is None:
            found = self._available[key] = self._compute_available(x, flavor)
        return found

    def _compute_available(self, x: int, flavor: str) -> int:
        u = self.usage[x][flavor]
        p = self.parent[x]
        if p < 0:
            return self.subtree[x][flavor] - u
        g = self.guaranteed[x][flavor]
        room = self.available(p, flavor)
        bl = self.borrow[x].get(flavor)
        if bl is not None:
            stored = self.subtree[x][flavor] - g
            used_in_parent = max(0, u - g)
            room = min(room, stored - used_in_parent + bl)
        return max(0, g - u) + room

    def fits(self, x: int, request: dict[str, int]) -> str | None:
        """``None`` if ``request`` fits node ``x`` now, else the first flavor that does not."""
        for flavor, amount in request.items():
            if amount > self.available(x, flavor):
                return flavor
        return None

    def potential(self, x: int, flavor: str) -> int:
        """The most of ``flavor`` that ``x`` could ever hold, with every other queue idle."""
        key = (x, flavor)
        cached = self._potential.get(key)
        if cached is None:
            saved, saved_available = self.usage, self._available
            self.usage, self._available = [dict.fromkeys(u, 0) for u in saved], {}
            try:
                cached = self._potential[key] = self.available(x, flavor)
            finally:
                self.usage, self._available = saved, saved_available
        return cached

    def borrowing(self, x: int, flavor: str) -> bool:
        """Whether queue ``x`` uses more of ``flavor`` than its nominal quota."""
        return flavor in self.managed[x] and self.usage[x][flavor] > self.nominal[x].get(flavor, 0)

    def describe_parts(self, x: int, flavor: str, need: int = 0) -> tuple[Any, ...]:
        """Values for a quota reason, captured now and rendered later:
        (used, nominal, borrowing limit if it is what blocks, cohort name, cohort idle)."""
        used = self.usage[x].get(flavor, 0)
        nominal = self.nominal[x].get(flavor, 0)
        p = self.parent[x]
        if p < 0:
            return (used, nominal, None, None, 0)
        bl = self.borrow[x].get(flavor)
        if bl is not None and used + need > nominal + bl:
            return (used, nominal, bl, self.names[p], 0)
        return (used, nominal, None, self.names[p], self.available(p, flavor))

    def describe(self, x: int, flavor: str, need: int = 0) -> str:
        """``'queue nlp-lab holds 64/64 gpu.h200 and cohort geniac has no idle quota'``."""
        return holding(flavor, self.holder(x), self.describe_parts(x, flavor, need))

    def holder(self, x: int) -> str:
        return f"{'cohort' if self.is_cohort[x] else 'queue'} {self.names[x]}"


    # ---- updates -----------------------------------------------------------------------
    def add(self, x: int, request: dict[str, int], sign: int = 1) -> None:
        """Add (``sign=1``) or remove (``sign=-1``) usage at queue ``x`` and up its cohorts."""
        self._available.clear()
        self.version += 1
        for flavor, amount in request.items():
            if flavor not in self.managed[x]:
                continue
            delta = sign * amount
            node = x
            while delta and node >= 0:
                u = self.usage[node]
                g = self.guaranteed[node][flavor]
                before = max(0, u[flavor] - g)
                u[flavor] += delta
                delta = max(0, u[flavor] - g) - before
                node = self.parent[node]
