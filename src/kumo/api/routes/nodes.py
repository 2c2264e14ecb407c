"""Inventory: regions (derived from clusters), clusters and nodes — registration, cordons, drains."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from kumo.api.deps import CurrentPrincipal, NowDep, ReadSessionDep, RemoteAddr, SessionDep, require
from kumo.api.routes._common import audit
from kumo.api.schemas import (
    MODEL_PATTERN,
    NAME_PATTERN,
    ClusterCreate,
    ClusterPublic,
    NodeCreate,
    NodePublic,
    RegionPublic,
)
from kumo.core.model import NodeState
from kumo.store import Cluster, Node, NodeRepository, NotFoundError

router = APIRouter(tags=["nodes"])
NodeName = Annotated[str, Path(pattern=NAME_PATTERN, description="the node's name")]
NameFilter = Annotated[str | None, Query(pattern=NAME_PATTERN)]


def cluster_public(cluster: Cluster) -> ClusterPublic:
    return ClusterPublic(name=cluster.name, region=cluster.region)


def node_public(node: Node) -> NodePublic:
    return NodePublic(
        name=node.name, cluster=node.cluster.name, region=node.region, zone=node.zone, block=node.block,
        nvlink_domain=node.nvlink_domain, gpu_model=node.gpu_model, gpus=node.gpus, cpu_milli=node.cpu_milli,
        mem_mib=node.mem_mib, state=node.state.value, cordoned=node.cordoned, labels=dict(node.labels),
        updated_at=node.updated_at,
    )  # fmt: skip


@router.get("/regions")
def list_regions(who: CurrentPrincipal, session: ReadSessionDep) -> list[RegionPublic]:
    """Every region with its clusters and how many nodes and GPUs it has."""
    require(who, "regions.read")
    repo = NodeRepository(session)
    regions: dict[str, RegionPublic] = {}
    for cluster in repo.list_clusters():
        region = regions.setdefault(cluster.region, RegionPublic(name=cluster.region, clusters=[], nodes=0, gpus=0))
        region.clusters.append(cluster.name)
    for node in repo.list():
        region = regions.setdefault(node.region, RegionPublic(name=node.region, clusters=[], nodes=0, gpus=0))
        region.nodes += 1
        region.gpus += node.gpus
    return [regions[name] for name in sorted(regions)]


@router.get("/clusters")
def list_clusters(who: CurrentPrincipal, session: ReadSessionDep) -> list[ClusterPublic]:
    require(who, "clusters.read")
    return [cluster_public(c) for c in NodeRepository(session).list_clusters()]


@router.post("/clusters", status_code=status.HTTP_201_CREATED)
def create_cluster(
    body: ClusterCreate, who: CurrentPrincipal, session: SessionDep, now: NowDep, addr: RemoteAddr
) -> ClusterPublic:
    require(who, "clusters.write")
    cluster = NodeRepository(session).create_cluster(body.name, body.region)
    audit(session, who, "clusters.create", f"cluster/{cluster.name}", now=now, remote_addr=addr,
          data=body.model_dump())
    return cluster_public(cluster)


@router.get("/nodes")
def list_nodes(
    who: CurrentPrincipal,
    session: ReadSessionDep,
    cluster: NameFilter = None,
    region: NameFilter = None,
    gpu_model: Annotated[str | None, Query(pattern=MODEL_PATTERN)] = None,
    state: NodeState | None = None,
    cordoned: bool | None = None,
) -> list[NodePublic]:
    """Nodes matching every filter given, by name."""
    require(who, "nodes.read")
    nodes = NodeRepository(session).list(cluster=cluster, region=region, gpu_model=gpu_model, state=state,
                                         cordoned=cordoned)
    return [node_public(n) for n in nodes]


@router.post("/nodes", status_code=status.HTTP_201_CREATED, responses={200: {"description": "re-registered"}})
def register_node(
    body: NodeCreate, response: Response, who: CurrentPrincipal, session: SessionDep, now: NowDep, addr: RemoteAddr
) -> NodePublic:
    """Register a node (201), or update a known one (200), keeping its state and cordon."""
    require(who, "nodes.write")
    repo = NodeRepository(session)
    try:
        repo.get(body.name)
        response.status_code = status.HTTP_200_OK
    except NotFoundError:
        pass
    node = repo.register(now=now, **body.model_dump())
    audit(session, who, "nodes.register", f"node/{node.name}", now=now, remote_addr=addr,
          data=body.model_dump(exclude_defaults=True))
    return node_public(node)


def _operate(verb: str, name: str, who: CurrentPrincipal, session: SessionDep, now: NowDep, addr: RemoteAddr) -> Node:
    require(who, "nodes.write")
    repo = NodeRepository(session)
    node = {"cordon": repo.cordon, "uncordon": repo.uncordon, "drain": repo.drain}[verb](name, now=now)
    audit(session, who, f"nodes.{verb}", f"node/{node.name}", now=now, remote_addr=addr)
    return node


@router.post("/nodes/{name:path}/cordon")
def cordon_node(
    name: NodeName, who: CurrentPrincipal, session: SessionDep, now: NowDep, addr: RemoteAddr
) -> NodePublic:
    """No new work on the node until it is uncordoned."""
    return node_public(_operate("cordon", name, who, session, now, addr))


@router.post("/nodes/{name:path}/uncordon")
def uncordon_node(
    name: NodeName, who: CurrentPrincipal, session: SessionDep, now: NowDep, addr: RemoteAddr
) -> NodePublic:
    return node_public(_operate("uncordon", name, who, session, now, addr))


@router.post("/nodes/{name:path}/drain")
def drain_node(name: NodeName, who: CurrentPrincipal, session: SessionDep, now: NowDep, addr: RemoteAddr) -> NodePublic:
    """Cordon the node and mark it drained: running work may finish, nothing new starts."""
    return node_public(_operate("drain", name, who, session, now, addr))
