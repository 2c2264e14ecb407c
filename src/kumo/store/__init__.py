"""The control plane's database: tables, migrations and repositories.

``Store(url)`` opens SQLite (the default file in the user's data directory) or PostgreSQL
(``KUMO_DATABASE_URL``); ``store.upgrade()`` migrates it; ``with store.session() as s:`` is one
transaction, inside which the repositories (``JobRepository(s)``, ...) read and write.
See ``docs/concepts/store.md``.
"""

from __future__ import annotations

from kumo.store.db import ENV_VAR, Store, alembic_config, default_url
from kumo.store.errors import ConflictError, FencedError, NotFoundError, StaleWriteError, StoreError
from kumo.store.models import (
    ApiToken,
    Attempt,
    AttemptOutcome,
    AuditEntry,
    Base,
    Cluster,
    Cohort,
    Job,
    JobEvent,
    JobState,
    Lease,
    Membership,
    Node,
    Programme,
    Project,
    Queue,
    Role,
    User,
)
from kumo.store.repos import (
    GENESIS,
    MAX_BULK,
    AuditProblem,
    AuditRepository,
    JobRepository,
    LeaseRepository,
    NodeRepository,
    RoleGrant,
    TenancyRepository,
    TokenRepository,
)

__all__ = [
    "ENV_VAR",
    "GENESIS",
    "MAX_BULK",
    "ApiToken",
    "Attempt",
    "AttemptOutcome",
    "AuditEntry",
    "AuditProblem",
    "AuditRepository",
    "Base",
    "Cluster",
    "Cohort",
    "ConflictError",
    "FencedError",
    "Job",
    "JobEvent",
    "JobRepository",
    "JobState",
    "Lease",
    "LeaseRepository",
    "Membership",
    "Node",
    "NodeRepository",
    "NotFoundError",
    "Programme",
    "Project",
    "Queue",
    "Role",
    "RoleGrant",
    "StaleWriteError",
    "Store",
    "StoreError",
    "TenancyRepository",
    "TokenRepository",
    "User",
    "alembic_config",
    "default_url",
]
