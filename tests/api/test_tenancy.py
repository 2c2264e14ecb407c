"""Tenancy through the API: programmes, projects, cohorts, queues, users and members."""

from __future__ import annotations

from kumo.store import TenancyRepository

from .conftest import Api


def test_programmes_and_projects(api: Api) -> None:
    r = api.post("admin", "/programmes", json={"name": "abci", "weight": 0.5})
    assert r.status_code == 201 and r.json() == {"name": "abci", "weight": 0.5}
    assert [p["name"] for p in api.get("member-sakura", "/programmes").json()] == ["abci", "geniac", "univ"]
    assert api.post("admin", "/programmes", json={"name": "abci"}).status_code == 409
    r = api.post("pm-geniac", "/projects", json={"name": "hinoki", "programme": "geniac"})
    assert r.status_code == 201 and r.json() == {"name": "hinoki", "programme": "geniac", "weight": 1.0}
    r = api.post("pm-geniac", "/projects", json={"name": "kaede", "programme": "univ"})
    assert r.status_code == 403 and r.json()["detail"] == (
        "user 'pam' may not projects write (change a programme's projects and members): "
        "it needs admin, or programme manager of 'univ'")
    assert [p["name"] for p in api.get("viewer", "/projects", params={"programme": "geniac"}).json()] == [
        "hinoki", "sakura"]
    assert len(api.get("viewer", "/projects").json()) == 3
    r = api.post("admin", "/projects", json={"name": "kaede", "programme": "nowhere"})
    assert (r.status_code, r.json()["detail"]) == (404, "programme 'nowhere' not found")


def test_cohorts_and_queues(api: Api) -> None:
    r = api.post("admin", "/cohorts", json={"name": "all", "quota": {"gpu.h200": {"nominal": 32}}})
    assert r.status_code == 201 and r.json() == {
        "name": "all", "parent": None,
        "quota": {"gpu.h200": {"nominal": 32.0, "borrowing_limit": None, "lending_limit": None}}}
    assert api.post("admin", "/cohorts", json={"name": "research", "parent": "all"}).json()["parent"] == "all"
    body = {"name": "h100", "cohort": "research", "quota": {"gpu.h100": {"nominal": 8, "lending_limit": 4}}}
    r = api.post("admin", "/queues", json=body)
    assert r.status_code == 201 and r.json()["cohort"] == "research"
    assert [c["name"] for c in api.get("member-tsubame", "/cohorts").json()] == ["all", "research"]
    assert [q["name"] for q in api.get("member-tsubame", "/queues").json()] == ["h100", "h200"]
    r = api.post("admin", "/queues", json={"name": "bad", "quota": {"gpu.h100": {"nominal": 1, "lending_limit": 4}}})
    assert (r.status_code, r.json()["detail"]) == (422, "quota: lending_limit 4.0 exceeds nominal 1.0")
    r = api.post("admin", "/queues", json={"name": "orphan", "cohort": "nowhere"})
    assert r.status_code == 404
    assert api.post("pm-geniac", "/queues", json={"name": "mine"}).status_code == 403


def test_users_with_roles_and_their_tokens(api: Api) -> None:
    body = {"name": "kai", "roles": [{"role": "member", "project": "sakura"},
                                     {"role": "programme_manager", "programme": "univ"}]}
    r = api.post("admin", "/users", json=body)
    assert r.status_code == 201 and r.json() == {"name": "kai", "roles": [
        {"role": "member", "programme": None, "project": "sakura"},
        {"role": "programme_manager", "programme": "univ", "project": None}]}
    token = api.post("admin", "/tokens", json={"name": "first", "user": "kai"}).json()["token"]
    me = api.client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}).json()
    assert me == r.json()
    r = api.post("admin", "/users", json={"name": "lee", "roles": [{"role": "member"}]})
    assert r.status_code == 422 and "a member a project" in r.json()["detail"]
    with api.store.session(readonly=True) as s:
        assert "lee" not in {u.name for u in TenancyRepository(s).list_users()}  # a refused user is not half made
    assert api.post("admin", "/users", json={"name": "kai"}).status_code == 409
    assert api.post("pm-geniac", "/users", json={"name": "zed"}).status_code == 403


def test_members(api: Api) -> None:
    api.post("admin", "/users", json={"name": "kai"})
    r = api.post("pm-geniac", "/projects/sakura/members", json={"user": "kai"})
    assert r.status_code == 201 and r.json() == {"user": "kai", "project": "sakura"}
    members = api.get("member-sakura", "/projects/sakura/members").json()
    assert members == {"project": "sakura", "items": [{"user": "kai", "project": "sakura"},
                                                      {"user": "mo", "project": "sakura"}]}
    r = api.post("pm-geniac", "/projects/sakura/members", json={"user": "kai"})
    assert (r.status_code, r.json()["detail"]) == (409, "user 'kai' already has role member in 'sakura'")
    assert api.post("pm-geniac", "/projects/tsubame/members", json={"user": "kai"}).status_code == 403
    assert api.post("member-sakura", "/projects/sakura/members", json={"user": "kai"}).status_code == 403
    assert api.get("member-tsubame", "/projects/sakura/members").status_code == 403
    assert api.post("admin", "/projects/sakura/members", json={"user": "nobody"}).status_code == 404
    # kai, now a member, sees sakura's jobs.
    token = api.post("admin", "/tokens", json={"name": "t", "user": "kai"}).json()["token"]
    r = api.client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {token}"})
    assert {job["project"] for job in r.json()["items"]} == {"sakura"}
