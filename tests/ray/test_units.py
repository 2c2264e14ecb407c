"""The Ray executor's parts that need no cluster: reading Ray nodes, actor names, the restart policy,
the node sync, and bad input at start-up (an unreachable address falls back to the local executor)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kumo.control.nodesync import RAY_NODE_ID, NodeSync
from kumo.control.runtime import open_platform
from kumo.core.errors import InvalidValueError
from kumo.core.model import NodeState
from kumo.executors import LocalExecutor
from kumo.executors.ray import (
    NO_GPUS,
    RayUnavailable,
    _check_versions,
    actor_name,
    connect,
    parse_actor_name,
    parse_node,
)
from kumo.store import NodeRepository, Store
from kumo.store.jobspec import normalize_spec, restart_policy

pytestmark = pytest.mark.ray
pytest.importorskip("ray")

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def ray_info(node_id: str, gpus: float = 8, alive: bool = True, labels: dict[str, str] | None = None,
             resources: dict[str, float] | None = None) -> dict[str, object]:
    return {"NodeID": node_id, "Alive": alive, "NodeManagerAddress": "10.0.0.7",
            "Resources": {"CPU": 8.0, **({"GPU": gpus} if gpus else {}), **(resources or {})},
            "Labels": {"ray.io/node-id": node_id, **(labels or {})}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- reading Ray nodes ---------------------------------------------------------------------------


def test_labels_give_the_model_and_topology() -> None:
    n = parse_node(ray_info("a" * 56, labels={"kumo.node": "gpu-07", "kumo.gpu_model": "H200",
                                              "kumo.region": "japan-east", "kumo.zone": "tokyo-1",
                                              "kumo.block": "b07", "kumo.nvlink_domain": "rack-3",
                                              "kumo.cluster": "abci", "other": "x"}))
    assert (n.name, n.gpus, n.gpu_model, n.region, n.zone, n.block, n.nvlink_domain, n.cluster) == (
        "gpu-07", 8, "h200", "japan-east", "tokyo-1", "b07", "rack-3", "abci")
    assert n.usable and n.address == "10.0.0.7" and "other" not in n.labels


def test_custom_resources_stand_in_for_labels_and_ray_accelerator_type_for_the_model() -> None:
    by_resource = parse_node(ray_info("b" * 56, resources={"kumo.gpu_model.h100": 1, "kumo.block.b02": 1}))
    assert (by_resource.gpu_model, by_resource.block, by_resource.name) == ("h100", "b02", "ray-bbbbbbbbbbbb")
    by_label = parse_node(ray_info("b" * 56, labels={"kumo.gpu_model": "h200"}, resources={"kumo.gpu_model.h100": 1}))
    assert by_label.gpu_model == "h200"  # a label wins over a resource
    accelerator = parse_node(ray_info("c" * 56, resources={"accelerator_type:A100": 1}))
    assert accelerator.gpu_model == "a100" and accelerator.usable


def test_nodes_kumo_cannot_use_say_why() -> None:
    head = parse_node(ray_info("d" * 56, gpus=0))
    assert head.problem == NO_GPUS and not head.usable
    unlabeled = parse_node(ray_info("e" * 56))
    assert not unlabeled.usable and "kumo.gpu_model=<model>" in unlabeled.problem
    bad = parse_node(ray_info("f" * 56, labels={"kumo.gpu_model": "h200", "kumo.region": "-east"}))
    assert not bad.usable and "region" in bad.problem
    dead = parse_node(ray_info("0" * 56, alive=False, labels={"kumo.gpu_model": "h200"}))
    assert not dead.alive and not dead.usable and dead.problem == ""


def test_actor_names_round_trip() -> None:
    name = actor_name("team/job-1", 3, 7)
    assert name == "kumo:team%2Fjob-1:3:7"
    assert parse_actor_name(name) == ("team/job-1", 3, 7)
    assert parse_actor_name("kumo:job:x:1") is None and parse_actor_name("other") is None


def test_restart_policy_is_a_spec_field_with_a_default() -> None:
    assert restart_policy(normalize_spec({"gpus": 1})) == "on-node-loss"
    assert normalize_spec({"gpus": 1, "restart": "never"})["restart"] == "never"
    with pytest.raises(InvalidValueError, match="restart must be one of"):
        normalize_spec({"gpus": 1, "restart": "always"})


# -- the node sync --------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = Store(f"sqlite:///{tmp_path / 'kumo.db'}")
    s.upgrade()
    yield s
    s.dispose()


def labelled(node_id: str, name: str, alive: bool = True) -> dict[str, object]:
    return ray_info(node_id, alive=alive, labels={"kumo.node": name, "kumo.gpu_model": "h200",
                                                  "kumo.region": "japan-east", "kumo.block": "b07"})


def test_the_sync_registers_marks_down_and_brings_back_nodes(store: Store) -> None:
    warnings: list[str] = []
    sync = NodeSync(store, clock=lambda: NOW, warn=warnings.append)
    first = sync.apply([parse_node(labelled("1" * 56, "n1")), parse_node(labelled("2" * 56, "n2")),
                        parse_node(ray_info("3" * 56, gpus=0)), parse_node(ray_info("4" * 56, gpus=2))])
    assert first.registered == ["n1", "n2"] and first.joined == ["n1", "n2"] and first.down == []
    [warning] = warnings  # the unlabeled node, once; the head without GPUs silently
    assert warning.startswith("Ray node 444444444444 at 10.0.0.7 is not registered: 2 GPUs but no GPU model")
    with store.session(readonly=True) as s:
        nodes = {n.name: n for n in NodeRepository(s).list()}
        assert set(nodes) == {"n1", "n2"}
        assert (nodes["n1"].region, nodes["n1"].block, nodes["n1"].gpus, nodes["n1"].gpu_model) == (
            "japan-east", "b07", 8, "h200")
        assert nodes["n1"].labels[RAY_NODE_ID] == "1" * 56
        assert NodeRepository(s).get_cluster("ray").region == "japan-east"

    second = sync.apply([parse_node(labelled("1" * 56, "n1")), parse_node(labelled("2" * 56, "n2", alive=False)),
                         parse_node(ray_info("4" * 56, gpus=2))])
    assert second.down == ["n2"] and len(warnings) == 1  # not warned twice
    # n2 comes back as a new Ray node (a new id) with the same kumo.node label
    third = sync.apply([parse_node(labelled("1" * 56, "n1")), parse_node(labelled("5" * 56, "n2"))])
    assert third.joined == ["n2"] and third.down == []
    with store.session(readonly=True) as s:
        n2 = NodeRepository(s).get("n2")
        assert n2.state is NodeState.UP and n2.labels[RAY_NODE_ID] == "5" * 56


def test_the_sync_does_not_take_over_nodes_it_does_not_manage(store: Store) -> None:
    with store.session() as s:
        NodeRepository(s).create_cluster("local", "local")
        NodeRepository(s).register("n1", cluster="local", gpu_model="h100", gpus=2, now=NOW)
    warnings: list[str] = []
    result = NodeSync(store, clock=lambda: NOW, warn=warnings.append).apply([parse_node(labelled("1" * 56, "n1"))])
    assert result.registered == [] and "a node kumo knows outside Ray" in warnings[0]
    with store.session(readonly=True) as s:
        assert NodeRepository(s).get("n1").gpu_model == "h100"  # untouched, and not marked down
    # with the Ray executor, a node outside Ray is cordoned (nothing new is placed where Ray cannot run it)
    assert NodeSync(store, clock=lambda: NOW).cordon_others() == ["n1"]
    with store.session(readonly=True) as s:
        assert NodeRepository(s).get("n1").cordoned


# -- bad input at start-up ------------------------------------------------------------------------


def test_an_unreachable_address_is_one_clear_error() -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(RayUnavailable) as refused:
        connect(f"127.0.0.1:{port}")
    assert str(refused.value) == f"cannot reach the Ray cluster at 127.0.0.1:{port}: connection refused"
    assert time.monotonic() - started < 5
    with pytest.raises(RayUnavailable, match="is not host:port"):
        connect("nowhere")
    with pytest.raises(RayUnavailable, match="no Ray address"):
        connect("")


def test_a_version_mismatch_names_both_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    import kumo.executors.ray as ray_executor

    monkeypatch.setattr(ray_executor, "local_versions", lambda: ("2.60.0", "3.11.7"))
    _check_versions("h:1", {"ray_version": "2.60.0", "python_version": "3.11.9"})  # patch releases may differ
    with pytest.raises(RayUnavailable) as e:
        _check_versions("head:6380", {"ray_version": "2.9.3", "python_version": "3.10.12"})
    assert str(e.value) == ("Ray version mismatch: the cluster at head:6380 runs Ray 2.9.3 on Python 3.10.12,"
                            " kumo has Ray 2.60.0 on Python 3.11.7; install ray==2.9.3 beside kumo")


def test_open_platform_falls_back_to_the_local_executor(tmp_path: Path) -> None:
    port = free_port()
    p = open_platform(directory=tmp_path, executor="ray", ray_address=f"127.0.0.1:{port}")
    try:
        assert isinstance(p.executor, LocalExecutor) and p.node_sync is None
        assert p.notes == [f"warning: the Ray executor is not available, running with the local executor:"
                           f" cannot reach the Ray cluster at 127.0.0.1:{port}: connection refused"]
        with p.store.session(readonly=True) as s:
            assert len(NodeRepository(s).list()) == 13  # the demo inventory, as without Ray
    finally:
        p.store.dispose()
    with pytest.raises(InvalidValueError, match="'k8s' is not one of local, ray"):
        open_platform(directory=tmp_path, executor="k8s")


def test_kumo_controller_prints_one_line_and_keeps_running(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "KUMO_RAY_ADDRESS": f"127.0.0.1:{port}", "PYTHONUNBUFFERED": "1"}
    env.pop("KUMO_DATABASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "kumo.cli.app", "controller", "--executor", "ray",
                             "--data-dir", str(tmp_path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # written after the start-up notes
        assert line.startswith("kumo controller ") and "running" in line
        assert proc.poll() is None  # it keeps running, with the local executor
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert err.splitlines() == [f"warning: the Ray executor is not available, running with the local executor:"
                                f" cannot reach the Ray cluster at 127.0.0.1:{port}: connection refused"]
