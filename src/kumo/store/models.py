"""The control plane's tables, as typed SQLAlchemy models.

Every datetime column holds a timezone-aware UTC value (:class:`~kumo.store.columns.UTCDateTime`);
every state is a string enum stored by value. ``migrations/versions/0001_initial.py`` creates exactly these tables,
and a test compares the two.
"""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from kumo.core import model as core
from kumo.core.model import NodeState
from kumo.grants.grant import GrantKind as GrantKind  # the pure layer's enums, stored by value
from kumo.grants.grant import GrantStatus as GrantStatus
from kumo.store.columns import UTCDateTime, quotas_from_json, str_enum
from kumo.store.jobspec import core_job

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
NAME = 128  # longest name kumo accepts (kumo.core.resources.check_name)


class JobState(enum.StrEnum):
    """Where a job is. A preempted or lost job goes back to ``PENDING``; the last three are final."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"

    @property
    def final(self) -> bool:
        return self not in (JobState.PENDING, JobState.RUNNING)


class AttemptOutcome(enum.StrEnum):
    """How an attempt ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PREEMPTED = "preempted"
    LOST = "lost"
    CANCELLED = "cancelled"
    WALLTIME = "walltime"


class Role(enum.StrEnum):
    """What a user may do: admins and viewers everywhere, a programme manager in one programme,
    a member in one project."""

    ADMIN = "admin"
    PROGRAMME_MANAGER = "programme_manager"
    MEMBER = "member"
    VIEWER = "viewer"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# --------------------------------------------------------------------------- nodes


class Cluster(Base):
    __tablename__ = "clusters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME), unique=True)
    region: Mapped[str] = mapped_column(String(NAME))


class Node(Base):
    """A GPU machine. ``state`` is its health (up, drained, down); ``cordoned`` is an operator's
    "no new work here", kept across state changes."""

    __tablename__ = "nodes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME), unique=True)
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id"), index=True)
    region: Mapped[str] = mapped_column(String(NAME))
    zone: Mapped[str] = mapped_column(String(NAME))
    block: Mapped[str] = mapped_column(String(NAME))
    nvlink_domain: Mapped[str] = mapped_column(String(NAME))
    gpu_model: Mapped[str] = mapped_column(String(64))
    gpus: Mapped[int] = mapped_column(Integer)
    cpu_milli: Mapped[int] = mapped_column(BigInteger)
    mem_mib: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[NodeState] = mapped_column(str_enum(NodeState))
    cordoned: Mapped[bool] = mapped_column(Boolean)
    labels: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    cluster: Mapped[Cluster] = relationship()

    def to_core(self) -> core.Node:
        """The scheduler's view: a cordoned node that is up takes no new work, as if drained."""
        state = NodeState.DRAINED if self.cordoned and self.state is NodeState.UP else self.state
        return core.Node(
            self.name,
            self.region,
            self.gpu_model,
            self.gpus,
            zone=self.zone,
            block=self.block,
            nvlink_domain=self.nvlink_domain,
            cpu_milli=self.cpu_milli,
            mem_mib=self.mem_mib,
            state=state,
        )


# --------------------------------------------------------------------------- tenancy


class Programme(Base):
    __tablename__ = "programmes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME), unique=True)
    weight: Mapped[float] = mapped_column(Float)
    grant_policy: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # kumo.grants.standing.GrantPolicy

    def to_core(self) -> core.Programme:
        return core.Programme(self.name, self.weight)


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME), unique=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programmes.id"), index=True)
    weight: Mapped[float] = mapped_column(Float)

    programme: Mapped[Programme] = relationship()

    def to_core(self) -> core.Project:
        return core.Project(self.name, self.programme.name, self.weight)


class Cohort(Base):
    __tablename__ = "cohorts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME), unique=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("cohorts.id"), index=True)
    quota: Mapped[dict[str, Any]] = mapped_column(JSON)

    parent: Mapped[Cohort | None] = relationship(remote_side=[id])

    def to_core(self) -> core.Cohort:
        parent = self.parent.name if self.parent is not None else None
        return core.Cohort(self.name, parent=parent, quota=quotas_from_json(self.quota))


class Queue(Base):
    __tablename__ = "queues"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME), unique=True)
    cohort_id: Mapped[int | None] = mapped_column(ForeignKey("cohorts.id"), index=True)
    quota: Mapped[dict[str, Any]] = mapped_column(JSON)

    cohort: Mapped[Cohort | None] = relationship()

    def to_core(self) -> core.Queue:
        cohort = self.cohort.name if self.cohort is not None else None
        return core.Queue(self.name, quota=quotas_from_json(self.quota), cohort=cohort)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME), unique=True)


