"""Nodes: registration as an upsert by name, health state, cordon, drain and filtered listings."""

from __future__ import annotations

from typing import Any

import pytest

from kumo.core import model as core
from kumo.core.errors import InvalidValueError
from kumo.core.model import NodeState
from kumo.store import ConflictError, NodeRepository, NotFoundError, Store

from .conftest import at


def register(repo: NodeRepository, name: str, seconds: float = 0, **extra: Any) -> None:
    fields: dict[str, Any] = {"cluster": "east", "gpu_model": "h200", "gpus": 8, **extra}
    repo.register(name, now=at(seconds), **fields)


@pytest.fixture
def nodes(store: Store) -> Store:
    with store.session() as s:
        repo = NodeRepository(s)
        repo.create_cluster("east", "japan-east")
        repo.create_cluster("west", "japan-west")
        register(repo, "e-h200-00", zone="e1", block="b1", cpu_milli=96_000, mem_mib=1_048_576)
        register(repo, "e-h200-01", zone="e1", block="b2", labels={"rack": "r7"})
        register(repo, "w-h100-00", cluster="west", gpu_model="h100", nvlink_domain="nvl-1")
    return store


def test_clusters(store: Store) -> None:
    with store.session() as s:
        repo = NodeRepository(s)
        repo.create_cluster("west", "japan-west")
        repo.create_cluster("east", "japan-east")
        with pytest.raises(ConflictError, match="cluster 'east' already exists"):
            repo.create_cluster("east", "japan-east")
        assert [(c.name, c.region) for c in repo.list_clusters()] == [("east", "japan-east"), ("west", "japan-west")]
        assert repo.get_cluster("west").region == "japan-west"


def test_register_stores_the_node_with_core_defaults(nodes: Store) -> None:
    with nodes.session() as s:
        repo = NodeRepository(s)
        e0 = repo.get("e-h200-00")
        assert (e0.cluster.name, e0.region, e0.zone, e0.block, e0.nvlink_domain) == (
            "east", "japan-east", "e1", "b1", "e-h200-00",
        )  # fmt: skip
        assert (e0.gpu_model, e0.gpus, e0.cpu_milli, e0.mem_mib) == ("h200", 8, 96_000, 1_048_576)
        assert (e0.state, e0.cordoned, e0.labels, e0.updated_at) == (NodeState.UP, False, {}, at(0))
        w0 = repo.get("w-h100-00")
        assert (w0.region, w0.zone, w0.block, w0.nvlink_domain) == ("japan-west", "japan-west", "japan-west", "nvl-1")
        assert repo.get("e-h200-01").labels == {"rack": "r7"}
        assert w0.to_core() == core.Node("w-h100-00", "japan-west", "h100", 8, nvlink_domain="nvl-1")


def test_register_again_updates_the_node_and_keeps_its_state_and_cordon(nodes: Store) -> None:
    with nodes.session() as s:
        repo = NodeRepository(s)
        repo.drain("e-h200-00", now=at(5))
        register(repo, "e-h200-00", 10, gpus=4, zone="e2", labels={"note": "half the board"})
    with nodes.session() as s:
        node = NodeRepository(s).get("e-h200-00")
        assert (node.gpus, node.zone, node.block, node.labels) == (4, "e2", "e2", {"note": "half the board"})
        assert (node.state, node.cordoned, node.updated_at) == (NodeState.DRAINED, True, at(10))
        assert len(NodeRepository(s).list()) == 3


def test_register_checks_the_node_and_its_cluster(nodes: Store) -> None:
    with nodes.session() as s:
        repo = NodeRepository(s)
        with pytest.raises(InvalidValueError, match="gpus must be at least 1"):
            register(repo, "n", gpus=0)
        with pytest.raises(NotFoundError, match="cluster 'south' not found"):
            register(repo, "n", cluster="south")
        with pytest.raises(InvalidValueError, match="node labels"):
            register(repo, "n", labels={"rack": 7})


def test_state_cordon_and_drain(nodes: Store) -> None:
    with nodes.session() as s:
        repo = NodeRepository(s)
        down = repo.set_state("e-h200-00", "down", now=at(1))
        assert (down.state, down.cordoned, down.updated_at) == (NodeState.DOWN, False, at(1))
        cordoned = repo.cordon("e-h200-01", now=at(2))
        assert (cordoned.state, cordoned.cordoned) == (NodeState.UP, True)
        assert cordoned.to_core().state is NodeState.DRAINED  # the scheduler starts nothing there
        drained = repo.drain("w-h100-00", now=at(3))
        assert (drained.state, drained.cordoned, drained.updated_at) == (NodeState.DRAINED, True, at(3))
    with nodes.session() as s:
        repo = NodeRepository(s)
        repo.uncordon("e-h200-01", now=at(4))
        repo.uncordon("w-h100-00", now=at(4))
        repo.set_state("w-h100-00", NodeState.UP, now=at(5))
    with nodes.session() as s:
        states = [(n.name, n.state, n.cordoned) for n in NodeRepository(s).list()]
        assert states == [
            ("e-h200-00", NodeState.DOWN, False),
            ("e-h200-01", NodeState.UP, False),
            ("w-h100-00", NodeState.UP, False),
        ]
        with pytest.raises(InvalidValueError, match="'broken' is not one of up, drained, down"):
            NodeRepository(s).set_state("e-h200-00", "broken", now=at(6))
        with pytest.raises(NotFoundError, match="node 'ghost' not found"):
            NodeRepository(s).cordon("ghost", now=at(6))


def test_list_filters(nodes: Store) -> None:
    with nodes.session() as s:
        repo = NodeRepository(s)
        repo.cordon("e-h200-01", now=at(1))
        repo.set_state("w-h100-00", "down", now=at(1))

        def names(**filters: Any) -> list[str]:
            return [n.name for n in repo.list(**filters)]

        assert names() == ["e-h200-00", "e-h200-01", "w-h100-00"]
        assert names(cluster="east") == ["e-h200-00", "e-h200-01"]
        assert names(region="japan-west") == ["w-h100-00"]
        assert names(gpu_model="h200") == ["e-h200-00", "e-h200-01"]
        assert names(state="down") == ["w-h100-00"]
        assert names(state=NodeState.UP, cordoned=False) == ["e-h200-00"]
        assert names(cordoned=True) == ["e-h200-01"]
        assert names(cluster="west", gpu_model="h200") == []
