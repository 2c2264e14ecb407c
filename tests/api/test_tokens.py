"""Tokens through the API: shown once, stored hashed, listed without their text, revoked for good."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from kumo.api import deps
from kumo.store.repos.tokens import CACHE_TTL_S, VerifiedTokens

from .conftest import Api


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_whoami(api: Api) -> None:
    assert api.get("pm-geniac", "/whoami").json() == {
        "name": "pam", "roles": [{"role": "programme_manager", "programme": "geniac", "project": None}]}


def test_a_token_is_shown_once_and_stored_only_as_its_hash(api: Api) -> None:
    r = api.post("member-sakura", "/tokens", json={"name": "laptop"})
    assert r.status_code == 201, r.text
    created = r.json()
    plaintext = created["token"]
    assert re.fullmatch(r"kumo_[A-Za-z0-9_-]{43}", plaintext)
    assert (created["user"], created["name"], created["prefix"]) == ("mo", "laptop", plaintext[:8])
    listed = api.get("member-sakura", "/tokens").json()["items"]
    assert [t["name"] for t in listed] == ["test", "laptop"]
    assert all("token" not in t for t in listed) and plaintext not in str(listed)
    with api.store.session(readonly=True) as s:
        rows = [tuple(row) for row in s.execute(text("SELECT * FROM api_tokens"))]
        stored = s.execute(text("SELECT token_hash FROM api_tokens WHERE id = :id"), {"id": created["id"]}).scalar()
    assert not any(plaintext in str(value) for row in rows for value in row)
    assert stored == hashlib.sha256(plaintext.encode()).hexdigest()
    assert api.client.get("/api/v1/whoami", headers=bearer(plaintext)).json()["name"] == "mo"
    entry = api.get("admin", "/audit").json()["items"][-1]
    assert entry["action"] == "tokens.create" and plaintext not in str(entry)


def test_a_revoked_token_is_refused_at_once(api: Api) -> None:
    created = api.post("member-sakura", "/tokens", json={"name": "ci"}).json()
    r = api.delete("member-sakura", f"/tokens/{created['id']}")
    assert r.status_code == 200 and r.json()["revoked_at"] == "2025-04-01T11:00:00Z"
    r = api.client.get("/api/v1/whoami", headers=bearer(created["token"]))
    assert r.status_code == 401 and r.json()["detail"] == "unknown or revoked token"
    assert r.headers["www-authenticate"] == "Bearer"
    assert api.get("member-sakura", "/whoami").status_code == 200  # mo's other token still works


def test_other_users_tokens_are_the_admins(api: Api) -> None:
    r = api.post("member-sakura", "/tokens", json={"name": "x", "user": "tom"})
    assert r.status_code == 403 and "tokens write" in r.json()["detail"]
    r = api.post("admin", "/tokens", json={"name": "for-tom", "user": "tom"})
    assert r.status_code == 201 and r.json()["user"] == "tom"
    tom_token = r.json()["id"]
    assert api.delete("member-sakura", f"/tokens/{tom_token}").status_code == 403
    assert api.get("member-sakura", "/tokens", params={"user": "tom"}).status_code == 403
    assert [t["name"] for t in api.get("admin", "/tokens", params={"user": "tom"}).json()["items"]] == [
        "test", "for-tom"]
    assert api.delete("admin", f"/tokens/{tom_token}").status_code == 200
    assert api.delete("admin", "/tokens/99999").status_code == 404
    assert api.post("admin", "/tokens", json={"name": "x", "user": "nobody"}).status_code == 404


def test_missing_or_malformed_credentials(api: Api) -> None:
    for headers, detail in [
        ({}, "missing bearer token: send 'Authorization: Bearer kumo_…'"),
        ({"Authorization": "Basic YWRhOnNlY3JldA=="}, "malformed Authorization header: expected 'Bearer kumo_…'"),
        ({"Authorization": "Bearer"}, "malformed Authorization header: expected 'Bearer kumo_…'"),
        ({"Authorization": "Bearer kumo_" + "A" * 43}, "unknown or revoked token"),
        ({"Authorization": "Bearer not-a-kumo-token"}, "unknown or revoked token"),
    ]:
        r = api.client.get("/api/v1/whoami", headers=headers)
        assert (r.status_code, r.json()["detail"]) == (401, detail), headers


# --------------------------------------------------------------------------- the verified-token cache


def cache(api: Api, now: list[float]) -> VerifiedTokens[Any]:
    """Give the app a cache of verified tokens whose clock is ``now[0]`` (instead of the monotonic clock)."""
    verified: VerifiedTokens[Any] = VerifiedTokens(clock=lambda: now[0])
    api.app.state.verified_tokens, api.app.state.verified_tokens_store = verified, api.store
    return verified


def test_a_token_revoked_after_use_is_refused_at_once(api: Api) -> None:
    created = api.post("member-sakura", "/tokens", json={"name": "ci"}).json()
    assert api.client.get("/api/v1/whoami", headers=bearer(created["token"])).status_code == 200  # now believed
    assert api.delete("member-sakura", f"/tokens/{created['id']}").status_code == 200
    r = api.client.get("/api/v1/whoami", headers=bearer(created["token"]))
    assert (r.status_code, r.json()["detail"]) == (401, "unknown or revoked token")


def test_a_role_granted_applies_at_once(api: Api) -> None:
    job = {"project": "tsubame", "queue": "h200", "spec": {"gpus": 1}}
    assert api.post("member-sakura", "/jobs", json=job).status_code == 403  # mo's roles are now believed
    assert api.post("admin", "/projects/tsubame/members", json={"user": "mo"}).status_code == 201
    assert api.post("member-sakura", "/jobs", json=job).status_code == 201


def test_a_change_made_by_another_process_applies_within_a_second(api: Api) -> None:
    now = [0.0]
    cache(api, now)
    created = api.post("member-sakura", "/tokens", json={"name": "ci"}).json()
    assert api.client.get("/api/v1/whoami", headers=bearer(created["token"])).status_code == 200
    with api.store.session() as s:  # as another kumo process would: no event of this one sees it
        s.execute(text("UPDATE api_tokens SET revoked_at = created_at WHERE id = :id"), {"id": created["id"]})
    now[0] = CACHE_TTL_S - 0.01
    assert api.client.get("/api/v1/whoami", headers=bearer(created["token"])).status_code == 200  # still believed
    now[0] = CACHE_TTL_S
    assert api.client.get("/api/v1/whoami", headers=bearer(created["token"])).status_code == 401


def test_a_tokens_use_is_recorded_once_per_verification(api: Api) -> None:
    now = [0.0]
    cache(api, now)
    created = api.post("member-sakura", "/tokens", json={"name": "ci"}).json()

    def last_used() -> str | None:
        [mine] = [t for t in api.get("member-sakura", "/tokens").json()["items"] if t["id"] == created["id"]]
        return mine["last_used_at"]

    assert last_used() is None
    api.client.get("/api/v1/whoami", headers=bearer(created["token"]))
    assert last_used() == "2025-04-01T11:00:00Z"
    api.clock.advance(60)
    api.client.get("/api/v1/whoami", headers=bearer(created["token"]))  # believed: not looked up
    assert last_used() == "2025-04-01T11:00:00Z"
    now[0] = CACHE_TTL_S
    api.client.get("/api/v1/whoami", headers=bearer(created["token"]))
    assert last_used() == "2025-04-01T11:01:00Z"


def test_requests_arriving_together_verify_their_token_once(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    authenticate = deps.authenticate

    def counted(store: Any, token: str, now: Any) -> Any:
        calls.append(token)
        time.sleep(0.05)  # long enough for every request to find the verification under way
        return authenticate(store, token, now)

    monkeypatch.setattr(deps, "authenticate", counted)

    async def together() -> list[int]:
        transport = httpx.ASGITransport(app=api.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kumo") as client:
            rs = await asyncio.gather(*(client.get("/api/v1/whoami", headers=api.auth("viewer")) for _ in range(8)))
        return [r.status_code for r in rs]

    assert asyncio.run(together()) == [200] * 8
    assert len(calls) == 1