class Membership(Base):
    """One role of one user; its scope (programme, project or none) must match the role."""

    __tablename__ = "memberships"
    __table_args__ = (
        CheckConstraint(
            "(role IN ('admin', 'viewer') AND programme_id IS NULL AND project_id IS NULL)"
            " OR (role = 'programme_manager' AND programme_id IS NOT NULL AND project_id IS NULL)"
            " OR (role = 'member' AND project_id IS NOT NULL AND programme_id IS NULL)",
            name="scope",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[Role] = mapped_column(str_enum(Role))
    programme_id: Mapped[int | None] = mapped_column(ForeignKey("programmes.id"), index=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"), index=True)

    user: Mapped[User] = relationship()
    programme: Mapped[Programme | None] = relationship()
    project: Mapped[Project | None] = relationship()


class ApiToken(Base):
    """A bearer token, stored as the SHA-256 of its text; ``prefix`` is shown to tell tokens apart."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(NAME))
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    user: Mapped[User] = relationship()


# --------------------------------------------------------------------------- jobs


class Counter(Base):
    """Named counters (``jobs``, ``audit_log``), each bumped under its row's lock."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class Job(Base):
    """A submitted gang. ``id`` is ``j-`` and ``seq`` zero-padded; ``seq`` orders and pages jobs.
    ``version`` goes up by one with every change (optimistic concurrency)."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_state_seq", "state", "seq"),
        Index("ix_jobs_project_id_seq", "project_id", "seq"),
        Index("ix_jobs_queue_id_seq", "queue_id", "seq"),
        Index("ix_jobs_submitted_by_id_seq", "submitted_by_id", "seq"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    queue_id: Mapped[int] = mapped_column(ForeignKey("queues.id"))
    submitted_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[JobState] = mapped_column(str_enum(JobState))
    reason: Mapped[str] = mapped_column(Text)
    submit_time: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer)
    attained_gpu_s: Mapped[float] = mapped_column(Float)
    work_done_s: Mapped[float] = mapped_column(Float)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    cancel_requested: Mapped[bool] = mapped_column(Boolean)
    version: Mapped[int] = mapped_column(Integer)

    project: Mapped[Project] = relationship()
    queue: Mapped[Queue] = relationship()
    submitted_by: Mapped[User] = relationship()

    def to_core(self) -> core.Job:
        """The scheduler's view; times are seconds since the Unix epoch."""
        return core_job(
            self.id,
            self.queue.name,
            self.project.name,
            self.spec,
            submit_time=self.submit_time.timestamp(),
            attained_gpu_s=self.attained_gpu_s,
            work_done_s=self.work_done_s,
        )


class Attempt(Base):
    """One time a job ran: where (``placement``), under which leader (``fencing_token``), how it ended."""

    __tablename__ = "attempts"
    __table_args__ = (UniqueConstraint("job_id", "number"), Index("ix_attempts_ended_at", "ended_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    placement: Mapped[dict[str, Any]] = mapped_column(JSON)
    fencing_token: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    outcome: Mapped[AttemptOutcome | None] = mapped_column(str_enum(AttemptOutcome))
    exit_code: Mapped[int | None] = mapped_column(Integer)


# An autoincrementing 64-bit key (SQLite only autoincrements INTEGER PRIMARY KEY, its rowid).
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


class JobEvent(Base):
    __tablename__ = "job_events"
    __table_args__ = (Index("ix_job_events_job_id_id", "job_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


# --------------------------------------------------------------------------- audit and leases


class AuditEntry(Base):
    """One line of the append-only, hash-chained audit log (see :mod:`kumo.store.repos.audit`)."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(128))
    target: Mapped[str] = mapped_column(String(255))
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class Lease(Base):
    """A named lease (the leader's): who holds it, until when, and its fencing token."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    token: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


# --------------------------------------------------------------------------- grants and metering
# Added by migration 0002. The pure rules (rate card, metering, forecasts) live in kumo.grants;
# these rows have the shapes its functions read (RateVersionLike, GrantLike).

MICRO = Decimal("0.000001")


def micro_to_decimal(micro: int | Decimal) -> Decimal:
    """Integer micro-units (or a database's decimal sum of them) as a six-place decimal."""
    return Decimal(micro).scaleb(-6).quantize(MICRO, rounding=ROUND_HALF_EVEN)


class Micro(TypeDecorator[Decimal]):
    """A six-place decimal (money, GPU-hours) kept as an integer count of micro-units (0.000001).

    Integers keep sums exact on both databases: SQLite has no decimal type and would store a
    ``NUMERIC`` with six places as a binary float. ``Decimal("1.5")`` is stored as ``1500000``.
    """

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | int | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        return int(Decimal(value).quantize(MICRO, rounding=ROUND_HALF_EVEN).scaleb(6))

    def process_result_value(self, value: int | None, dialect: Dialect) -> Decimal | None:
        return None if value is None else micro_to_decimal(value)


class RequestKind(enum.StrEnum):
    """What a member asks for: a ``new`` grant, a ``renewal`` (a later end) or a ``topup`` (more amount)."""

    NEW = "new"
    RENEWAL = "renewal"
    TOPUP = "topup"


class RequestStatus(enum.StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    DENIED = "denied"


class RateVersion(Base):
    """One version of the rate card, in force over ``[effective_from, effective_to)`` (None: open-ended)."""

    __tablename__ = "rate_card_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    effective_from: Mapped[datetime] = mapped_column(UTCDateTime())
    effective_to: Mapped[datetime | None] = mapped_column(UTCDateTime())
    currency: Mapped[str] = mapped_column(String(16))
    preemptible_discount: Mapped[Decimal] = mapped_column(Micro())
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    entries: Mapped[list[RatePrice]] = relationship(
        back_populates="version", cascade="all, delete-orphan", order_by="RatePrice.id", lazy="selectin"
    )

    @property
    def label(self) -> str:
        """How errors and reports name the version: ``#3``."""
        return f"#{self.id}"

    @property
    def prices(self) -> dict[tuple[str, str], Decimal]:
        """``{(flavor, tier): price per GPU-hour}``."""
        return {(e.flavor, e.tier): e.price for e in self.entries}


class RatePrice(Base):
    """The price of one GPU-hour of ``flavor`` in ``tier`` under one rate-card version."""

    __tablename__ = "rate_card_prices"
    __table_args__ = (UniqueConstraint("version_id", "flavor", "tier"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("rate_card_versions.id", ondelete="CASCADE"))
    flavor: Mapped[str] = mapped_column(String(64))
    tier: Mapped[str] = mapped_column(String(32))
    price: Mapped[Decimal] = mapped_column(Micro())

    version: Mapped[RateVersion] = relationship(back_populates="entries")


class Grant(Base):
    """Compute handed to a project over ``[start, end)``: ``amount`` of ``currency`` (JPY, USD, or
    ``gpu_hours`` for a GPU-hours grant), optionally limited to ``flavors``. ``version`` goes up by
    one with every change (optimistic concurrency)."""

    __tablename__ = "grants"
    __table_args__ = (CheckConstraint("amount > 0", name="amount_positive"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    kind: Mapped[GrantKind] = mapped_column(str_enum(GrantKind))
    amount: Mapped[Decimal] = mapped_column(Micro())
    currency: Mapped[str] = mapped_column(String(16))
    flavors: Mapped[list[str] | None] = mapped_column(JSON)
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    end: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[GrantStatus] = mapped_column(str_enum(GrantStatus))
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer)

    project: Mapped[Project] = relationship()
    created_by: Mapped[User] = relationship()


class GrantRequest(Base):
    """A member's request — a new grant (whose row waits as ``requested``), a renewal to ``new_end``
    or a top-up by ``amount`` — and a programme manager's decision with its comment."""

    __tablename__ = "grant_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    grant_id: Mapped[int] = mapped_column(ForeignKey("grants.id"), index=True)
    kind: Mapped[RequestKind] = mapped_column(str_enum(RequestKind))
    amount: Mapped[Decimal | None] = mapped_column(Micro())
    new_end: Mapped[datetime | None] = mapped_column(UTCDateTime())
    comment: Mapped[str] = mapped_column(Text)
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[RequestStatus] = mapped_column(str_enum(RequestStatus))
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decision_comment: Mapped[str] = mapped_column(Text)

    grant: Mapped[Grant] = relationship()
    requested_by: Mapped[User] = relationship(foreign_keys=[requested_by_id])
    decided_by: Mapped[User | None] = relationship(foreign_keys=[decided_by_id])


class UsageEntry(Base):
    """One usage record (see :mod:`kumo.grants.metering`): ``gpu_seconds`` of ``flavor`` in ``tier``
    over ``[start, end)`` — also kept as epoch seconds ``t0``, ``t1`` for clipping in SQL — and its
    ``charge`` to ``grant_id`` (NULL: unfunded). The key is ``(job_id, attempt, t0)``.

    No column has a foreign key: the ledger outlives the jobs it meters, and checking projects,
    users and grants row by row made a bulk load four times slower (decision record 0010);
    ``GrantRepository.record_usage`` resolves them once per batch instead."""

    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_records_grant_id_t0", "grant_id", "t0"),
        Index("ix_usage_records_project_id_t0", "project_id", "t0"),
    )

    job_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    t0: Mapped[float] = mapped_column(Float, primary_key=True)
    t1: Mapped[float] = mapped_column(Float)
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    end: Mapped[datetime] = mapped_column(UTCDateTime())
    project_id: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[int] = mapped_column(Integer)
    grant_id: Mapped[int | None] = mapped_column(Integer)
    flavor: Mapped[str] = mapped_column(String(64))
    tier: Mapped[str] = mapped_column(String(32))
    gpu_seconds: Mapped[float] = mapped_column(Float)
    charge: Mapped[Decimal] = mapped_column(Micro())
    currency: Mapped[str] = mapped_column(String(16))
    final: Mapped[bool] = mapped_column(Boolean)


class GrantAlert(Base):
    """A notice about a grant (``used_50``, ``used_80``, ``used_100``, ``ends_30d``, ``ends_7d``),
    recorded once per grant and kind; ``delivered`` and ``attempts`` follow its sending."""

    __tablename__ = "grant_alerts"
    __table_args__ = (UniqueConstraint("grant_id", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    grant_id: Mapped[int] = mapped_column(ForeignKey("grants.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered: Mapped[bool] = mapped_column(Boolean)
    attempts: Mapped[int] = mapped_column(Integer)
