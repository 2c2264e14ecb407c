"""Inventory through the API: regions, clusters, nodes (registration, filters, cordon, drain)."""

from __future__ import annotations

from .conftest import Api


def names(api: Api, role: str, path: str, **params: object) -> list[str]:
    r = api.get(role, path, params=params)
    assert r.status_code == 200, r.text
    return [item["name"] for item in r.json()]


def test_regions_and_clusters(api: Api) -> None:
    r = api.post("admin", "/clusters", json={"name": "west", "region": "japan-west"})
    assert r.status_code == 201 and r.json() == {"name": "west", "region": "japan-west"}
    assert names(api, "member-sakura", "/clusters") == ["east", "west"]
    assert api.get("viewer", "/regions").json() == [
        {"name": "japan-east", "clusters": ["east"], "nodes": 2, "gpus": 16},
        {"name": "japan-west", "clusters": ["west"], "nodes": 0, "gpus": 0},
    ]
    r = api.post("admin", "/clusters", json={"name": "west", "region": "japan-west"})
    assert (r.status_code, r.json()["detail"]) == (409, "cluster 'west' already exists")
    r = api.post("pm-geniac", "/clusters", json={"name": "north", "region": "japan-north"})
    assert r.status_code == 403 and r.json()["detail"] == (
        "user 'pam' may not clusters write (change shared things): it needs the admin role")


def test_register_a_node_then_register_it_again(api: Api) -> None:
    body = {"name": "rack/7", "cluster": "east", "gpu_model": "h100", "gpus": 4, "zone": "z1", "block": "b1",
            "labels": {"rack": "7"}}
    r = api.post("admin", "/nodes", json=body)
    assert r.status_code == 201, r.text
    node = r.json()
    assert (node["name"], node["region"], node["gpus"], node["state"], node["cordoned"]) == (
        "rack/7", "japan-east", 4, "up", False)
    assert node["labels"] == {"rack": "7"} and node["updated_at"] == "2025-04-01T11:00:00Z"
    assert api.post("admin", "/nodes/rack/7/cordon").json()["cordoned"] is True  # a name with '/' in the path
    r = api.post("admin", "/nodes", json={**body, "gpus": 8})
    assert r.status_code == 200 and (r.json()["gpus"], r.json()["cordoned"]) == (8, True)  # keeps the cordon
    r = api.post("admin", "/nodes", json={**body, "cluster": "nowhere"})
    assert (r.status_code, r.json()["detail"]) == (404, "cluster 'nowhere' not found")


def test_list_nodes_with_filters(api: Api) -> None:
    api.post("admin", "/nodes", json={"name": "east-9", "cluster": "east", "gpu_model": "h100", "gpus": 8})
    api.post("admin", "/nodes/east-1/cordon")
    assert names(api, "member-tsubame", "/nodes") == ["east-0", "east-1", "east-9"]
    assert names(api, "viewer", "/nodes", gpu_model="h100") == ["east-9"]
    assert names(api, "viewer", "/nodes", cordoned="true") == ["east-1"]
    assert names(api, "viewer", "/nodes", cluster="east", region="japan-east", state="up") == [
        "east-0", "east-1", "east-9"]
    assert names(api, "viewer", "/nodes", region="japan-west") == []
    assert api.get("viewer", "/nodes", params={"state": "melted"}).status_code == 422


def test_cordon_uncordon_drain(api: Api) -> None:
    node = api.post("admin", "/nodes/east-0/drain").json()
    assert (node["state"], node["cordoned"]) == ("drained", True)
    node = api.post("admin", "/nodes/east-0/uncordon").json()
    assert (node["state"], node["cordoned"]) == ("drained", False)
    node = api.post("admin", "/nodes/east-1/cordon").json()
    assert (node["state"], node["cordoned"]) == ("up", True)
    actions = [(e["action"], e["target"]) for e in api.get("admin", "/audit").json()["items"]]
    assert actions == [("nodes.drain", "node/east-0"), ("nodes.uncordon", "node/east-0"),
                       ("nodes.cordon", "node/east-1")]
    r = api.post("admin", "/nodes/east-7/drain")
    assert (r.status_code, r.json()["detail"]) == (404, "node 'east-7' not found")
    r = api.post("member-sakura", "/nodes/east-0/cordon")
    assert r.status_code == 403 and "nodes write" in r.json()["detail"]
