"""Repositories: every query of the store, one module per noun, each taking a ``Session``."""

from __future__ import annotations

from kumo.store.repos.audit import GENESIS, AuditProblem, AuditRepository
from kumo.store.repos.grants import GROUP_KEYS, AttemptSpan, GrantRepository, Metered, UsageTotal
from kumo.store.repos.jobs import MAX_BULK, MAX_PAGE, OUTCOME_STATE, JobRepository
from kumo.store.repos.leases import LeaseRepository
from kumo.store.repos.nodes import NodeRepository
from kumo.store.repos.tenancy import RoleGrant, TenancyRepository
from kumo.store.repos.tokens import TOKEN_PREFIX, TokenRepository, hash_token

__all__ = [
    "GENESIS",
    "GROUP_KEYS",
    "MAX_BULK",
    "MAX_PAGE",
    "OUTCOME_STATE",
    "TOKEN_PREFIX",
    "AttemptSpan",
    "AuditProblem",
    "AuditRepository",
    "GrantRepository",
    "JobRepository",
    "LeaseRepository",
    "Metered",
    "NodeRepository",
    "RoleGrant",
    "TenancyRepository",
    "TokenRepository",
    "UsageTotal",
    "hash_token",
]
