"""The audit log: a hash chain that shows edited, deleted and reordered entries."""

from __future__ import annotations

import hashlib
import json
import threading

import pytest
from sqlalchemy import delete, select, update

from kumo.core.errors import InvalidValueError
from kumo.store import GENESIS, AuditEntry, AuditRepository, Store
from kumo.store.repos.audit import NewEntry, entry_hash

from .conftest import at


def append(store: Store, n: int) -> None:
    with store.session() as s:
        log = AuditRepository(s)
        for i in range(n):
            log.append("alice", "job.submit", f"j-{i + 1:06d}", now=at(i), remote_addr="10.0.0.7", data={"gpus": i})


def problems(store: Store) -> list[tuple[int, str]]:
    with store.session(readonly=True) as s:
        return [(p.seq, p.kind) for p in AuditRepository(s).verify()]


def test_append_chains_each_entry_to_the_previous_one(store: Store) -> None:
    with store.session() as s:
        log = AuditRepository(s)
        first = log.append("alice", "token.create", "user:alice", now=at(0), remote_addr="10.0.0.7", data={"n": "x"})
        second = log.append("control", "job.start", "j-000001", now=at(1))
    body = {
        "seq": 1, "at": "2025-04-01T09:00:00.000000+00:00", "actor": "alice", "action": "token.create",
        "target": "user:alice", "remote_addr": "10.0.0.7", "data": {"n": "x"},
    }  # fmt: skip
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    assert first.prev_hash == GENESIS == "0" * 64
    assert first.hash == hashlib.sha256((GENESIS + canonical).encode()).hexdigest()
    assert (second.seq, second.prev_hash, second.remote_addr, second.data) == (2, first.hash, None, {})
    assert problems(store) == []


def test_an_empty_log_is_intact(store: Store) -> None:
    assert problems(store) == []


def test_entries_read_back_in_order(store: Store) -> None:
    append(store, 5)
    with store.session(readonly=True) as s:
        log = AuditRepository(s)
        assert [e.target for e in log.entries(after=2, limit=2)] == ["j-000003", "j-000004"]
        assert [(e.seq, e.at, e.data) for e in log.entries()][-1] == (5, at(4), {"gpus": 4})


def test_an_edited_entry_shows(store: Store) -> None:
    append(store, 5)
    with store.session() as s:
        s.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(actor="mallory"))
    assert problems(store) == [(3, "edited")]


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(store: Store) -> None:
    append(store, 5)
    with store.session() as s:
        s.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(data={"gpus": 64}))
        entry = s.scalars(select(AuditEntry).where(AuditEntry.seq == 3)).one()
        entry.hash = entry_hash(
            entry.prev_hash, 3, entry.at, entry.actor, entry.action, entry.target, entry.remote_addr, entry.data
        )
    assert problems(store) == [(4, "broken_link")]


def test_a_deleted_entry_shows(store: Store) -> None:
    append(store, 5)
    with store.session() as s:
        s.execute(delete(AuditEntry).where(AuditEntry.seq == 2))
    assert problems(store) == [(2, "missing")]
    with store.session(readonly=True) as s:
        assert [str(p) for p in AuditRepository(s).verify()] == ["entry 2 is missing (before seq 3)"]


def test_deleting_the_newest_entries_shows(store: Store) -> None:
    append(store, 5)
    with store.session() as s:
        s.execute(delete(AuditEntry).where(AuditEntry.seq >= 4))
    with store.session(readonly=True) as s:
        assert [str(p) for p in AuditRepository(s).verify()] == ["entries 4-5 are missing (at the end)"]


def test_a_reordering_shows(store: Store) -> None:
    append(store, 5)
    with store.session() as s:  # entries 2 and 3 trade places
        for old, new in ((2, 1_000), (3, 2), (1_000, 3)):
            s.execute(update(AuditEntry).where(AuditEntry.seq == old).values(seq=new))
    assert problems(store) == [(2, "broken_link"), (2, "edited"), (3, "broken_link"), (3, "edited"), (4, "broken_link")]


def test_appending_after_tampering_keeps_the_evidence(store: Store) -> None:
    append(store, 3)
    with store.session() as s:
        s.execute(delete(AuditEntry).where(AuditEntry.seq == 3))
    with store.session() as s:
        entry = AuditRepository(s).append("alice", "job.cancel", "j-000001", now=at(9))
        assert entry.seq == 4
    assert problems(store) == [(3, "missing")]


def test_arguments_are_checked_and_data_must_be_json(store: Store) -> None:
    with store.session() as s:
        log = AuditRepository(s)
        with pytest.raises(InvalidValueError, match="audit data"):
            log.append("alice", "x", "y", now=at(0), data={"when": at(0)})
        with pytest.raises(InvalidValueError, match="audit data"):
            log.append("alice", "x", "y", now=at(0), data={"ratio": float("nan")})
        with pytest.raises(InvalidValueError, match="remote_addr"):
            log.append("alice", "x", "y", now=at(0), remote_addr="1" * 65)
        with pytest.raises(InvalidValueError, match="target"):
            log.append("alice", "x", "", now=at(0))
        entry = log.append("alice", "x", "y", now=at(0), data={"ids": ("a", "b"), "n": 1.5})
        assert entry.data == {"ids": ["a", "b"], "n": 1.5}
    assert problems(store) == []


def test_concurrent_appenders_keep_one_chain(store: Store) -> None:
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            for i in range(10):
                with store.session() as s:
                    AuditRepository(s).append(name, "job.submit", f"{name}-{i}", now=at(i))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"w{k}",)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with store.session(readonly=True) as s:
        assert [e.seq for e in AuditRepository(s).entries(limit=1000)] == list(range(1, 41))
    assert problems(store) == []


def test_append_many_continues_the_chain_in_order(store: Store) -> None:
    append(store, 2)
    entries = [NewEntry("bob", "jobs.submit", f"job/j-{i:06d}", at(10 + i), "10.0.0.9", {"count": i, "ids": ("x",)})
               for i in range(3)]
    with store.session() as s:
        log = AuditRepository(s)
        log.append("carol", "tokens.create", "token/1", now=at(9))  # through the ORM, same transaction
        assert log.append_many(entries) == [4, 5, 6]
        assert log.append_many([]) == []
    with store.session(readonly=True) as s:
        got = AuditRepository(s).entries(after=3)
        assert [(e.seq, e.actor, e.target, e.at, e.remote_addr, e.data) for e in got] == [
            (4 + i, "bob", f"job/j-{i:06d}", at(10 + i), "10.0.0.9", {"count": i, "ids": ["x"]}) for i in range(3)]
        assert got[0].prev_hash == AuditRepository(s).entries(after=2, limit=1)[0].hash
    assert problems(store) == []
    append(store, 1)  # an ordinary append follows on
    assert problems(store) == []


def test_append_many_refuses_all_or_nothing_and_leaves_no_gap(store: Store) -> None:
    append(store, 1)
    with store.session() as s:
        with pytest.raises(InvalidValueError, match="audit data"):
            AuditRepository(s).append_many([NewEntry("bob", "x", "y", at(1)),
                                             NewEntry("bob", "x", "y", at(1), data={"nan": float("nan")})])
        assert AuditRepository(s).append_many([NewEntry("bob", "x", "y", at(2))]) == [2]
    assert problems(store) == []
