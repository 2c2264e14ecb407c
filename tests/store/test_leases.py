"""Leases: one holder at a time, new terms raise the fencing token, deposed holders are fenced off."""

from __future__ import annotations

import threading
import time

import pytest

from kumo.core.errors import InvalidValueError
from kumo.store import FencedError, JobRepository, LeaseRepository, Store

from .conftest import Tenancy, at


def acquire(store: Store, holder: str, seconds: float, ttl_s: float = 10) -> int | None:
    with store.session() as s:
        return LeaseRepository(s).acquire("leader", holder, ttl_s, now=at(seconds))


def check(store: Store, token: int, seconds: float) -> None:
    with store.session() as s:
        LeaseRepository(s).check("leader", token, now=at(seconds))


def test_one_holder_at_a_time_and_renewal_keeps_the_token(store: Store) -> None:
    assert acquire(store, "a", 0) == 1
    assert acquire(store, "b", 1) is None
    assert acquire(store, "a", 5) == 1  # a renewal: same term, later expiry
    assert acquire(store, "b", 12) is None  # a's lease now runs to 15
    with store.session() as s:
        lease = LeaseRepository(s).get("leader")
        assert lease is not None
        assert (lease.holder, lease.token, lease.expires_at) == ("a", 1, at(15))
    check(store, 1, 14)


def test_expiry_lets_another_holder_take_over_with_the_next_token(store: Store) -> None:
    assert acquire(store, "a", 0) == 1
    assert acquire(store, "b", 10) == 2  # expired at 10: a new term
    assert acquire(store, "a", 11) is None
    with pytest.raises(FencedError, match="token 1 is fenced off: the current term is token 2, held by 'b'"):
        check(store, 1, 11)
    check(store, 2, 11)
    assert acquire(store, "c", 20) == 3


def test_a_holder_that_lets_its_lease_expire_starts_a_new_term(store: Store) -> None:
    assert acquire(store, "a", 0) == 1
    with pytest.raises(FencedError, match="the term expired at 2025-04-01T09:00:10"):
        check(store, 1, 10)
    assert acquire(store, "a", 12) == 2
    with pytest.raises(FencedError, match="the current term is token 2"):
        check(store, 1, 13)


def test_renew_extends_the_current_term_only(store: Store) -> None:
    assert acquire(store, "a", 0) == 1
    with store.session() as s:
        assert LeaseRepository(s).renew("leader", 1, 30, now=at(5)) == at(35)
    assert acquire(store, "b", 20) is None
    with store.session() as s, pytest.raises(FencedError, match="the term expired"):
        LeaseRepository(s).renew("leader", 1, 30, now=at(35))
    assert acquire(store, "b", 36) == 2
    with store.session() as s, pytest.raises(FencedError, match="the current term is token 2"):
        LeaseRepository(s).renew("leader", 1, 30, now=at(37))


def test_release_frees_the_lease_at_once(store: Store) -> None:
    assert acquire(store, "a", 0) == 1
    with store.session() as s:
        leases = LeaseRepository(s)
        assert leases.release("leader", 7, now=at(1)) is False  # not the current term
        assert leases.release("leader", 1, now=at(2)) is True
        assert leases.release("leader", 1, now=at(3)) is False  # already over
    assert acquire(store, "b", 3) == 2


def test_unknown_leases_and_bad_arguments(store: Store) -> None:
    with pytest.raises(FencedError, match="the lease was never taken"):
        check(store, 1, 0)
    with store.session() as s:
        leases = LeaseRepository(s)
        assert leases.get("leader") is None
        assert leases.release("leader", 1, now=at(0)) is False
        with pytest.raises(InvalidValueError, match="ttl_s"):
            leases.acquire("leader", "a", 0, now=at(0))
        with pytest.raises(InvalidValueError, match="lease holder"):
            leases.acquire("leader", "", 10, now=at(0))


def test_a_deposed_leaders_writes_roll_back(store: Store, tenancy: Tenancy) -> None:
    assert acquire(store, "a", 0) == 1
    assert acquire(store, "b", 11) == 2
    with pytest.raises(FencedError), store.session() as s:
        JobRepository(s).submit(tenancy.project, tenancy.queue, tenancy.user, {"gpus": 1}, now=at(12))
        LeaseRepository(s).check("leader", 1, now=at(12))
    with store.session() as s:
        JobRepository(s).submit(tenancy.project, tenancy.queue, tenancy.user, {"gpus": 1}, now=at(12))
        LeaseRepository(s).check("leader", 2, now=at(12))
    with store.session() as s:
        assert [j.submit_time for j in JobRepository(s).list()[0]] == [at(12)]


def test_two_holders_racing_for_a_new_lease_get_one_term(store: Store) -> None:
    barrier = threading.Barrier(2)
    results: dict[str, int | None] = {}

    def race(holder: str) -> None:
        barrier.wait()
        results[holder] = acquire(store, holder, 0)

    threads = [threading.Thread(target=race, args=(holder,)) for holder in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results.values(), key=str) == [1, None]
    winner = next(holder for holder, token in results.items() if token == 1)
    with store.session() as s:
        lease = LeaseRepository(s).get("leader")
        assert lease is not None
        assert (lease.holder, lease.token) == (winner, 1)


def test_a_takeover_waits_for_the_checked_transaction(store: Store, tenancy: Tenancy) -> None:
    assert acquire(store, "a", 0) == 1
    done: dict[str, float] = {}

    def take_over() -> None:
        token = acquire(store, "b", 30)  # a's term is over by then, but a is mid-transaction
        done["b"] = time.monotonic()
        done["token"] = float(token or 0)

    with store.session() as s:
        LeaseRepository(s).check("leader", 1, now=at(5))
        thief = threading.Thread(target=take_over)
        thief.start()
        time.sleep(0.3)
        assert "b" not in done
        JobRepository(s).submit(tenancy.project, tenancy.queue, tenancy.user, {"gpus": 1}, now=at(5))
        committed = time.monotonic()
    thief.join(timeout=10)
    assert done["b"] >= committed
    assert done["token"] == 2
    with store.session() as s:
        assert len(JobRepository(s).list()[0]) == 1
