"""Keeping the store's nodes in step with a Ray cluster's (``docs/concepts/ray.md``).

The Ray executor reads ``ray.nodes()`` (at start-up, then every couple of seconds from ``poll()``,
and at once when an actor dies) and calls :meth:`NodeSync.apply` whenever something changed:

- every Ray node kumo can use (alive, with GPUs and a GPU model) is registered under its
  ``kumo.cluster`` (default ``ray``), with its region, zone, block and NVLink domain from its
  labels and the label ``ray.node_id`` (which marks the nodes this sync manages); a node that
  comes back after being down is marked ``up`` again (a drained one stays drained);
- every node this sync manages that no alive Ray node answers for is marked ``down``, so that
  the scheduler's stage 0 requeues what still runs there and places nothing new on it;
- a Ray node with GPUs but no GPU model (no ``kumo.gpu_model`` label, no accelerator type) is
  skipped, with one warning per Ray node; a node without GPUs (the head) is skipped silently.

Nothing here decides what runs where: that is ``kumo.core``'s.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kumo.core.errors import KumoError
from kumo.core.model import NodeState
from kumo.executors.ray import NO_GPUS, RayNode
from kumo.store import NodeRepository, Store

log = logging.getLogger("kumo.ray")
RAY_NODE_ID = "ray.node_id"  # the store label naming a node's Ray node (and marking it as the sync's)


@dataclass(slots=True)
class SyncResult:
    registered: list[str] = field(default_factory=list)  # usable now (new or known)
    joined: list[str] = field(default_factory=list)  # new to the store, or up again after down
    down: list[str] = field(default_factory=list)  # marked down by this pass
    skipped: list[str] = field(default_factory=list)  # Ray nodes kumo cannot use, with why


def _utcnow() -> datetime:
    return datetime.now(UTC)


class NodeSync:
    """Writes what the Ray executor sees into the store (see the module docstring)."""

    def __init__(self, store: Store, *, clock: Callable[[], datetime] = _utcnow,
                 warn: Callable[[str], None] = log.warning) -> None:
        self.store, self.clock, self.warn = store, clock, warn
        self._warned: set[str] = set()
        self.last: SyncResult | None = None

    def apply(self, nodes: Sequence[RayNode]) -> SyncResult:
        now = self.clock()
        result = SyncResult()
        usable: dict[str, RayNode] = {}
        for n in nodes:
            if not n.alive:
                continue
            if n.problem:
                if n.problem != NO_GPUS:
                    result.skipped.append(f"{n.node_id[:12]}: {n.problem}")
                    if n.node_id not in self._warned:
                        self._warned.add(n.node_id)
                        self.warn(f"Ray node {n.node_id[:12]} at {n.address} is not registered: {n.problem}")
                continue
            usable.setdefault(n.name, n)
        with self.store.session() as s:
            repo = NodeRepository(s)
            known = {node.name: node for node in repo.list()}
            regions = Counter(n.region for n in usable.values() if n.region)
            default_region = regions.most_common(1)[0][0] if regions else "default"
            for name, n in sorted(usable.items()):
                before = known.get(name)
                if before is not None and RAY_NODE_ID not in (before.labels or {}):
                    if n.node_id not in self._warned:
                        self._warned.add(n.node_id)
                        self.warn(f"Ray node {n.node_id[:12]} calls itself {name!r}, a node kumo knows outside"
                                  " Ray: not registered (give it another kumo.node label)")
                    continue
                was_down = before is not None and before.state is NodeState.DOWN
                try:
                    cluster = repo.ensure_cluster(n.cluster, n.region or default_region)
                    labels = {RAY_NODE_ID: n.node_id, "ray.address": n.address}
                    labels |= {f"kumo.{k}": v for k, v in n.labels.items()}
                    repo.register(name, cluster=cluster, gpu_model=n.gpu_model, gpus=n.gpus, now=now,
                                  region=n.region, zone=n.zone, block=n.block, nvlink_domain=n.nvlink_domain,
                                  labels=labels)
                except KumoError as e:
                    if n.node_id not in self._warned:
                        self._warned.add(n.node_id)
                        self.warn(f"Ray node {n.node_id[:12]} ({name}) is not registered: {e}")
                    continue
                result.registered.append(name)
                if before is None:
                    result.joined.append(name)
                elif was_down:
                    repo.set_state(name, NodeState.UP, now=now)
                    result.joined.append(name)
            for node in repo.with_label(RAY_NODE_ID):
                if node.name not in result.registered and node.state is not NodeState.DOWN:
                    repo.set_state(node.name, NodeState.DOWN, now=now)
                    result.down.append(node.name)
        for name in result.joined:
            log.info("Ray node %s is registered (up)", name)
        for name in result.down:
            log.warning("Ray node %s is gone: marked down", name)
        self.last = result
        return result

    def cordon_others(self) -> list[str]:
        """Cordon every node that is up, not cordoned and not a Ray node (a local or demo node left
        from running without Ray): the Ray executor could not run what is placed there."""
        now = self.clock()
        cordoned = []
        with self.store.session() as s:
            repo = NodeRepository(s)
            for node in repo.list(cordoned=False):
                if RAY_NODE_ID not in (node.labels or {}) and node.state is not NodeState.DOWN:
                    repo.cordon(node.name, now=now)
                    cordoned.append(node.name)
        return cordoned

    def mark_all_down(self) -> list[str]:
        """Every node this sync manages marked down (the Ray cluster cannot be reached)."""
        now = self.clock()
        down = []
        with self.store.session() as s:
            repo = NodeRepository(s)
            for node in repo.with_label(RAY_NODE_ID):
                if node.state is not NodeState.DOWN:
                    repo.set_state(node.name, NodeState.DOWN, now=now)
                    down.append(node.name)
        return down
