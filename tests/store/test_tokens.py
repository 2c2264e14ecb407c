"""API tokens: shown once, stored hashed, authenticated by hash, revoked for good."""

from __future__ import annotations

import hashlib
import re

import pytest
from sqlalchemy import select

from kumo.core.errors import InvalidValueError
from kumo.store import ApiToken, NotFoundError, Store, TenancyRepository, TokenRepository
from kumo.store.repos.tokens import VerifiedTokens, auth_generation, hash_token

from .conftest import Tenancy, at


def test_create_returns_the_plaintext_once_and_stores_its_hash(store: Store, tenancy: Tenancy) -> None:
    with store.session() as s:
        row, plaintext = TokenRepository(s).create(tenancy.user, "laptop", now=at(0))
    assert re.fullmatch(r"kumo_[A-Za-z0-9_-]{43}", plaintext)
    with store.session() as s:
        stored = s.scalars(select(ApiToken)).one()
        assert (stored.id, stored.user.name, stored.name) == (row.id, "alice", "laptop")
        assert stored.prefix == plaintext[:8]
        assert stored.token_hash == hashlib.sha256(plaintext.encode()).hexdigest()
        assert (stored.created_at, stored.revoked_at, stored.last_used_at) == (at(0), None, None)
        assert plaintext not in {stored.prefix, stored.token_hash, stored.name}


def test_authenticate_finds_the_user_and_records_the_use(store: Store, tenancy: Tenancy) -> None:
    with store.session() as s:
        repo = TokenRepository(s)
        _, alice_token = repo.create(tenancy.user, "laptop", now=at(0))
        _, bob_token = repo.create(tenancy.other_user, "ci", now=at(0))
    with store.session() as s:
        repo = TokenRepository(s)
        user = repo.authenticate(alice_token, now=at(30))
        assert user is not None
        assert user.name == "alice"
        bob = repo.authenticate(bob_token, now=at(40))
        assert bob is not None
        assert bob.name == "bob"
    with store.session() as s:
        assert [(t.name, t.last_used_at) for t in TokenRepository(s).list(tenancy.user)] == [("laptop", at(30))]


@pytest.mark.parametrize("guess", ["", "kumo_", "kumo_" + "A" * 43, "not-a-token", "KUMO_abc"])
def test_unknown_tokens_authenticate_no_one(store: Store, tenancy: Tenancy, guess: str) -> None:
    with store.session() as s:
        TokenRepository(s).create(tenancy.user, "laptop", now=at(0))
        assert TokenRepository(s).authenticate(guess, now=at(1)) is None


def test_a_revoked_token_is_refused(store: Store, tenancy: Tenancy) -> None:
    with store.session() as s:
        repo = TokenRepository(s)
        row, plaintext = repo.create(tenancy.user, "laptop", now=at(0))
        _, other = repo.create(tenancy.user, "desktop", now=at(0))
        assert repo.revoke(row.id, now=at(5)).revoked_at == at(5)
        assert repo.revoke(row.id, now=at(9)).revoked_at == at(5)  # the first revocation stands
    with store.session() as s:
        repo = TokenRepository(s)
        assert repo.authenticate(plaintext, now=at(10)) is None
        assert repo.authenticate(other, now=at(10)) is not None
        assert [(t.name, t.revoked_at, t.last_used_at) for t in repo.list("alice")] == [
            ("laptop", at(5), None),
            ("desktop", None, at(10)),
        ]
        with pytest.raises(NotFoundError, match="token 999 not found"):
            repo.revoke(999, now=at(11))


def test_tokens_need_a_known_user_and_a_name(store: Store, tenancy: Tenancy) -> None:
    with store.session() as s:
        repo = TokenRepository(s)
        with pytest.raises(NotFoundError, match="user 'carol' not found"):
            repo.create("carol", "laptop", now=at(0))
        with pytest.raises(InvalidValueError, match="token name"):
            repo.create(tenancy.user, "", now=at(0))
        assert repo.list(tenancy.user) == []


# --------------------------------------------------------------------------- the verified-token cache


def test_verified_tokens_are_believed_for_their_lifetime_only() -> None:
    now = [0.0]
    cache: VerifiedTokens[str] = VerifiedTokens(ttl_s=1.0, max_size=3, clock=lambda: now[0])
    cache.put("kumo_a", "alice", auth_generation())
    assert cache.get("kumo_a") == "alice" and cache.get("kumo_b") is None
    assert "kumo_a" not in str(cache._entries) and hash_token("kumo_a") in cache._entries  # kept by digest only
    now[0] = 0.99
    assert cache.get("kumo_a") == "alice"
    now[0] = 1.0
    assert cache.get("kumo_a") is None and len(cache) == 0
    for name in "abc":
        cache.put(f"kumo_{name}", name, auth_generation())
    cache.put("kumo_d", "d", auth_generation())  # past max_size it starts again
    assert len(cache) == 1 and cache.get("kumo_d") == "d"
    assert VerifiedTokens(ttl_s=0).get("kumo_d") is None


def test_a_revocation_forgets_every_verified_token_at_once(store: Store, tenancy: Tenancy) -> None:
    cache: VerifiedTokens[str] = VerifiedTokens()
    with store.session() as s:
        row, plaintext = TokenRepository(s).create(tenancy.user, "laptop", now=at(0))
    before = auth_generation()  # a verification that began before the revocation ...
    cache.put(plaintext, "alice", before)
    with store.session() as s:
        TokenRepository(s).revoke(row.id, now=at(5))
        assert cache.get(plaintext) is None  # forgotten as soon as the revocation is flushed
        during = auth_generation()
        cache.put(plaintext, "alice", during)  # (a verification reading the old row meanwhile)
    assert cache.get(plaintext) is None  # ... and again when it commits
    cache.put(plaintext, "alice", before)  # a verification that began before it is not kept
    assert cache.get(plaintext) is None


def test_a_new_role_forgets_verified_tokens_but_a_mere_use_does_not(store: Store, tenancy: Tenancy) -> None:
    cache: VerifiedTokens[str] = VerifiedTokens()
    with store.session() as s:
        _, plaintext = TokenRepository(s).create(tenancy.user, "laptop", now=at(0))
    cache.put(plaintext, "alice", auth_generation())
    with store.session() as s:
        assert TokenRepository(s).authenticate(plaintext, now=at(1)) is not None  # records last_used_at
    assert cache.get(plaintext) == "alice"
    with store.session() as s:
        TenancyRepository(s).add_membership(tenancy.user, "member", project=tenancy.project)
    assert cache.get(plaintext) is None
