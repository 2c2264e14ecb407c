"""Hierarchical fair share over programme -> project (in the spirit of Slurm's Fair Tree and
Kueue's fair sharing).

An entity's *usage* per flavor is what it runs now plus its decayed past usage expressed as an
average rate (``decayed resource-seconds x ln2 / half_life``, so a constant load ``A`` held
forever has past usage ``A``), the latter scaled by ``history_weight``. Its *share* is its
dominant usage across flavors, each divided by the cluster's capacity of that flavor, divided by
its weight. The cycle always serves the programme with the lowest share, and within it the
project with the lowest share; a start updates both at once.
"""

from __future__ import annotations

import heapq
import math

from kumo.core.model import UsageSample
from kumo.core.profile import FairShareParams


class FairShareState:
    """Per-project running usage (exact, integer) and past usage samples."""

    __slots__ = ("alloc", "history", "index", "names", "prog_index", "prog_names", "prog_of",
                 "prog_weight", "weight")

    def __init__(self, programmes: list[tuple[str, float]], projects: list[tuple[str, str, float]]):
        self.prog_names = [p for p, _ in programmes]
        self.prog_index = {p: i for i, p in enumerate(self.prog_names)}
        self.prog_weight = [w for _, w in programmes]
        self.names = [p for p, _, _ in projects]
        self.index = {p: i for i, p in enumerate(self.names)}
        self.prog_of = [self.prog_index[prog] for _, prog, _ in projects]
        self.weight = [w for _, _, w in projects]
        self.alloc: list[dict[str, int]] = [{} for _ in projects]
        self.history: list[list[UsageSample]] = [[] for _ in projects]

    def clone(self) -> FairShareState:
        c = FairShareState.__new__(FairShareState)
        for name in self.__slots__:
            setattr(c, name, getattr(self, name))
        c.alloc = [a.copy() for a in self.alloc]
        return c

    def add(self, project: int, request: dict[str, int], sign: int = 1) -> None:
        a = self.alloc[project]
        for flavor, amount in request.items():
            a[flavor] = a.get(flavor, 0) + sign * amount

    def past_rates(self, now: float, params: FairShareParams) -> list[dict[str, float]]:
        """Past usage of each project as an average rate, decayed to ``now``."""
        h = params.half_life_s
        out: list[dict[str, float]] = []
        for samples in self.history:
            rates: dict[str, float] = {}
            for s in samples:
                decayed = s.amount * 2.0 ** (-max(0.0, now - s.as_of) / h)
                rates[s.flavor] = rates.get(s.flavor, 0.0) + decayed * math.log(2) / h * params.history_weight
            out.append(rates)
        return out


class FairShareArbiter:
    """Chooses the next fair-share leaf (project) to serve, programme first."""

    def __init__(self, state: FairShareState, past: list[dict[str, float]], capacity: dict[str, int],
                 active: set[int]):
        self.state = state
        self.past = past
        self.capacity = {f: c for f, c in capacity.items() if c > 0}
        self.active = active
        self.prog_active = [0] * len(state.prog_names)
        for p in active:
            self.prog_active[state.prog_of[p]] += 1
        self.pshare = [self._share([p]) / state.weight[p] for p in range(len(state.names))]
        members: list[list[int]] = [[] for _ in state.prog_names]
        for p, prog in enumerate(state.prog_of):
            members[prog].append(p)
        self.members = members
        self.gshare = [self._share(m) / state.prog_weight[i] for i, m in enumerate(members)]
        self.proj_heaps: list[list[tuple[float, str, int]]] = [[] for _ in state.prog_names]
        for p in sorted(active):
            self.proj_heaps[state.prog_of[p]].append((self.pshare[p], state.names[p], p))
        for hp in self.proj_heaps:
            heapq.heapify(hp)
        self.prog_heap = [(self.gshare[i], state.prog_names[i], i) for i in range(len(members)) if self.prog_active[i]]
        heapq.heapify(self.prog_heap)

    def _share(self, projects: list[int]) -> float:
        best = 0.0
        for flavor, cap in self.capacity.items():
            used = 0.0
            for p in projects:
                used += self.state.alloc[p].get(flavor, 0) + self.past[p].get(flavor, 0.0)
            best = max(best, used / cap)
        return best

    def next(self) -> int | None:
        heap = self.prog_heap
        while heap:
            share, _, g = heap[0]
            if share != self.gshare[g] or not self.prog_active[g]:
                heapq.heappop(heap)
                continue
            ph = self.proj_heaps[g]
            while ph:
                s, _, p = ph[0]
                if s != self.pshare[p] or p not in self.active:
                    heapq.heappop(ph)
                    continue
                return p
            self.prog_active[g] = 0
            heapq.heappop(heap)
        return None

    def started(self, project: int) -> None:
        st = self.state
        g = st.prog_of[project]
        self.pshare[project] = self._share([project]) / st.weight[project]
        heapq.heappush(self.proj_heaps[g], (self.pshare[project], st.names[project], project))
        self.gshare[g] = self._share(self.members[g]) / st.prog_weight[g]
        heapq.heappush(self.prog_heap, (self.gshare[g], st.prog_names[g], g))

    def exhausted(self, project: int) -> None:
        if project in self.active:
            self.active.discard(project)
            self.prog_active[self.state.prog_of[project]] -= 1
