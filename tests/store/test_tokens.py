"""API tokens: shown once, stored hashed, authenticated by hash, revoked for good."""

from __future__ import annotations

import hashlib
import re

import pytest
from sqlalchemy import select

from kumo.core.errors import InvalidValueError
from kumo.store import ApiToken, NotFoundError, Store, TokenRepository

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
