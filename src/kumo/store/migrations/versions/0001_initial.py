"""The initial schema: nodes, tenancy, tokens, jobs, attempts, events, the audit log and leases.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Written to match ``kumo/store/models.py`` exactly (``tests/store/test_migrations.py`` compares
them on SQLite and PostgreSQL). Seeds the ``counters`` rows for job ids and the audit log.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = 128


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.Integer(), nullable=False)


def _name() -> sa.Column[str]:
    return sa.Column("name", sa.String(NAME), nullable=False)


def upgrade() -> None:
    _nodes()
    _tenancy()
    _tokens()
    _jobs()
    _audit_and_leases()


def _nodes() -> None:
    op.create_table(
        "clusters",
        _id(),
        _name(),
        sa.Column("region", sa.String(NAME), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_clusters"),
        sa.UniqueConstraint("name", name="uq_clusters_name"),
    )
    op.create_table(
        "nodes",
        _id(),
        _name(),
        sa.Column("cluster_id", sa.Integer(), nullable=False),
        sa.Column("region", sa.String(NAME), nullable=False),
        sa.Column("zone", sa.String(NAME), nullable=False),
        sa.Column("block", sa.String(NAME), nullable=False),
        sa.Column("nvlink_domain", sa.String(NAME), nullable=False),
        sa.Column("gpu_model", sa.String(64), nullable=False),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("cpu_milli", sa.BigInteger(), nullable=False),
        sa.Column("mem_mib", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("cordoned", sa.Boolean(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.ForeignKeyConstraint(["cluster_id"], ["clusters.id"], name="fk_nodes_cluster_id_clusters"),
        sa.PrimaryKeyConstraint("id", name="pk_nodes"),
        sa.UniqueConstraint("name", name="uq_nodes_name"),
    )
    op.create_index("ix_nodes_cluster_id", "nodes", ["cluster_id"])


def _tenancy() -> None:
    op.create_table(
        "programmes",
        _id(),
        _name(),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_programmes"),
        sa.UniqueConstraint("name", name="uq_programmes_name"),
    )
    op.create_table(
        "projects",
        _id(),
        _name(),
        sa.Column("programme_id", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["programme_id"], ["programmes.id"], name="fk_projects_programme_id_programmes"),
        sa.PrimaryKeyConstraint("id", name="pk_projects"),
        sa.UniqueConstraint("name", name="uq_projects_name"),
    )
    op.create_index("ix_projects_programme_id", "projects", ["programme_id"])
    op.create_table(
        "cohorts",
        _id(),
        _name(),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("quota", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["parent_id"], ["cohorts.id"], name="fk_cohorts_parent_id_cohorts"),
        sa.PrimaryKeyConstraint("id", name="pk_cohorts"),
        sa.UniqueConstraint("name", name="uq_cohorts_name"),
    )
    op.create_index("ix_cohorts_parent_id", "cohorts", ["parent_id"])
    op.create_table(
        "queues",
        _id(),
        _name(),
        sa.Column("cohort_id", sa.Integer(), nullable=True),
        sa.Column("quota", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["cohort_id"], ["cohorts.id"], name="fk_queues_cohort_id_cohorts"),
        sa.PrimaryKeyConstraint("id", name="pk_queues"),
        sa.UniqueConstraint("name", name="uq_queues_name"),
    )
    op.create_index("ix_queues_cohort_id", "queues", ["cohort_id"])
    op.create_table(
        "users",
        _id(),
        _name(),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("name", name="uq_users_name"),
    )
    _memberships()


def _memberships() -> None:
    op.create_table(
        "memberships",
        _id(),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("programme_id", sa.Integer(), nullable=True),
        sa.Column("project_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "(role IN ('admin', 'viewer') AND programme_id IS NULL AND project_id IS NULL)"
            " OR (role = 'programme_manager' AND programme_id IS NOT NULL AND project_id IS NULL)"
            " OR (role = 'member' AND project_id IS NOT NULL AND programme_id IS NULL)",
            name="ck_memberships_scope",
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_memberships_user_id_users", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["programme_id"], ["programmes.id"], name="fk_memberships_programme_id_programmes"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name="fk_memberships_project_id_projects"),
        sa.PrimaryKeyConstraint("id", name="pk_memberships"),
    )
    op.create_index("ix_memberships_user_id", "memberships", ["user_id"])
    op.create_index("ix_memberships_programme_id", "memberships", ["programme_id"])
    op.create_index("ix_memberships_project_id", "memberships", ["project_id"])


def _tokens() -> None:
    op.create_table(
        "api_tokens",
        _id(),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(NAME), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("revoked_at", _utc(), nullable=True),
        sa.Column("last_used_at", _utc(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_api_tokens_user_id_users", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    op.create_index("ix_api_tokens_user_id", "api_tokens", ["user_id"])


def _jobs() -> None:
    counters = op.create_table(
        "counters",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_counters"),
    )
    op.bulk_insert(counters, [{"name": "jobs", "value": 0}, {"name": "audit_log", "value": 0}])
    _jobs_table()
    op.create_table(
        "attempts",
        _id(),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("placement", sa.JSON(), nullable=False),
        sa.Column("fencing_token", sa.BigInteger(), nullable=False),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("ended_at", _utc(), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_attempts_job_id_jobs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_attempts"),
        sa.UniqueConstraint("job_id", "number", name="uq_attempts_job_id_number"),
    )
    op.create_table(
        "job_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_job_events_job_id_jobs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_job_events"),
    )
    op.create_index("ix_job_events_job_id_id", "job_events", ["job_id", "id"])


def _jobs_table() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("queue_id", sa.Integer(), nullable=False),
        sa.Column("submitted_by_id", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("submit_time", _utc(), nullable=False),
        sa.Column("started_at", _utc(), nullable=True),
        sa.Column("ended_at", _utc(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("attained_gpu_s", sa.Float(), nullable=False),
        sa.Column("work_done_s", sa.Float(), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name="fk_jobs_project_id_projects"),
        sa.ForeignKeyConstraint(["queue_id"], ["queues.id"], name="fk_jobs_queue_id_queues"),
        sa.ForeignKeyConstraint(["submitted_by_id"], ["users.id"], name="fk_jobs_submitted_by_id_users"),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.UniqueConstraint("seq", name="uq_jobs_seq"),
    )
    op.create_index("ix_jobs_state_seq", "jobs", ["state", "seq"])
    op.create_index("ix_jobs_project_id_seq", "jobs", ["project_id", "seq"])
    op.create_index("ix_jobs_queue_id_seq", "jobs", ["queue_id", "seq"])
    op.create_index("ix_jobs_submitted_by_id_seq", "jobs", ["submitted_by_id", "seq"])


def _audit_and_leases() -> None:
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(128), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("remote_addr", sa.String(64), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_log"),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(NAME), nullable=False),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_leases"),
    )


def downgrade() -> None:
    for table in (
        "leases",
        "audit_log",
        "job_events",
        "attempts",
        "jobs",
        "counters",
        "api_tokens",
        "memberships",
        "users",
        "queues",
        "cohorts",
        "projects",
        "programmes",
        "nodes",
        "clusters",
    ):
        op.drop_table(table)
