"""What the routers share: the audit entry of a change, and the projects a listing covers."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from kumo.api import authz
from kumo.api.authz import Principal
from kumo.api.deps import require
from kumo.store import AuditRepository, TenancyRepository


def audit(
    session: Session, who: Principal, action: str, target: str, *, now: datetime, remote_addr: str | None,
    data: Mapping[str, Any] | None = None,
) -> None:  # fmt: skip
    """Record ``who`` doing ``action`` to ``target``, in the request's transaction."""
    AuditRepository(session).append(who.user, action, target[:255], now=now, remote_addr=remote_addr, data=data)


def project_scopes(session: Session, who: Principal, action: str, project: str | None) -> list[str | None]:
    """The projects a listing of ``action`` covers: ``[project]`` (checked), the visible ones, or
    ``[None]`` (every project, for admins and viewers)."""
    tenancy = TenancyRepository(session)
    if project is not None:
        row = tenancy.get_project(project)
        require(who, action, row.programme.name, row.name)
        return [row.name]
    if not who.grants:
        require(who, action)  # no role at all: a 403 saying what is needed
    visible = authz.visible_projects(who, {p.name: p.programme.name for p in tenancy.list_projects()})
    scopes: list[str | None] = [None] if visible is None else [*sorted(visible)]
    return scopes
