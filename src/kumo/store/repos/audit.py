"""The audit log: append-only and hash-chained, so an edit, a deletion or a reordering shows.

Entry ``seq`` carries ``hash = sha256(prev_hash + canonical JSON of {seq, at, actor, action,
target, remote_addr, data})`` where ``prev_hash`` is entry ``seq - 1``'s hash (64 zeros for the
first) and canonical JSON sorts keys and drops spaces. Appends are serialised by the
``audit_log`` counter row (locked by the ``UPDATE`` that allocates ``seq`` on PostgreSQL; SQLite's
write lock covers the whole transaction), which also remembers how many entries there should be,
so deleting the newest entries shows too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, select

from kumo.core.errors import InvalidValueError
from kumo.store.columns import as_utc
from kumo.store.models import AuditEntry, Counter
from kumo.store.repos._bulk import allocate, insert_rows
from kumo.store.repos._common import Repository, check_text

GENESIS = "0" * 64


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def entry_hash(
    prev_hash: str, seq: int, at: datetime, actor: str, action: str, target: str, remote_addr: str | None,
    data: Mapping[str, Any],
) -> str:  # fmt: skip
    body = {
        "seq": seq, "at": as_utc(at).isoformat(timespec="microseconds"), "actor": actor, "action": action,
        "target": target, "remote_addr": remote_addr, "data": data,
    }  # fmt: skip
    return hashlib.sha256((prev_hash + canonical_json(body)).encode()).hexdigest()


def _checked(e: NewEntry) -> dict[str, Any]:
    """The entry's columns but ``seq`` and the hashes, each checked (``InvalidValueError`` if not right)."""
    return {
        "at": as_utc(e.now, "now"), "actor": check_text("actor", e.actor, 255),
        "action": check_text("action", e.action, 128), "target": check_text("target", e.target, 255),
        "remote_addr": _remote_addr(e.remote_addr), "data": _json_data(e.data),
    }  # fmt: skip


def _hash_of(entry: AuditEntry) -> str:
    return entry_hash(
        entry.prev_hash, entry.seq, entry.at, entry.actor, entry.action, entry.target, entry.remote_addr, entry.data
    )


@dataclass(frozen=True, slots=True)
class NewEntry:
    """An entry to append with :meth:`AuditRepository.append_many` (the arguments of ``append``)."""

    actor: str
    action: str
    target: str
    now: datetime
    remote_addr: str | None = None
    data: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class AuditProblem:
    """Something wrong with the chain at ``seq``: ``edited``, ``missing``, ``broken_link`` or ``unexpected``."""

    seq: int
    kind: str
    message: str

    def __str__(self) -> str:
        return self.message


class AuditRepository(Repository):
    """Append to, read and verify the audit log."""

    def append(
        self,
        actor: str,
        action: str,
        target: str,
        *,
        now: datetime,
        remote_addr: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Add an entry at the end of the chain (``data`` must be JSON: it is hashed as such).

        Every argument is checked before ``seq`` is taken, so a refused entry leaves no gap.
        """
        entry = AuditEntry(**_checked(NewEntry(actor, action, target, now, remote_addr, data)))
        entry.seq = allocate(self.session, "audit_log", 1)  # waits for any other appender to commit
        last = select(AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
        entry.prev_hash = self.session.scalar(last) or GENESIS
        entry.hash = _hash_of(entry)
        self.session.add(entry)
        self.session.flush()
        return entry

    def append_many(self, entries: Sequence[NewEntry]) -> list[int]:
        """Add entries at the end of the chain in the given order, as ``append`` would one by one,
        with one counter update and one executemany ``INSERT``; their ``seq`` numbers.

        Every entry is checked before any ``seq`` is taken, so a refused one leaves no gap and
        appends nothing.
        """
        rows = [_checked(e) for e in entries]
        if not rows:
            return []
        self.session.flush()  # entries appended through the ORM in this transaction come first
        first = allocate(self.session, "audit_log", len(rows))  # waits for any other appender to commit
        table = cast(Table, AuditEntry.__table__)
        last = select(table.c.hash).where(table.c.seq < first).order_by(table.c.seq.desc()).limit(1)
        prev = self.session.execute(last).scalar() or GENESIS
        for seq, row in enumerate(rows, first):
            row["seq"], row["prev_hash"] = seq, prev
            row["hash"] = prev = entry_hash(prev, seq, row["at"], row["actor"], row["action"], row["target"],
                                            row["remote_addr"], row["data"])
        insert_rows(self.session, AuditEntry, rows)
        return [row["seq"] for row in rows]

    def entries(self, *, after: int = 0, limit: int = 100) -> list[AuditEntry]:
        """Up to ``limit`` entries with ``seq`` above ``after``, in order."""
        stmt = select(AuditEntry).where(AuditEntry.seq > after).order_by(AuditEntry.seq).limit(limit)
        return list(self.session.scalars(stmt))

    def verify(self) -> list[AuditProblem]:
        """Every problem with the chain, in order; ``[]`` when the log is intact."""
        problems: list[AuditProblem] = []
        expected, prev = 1, GENESIS
        stmt = select(AuditEntry).order_by(AuditEntry.seq).execution_options(yield_per=2_000)
        for entry in self.session.scalars(stmt):
            problems.extend(_check(entry, expected, prev))
            expected, prev = entry.seq + 1, entry.hash
        problems.extend(self._check_end(expected - 1))
        return problems

    def _check_end(self, last: int) -> list[AuditProblem]:
        counter = self.session.get(Counter, "audit_log")
        appended = 0 if counter is None else counter.value
        if appended > last:
            return [_missing(last + 1, appended, "at the end")]
        if appended < last:
            return [AuditProblem(last, "unexpected", f"entries past seq {appended} were never appended")]
        return []


def _check(entry: AuditEntry, expected: int, prev: str) -> list[AuditProblem]:
    problems = []
    if entry.seq != expected:
        problems.append(_missing(expected, entry.seq - 1, f"before seq {entry.seq}"))
    elif entry.prev_hash != prev:
        problems.append(
            AuditProblem(entry.seq, "broken_link", f"entry {entry.seq} does not follow entry {entry.seq - 1}")
        )
    if _hash_of(entry) != entry.hash:
        problems.append(AuditProblem(entry.seq, "edited", f"entry {entry.seq} does not match its hash"))
    return problems


def _missing(first: int, last: int, where: str) -> AuditProblem:
    which = f"entry {first} is" if first == last else f"entries {first}-{last} are"
    return AuditProblem(first, "missing", f"{which} missing ({where})")


def _remote_addr(remote_addr: str | None) -> str | None:
    return None if remote_addr is None else check_text("remote_addr", remote_addr, 64)


def _json_data(data: Mapping[str, Any] | None) -> dict[str, Any]:
    try:
        body = json.loads(canonical_json(dict(data or {})))
    except (TypeError, ValueError) as exc:
        raise InvalidValueError("audit data", f"must be JSON (string keys, finite numbers): {exc}") from None
    return dict(body)
