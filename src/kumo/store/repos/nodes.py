"""Clusters and nodes: registration (an upsert by name), health state, cordons and drains."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from kumo.core import model as core
from kumo.core.errors import InvalidValueError
from kumo.core.model import NodeState
from kumo.core.resources import check_name
from kumo.store.columns import as_utc
from kumo.store.models import Cluster, Node
from kumo.store.repos._common import Repository, add_unique, by_name, resolve

# What a registration may change on a known node; its state and cordon belong to operators.
_REGISTERED = (
    "cluster_id", "region", "zone", "block", "nvlink_domain", "gpu_model", "gpus", "cpu_milli", "mem_mib",
    "labels", "updated_at",
)  # fmt: skip


class NodeRepository(Repository):
    """Nodes and the clusters they belong to."""

    def create_cluster(self, name: str, region: str) -> Cluster:
        check_name("cluster", name)
        check_name(f"cluster {name!r} region", region)
        return add_unique(self.session, Cluster(name=name, region=region), f"cluster {name!r}")

    def get_cluster(self, name: str) -> Cluster:
        return by_name(self.session, Cluster, "cluster", name)

    def list_clusters(self) -> list[Cluster]:
        return list(self.session.scalars(select(Cluster).order_by(Cluster.name)))

    def ensure_cluster(self, name: str, region: str) -> Cluster:
        """The cluster ``name``, created in ``region`` if it does not exist (a known one keeps its region)."""
        found = self.session.scalars(select(Cluster).where(Cluster.name == name)).one_or_none()
        return found if found is not None else self.create_cluster(name, region)

    def with_label(self, key: str) -> list[Node]:
        """Nodes whose labels hold ``key`` (the Ray node sync's: ``ray.node_id``), by name."""
        return [n for n in self.list() if key in (n.labels or {})]

    def register(
        self,
        name: str,
        *,
        cluster: Cluster | str,
        gpu_model: str,
        gpus: int,
        now: datetime,
        region: str | None = None,
        zone: str = "",
        block: str = "",
        nvlink_domain: str = "",
        cpu_milli: int = 0,
        mem_mib: int = 0,
        labels: Mapping[str, str] | None = None,
    ) -> Node:
        """Insert the node, or update a known one (keeping its state and cordon). ``region``
        defaults to the cluster's; ``zone``, ``block`` and ``nvlink_domain`` default as in the core."""
        home = resolve(self.session, Cluster, "cluster", cluster)
        checked = core.Node(
            name, region or home.region, gpu_model, gpus, zone=zone, block=block,
            nvlink_domain=nvlink_domain, cpu_milli=cpu_milli, mem_mib=mem_mib,
        )  # fmt: skip
        values = _values(checked, home, _labels(labels), as_utc(now, "now"))
        return self._upsert(values)

    def get(self, name: str) -> Node:
        return by_name(self.session, Node, "node", name)

    def list(
        self,
        *,
        cluster: Cluster | str | None = None,
        region: str | None = None,
        gpu_model: str | None = None,
        state: NodeState | str | None = None,
        cordoned: bool | None = None,
    ) -> list[Node]:
        """Nodes matching every filter given, by name."""
        stmt = select(Node).order_by(Node.name)
        if cluster is not None:
            stmt = stmt.where(Node.cluster_id == resolve(self.session, Cluster, "cluster", cluster).id)
        if region is not None:
            stmt = stmt.where(Node.region == region)
        if gpu_model is not None:
            stmt = stmt.where(Node.gpu_model == gpu_model)
        if state is not None:
            stmt = stmt.where(Node.state == _state(state))
        if cordoned is not None:
            stmt = stmt.where(Node.cordoned == cordoned)
        return list(self.session.scalars(stmt))

    def set_state(self, name: str, state: NodeState | str, *, now: datetime) -> Node:
        """Record the node's health: ``up``, ``drained`` (keeps running work) or ``down``."""
        return self._change(name, now, state=_state(state))

    def cordon(self, name: str, *, now: datetime) -> Node:
        """No new work on this node until it is uncordoned, whatever its state."""
        return self._change(name, now, cordoned=True)

    def uncordon(self, name: str, *, now: datetime) -> Node:
        return self._change(name, now, cordoned=False)

    def drain(self, name: str, *, now: datetime) -> Node:
        """Cordon the node and mark it drained: running work may finish, nothing new starts.
        Undo with ``uncordon`` and ``set_state(name, "up")``."""
        return self._change(name, now, cordoned=True, state=NodeState.DRAINED)

    def _change(self, name: str, now: datetime, **changes: Any) -> Node:
        node = self.get(name)
        for key, value in changes.items():
            setattr(node, key, value)
        node.updated_at = as_utc(now, "now")
        self.session.flush()
        return node

    def _upsert(self, values: dict[str, Any]) -> Node:
        insert = sqlite_insert if self.session.get_bind().dialect.name == "sqlite" else pg_insert
        stmt = insert(Node).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[Node.name], set_={key: stmt.excluded[key] for key in _REGISTERED}
        )
        rows = self.session.scalars(stmt.returning(Node), execution_options={"populate_existing": True})
        return rows.one()


def _values(node: core.Node, cluster: Cluster, labels: dict[str, str], now: datetime) -> dict[str, Any]:
    return {
        "name": node.name, "cluster_id": cluster.id, "region": node.region, "zone": node.zone,
        "block": node.block, "nvlink_domain": node.nvlink_domain, "gpu_model": node.gpu_model,
        "gpus": node.gpus, "cpu_milli": node.cpu_milli, "mem_mib": node.mem_mib,
        "state": NodeState.UP, "cordoned": False, "labels": labels, "updated_at": now,
    }  # fmt: skip


def _labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    out = dict(labels or {})
    if not all(isinstance(k, str) and k and isinstance(v, str) for k, v in out.items()):
        raise InvalidValueError("node labels", f"must map non-empty strings to strings, got {out!r}")
    return out


def _state(state: NodeState | str) -> NodeState:
    try:
        return NodeState(state)
    except ValueError:
        raise InvalidValueError("node state", f"{state!r} is not one of up, drained, down") from None
