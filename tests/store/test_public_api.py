"""The store's public surface is explicit: ``__all__`` is pinned, and it imports no other shell."""

from __future__ import annotations

import ast
import pathlib

import kumo.store

EXPECTED = {
    "ENV_VAR", "GENESIS", "MAX_BULK", "ApiToken", "Attempt", "AttemptOutcome", "AuditEntry", "AuditProblem",
    "AuditRepository", "Base", "Cluster", "Cohort", "ConflictError", "FencedError", "Job", "JobEvent",
    "JobRepository", "JobState", "Lease", "LeaseRepository", "Membership", "Node", "NodeRepository",
    "NotFoundError", "Programme", "Project", "Queue", "Role", "RoleGrant", "StaleWriteError", "Store", "StoreError",
    "TenancyRepository", "TokenRepository", "User", "alembic_config", "default_url",
    "AttemptSpan", "ForbiddenError", "Grant", "GrantAlert", "GrantKind", "GrantRepository", "GrantRequest",
    "GrantStatus", "Metered", "RateVersion", "RequestKind", "RequestStatus", "UsageEntry", "UsageTotal",
}  # fmt: skip


def test_all_is_pinned() -> None:
    assert set(kumo.store.__all__) == EXPECTED
    for name in kumo.store.__all__:
        assert hasattr(kumo.store, name)


def test_the_store_imports_only_the_core_of_kumo() -> None:
    """store/ sits beside sim/ and under control/ and api/: of kumo, it may import only the pure
    layers, core/ and grants/ (the rules of money and grant terms, checked in one place)."""
    root = pathlib.Path(kumo.store.__file__).parent
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kumo."):
                assert node.module.startswith(("kumo.core", "kumo.grants", "kumo.store")), \
                    f"{path}: imports {node.module}"


def test_grants_is_pure_like_the_core() -> None:
    """kumo.grants holds rules, not I/O: of kumo it imports only core/, and no database, HTTP or clock."""
    root = pathlib.Path(kumo.store.__file__).parent.parent / "grants"
    banned = ("sqlalchemy", "httpx", "fastapi", "time", "random", "os", "subprocess")
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                if name.startswith("kumo."):
                    assert name.startswith(("kumo.core", "kumo.grants")), f"{path}: imports {name}"
                assert name.split(".")[0] not in banned, f"{path}: imports {name}"
