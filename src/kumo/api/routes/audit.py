"""The audit log: read it in order, and verify its hash chain (admins only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from kumo.api.deps import CurrentPrincipal, ReadSessionDep, require
from kumo.api.schemas import AuditEntryPublic, AuditProblemPublic, AuditPublic, AuditVerifyPublic
from kumo.store import AuditRepository

router = APIRouter(tags=["audit"])


@router.get("/audit")
def read_audit(
    who: CurrentPrincipal,
    session: ReadSessionDep,
    after: Annotated[int, Query(ge=0, le=2**62, description="entries after this seq")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPublic:
    """Up to ``limit`` entries after ``after``, in order; ``next_after`` continues."""
    require(who, "audit.read")
    entries = AuditRepository(session).entries(after=after, limit=limit + 1)
    items = [
        AuditEntryPublic(seq=e.seq, at=e.at, actor=e.actor, action=e.action, target=e.target,
                         remote_addr=e.remote_addr, data=dict(e.data), hash=e.hash)
        for e in entries[:limit]
    ]  # fmt: skip
    return AuditPublic(items=items, next_after=items[-1].seq if len(entries) > limit else None)


@router.get("/audit/verify")
def verify_audit(who: CurrentPrincipal, session: ReadSessionDep) -> AuditVerifyPublic:
    """Check the whole hash chain: an edited, deleted or reordered entry shows as a problem."""
    require(who, "audit.read")
    found = AuditRepository(session).verify()
    problems = [AuditProblemPublic(seq=p.seq, kind=p.kind, message=p.message) for p in found]
    return AuditVerifyPublic(ok=not problems, problems=problems)
