"""Grants and metering: the rate card, grants and their requests, usage records and grant alerts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30

Written to match ``kumo/store/models.py`` exactly (``tests/store/test_migrations.py`` compares
them on SQLite and PostgreSQL). Money and GPU-hours are integer micro-units (``BIGINT``): see
``Micro`` in the models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = 128


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.Integer(), nullable=False)


def _micro(name: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def upgrade() -> None:
    _rate_card()
    _grants()
    _usage()


def _rate_card() -> None:
    op.create_table(
        "rate_card_versions",
        _id(),
        sa.Column("effective_from", _utc(), nullable=False),
        sa.Column("effective_to", _utc(), nullable=True),
        sa.Column("currency", sa.String(16), nullable=False),
        _micro("preemptible_discount"),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.ForeignKeyConstraint(["created_by_id"], ["users.id"], name="fk_rate_card_versions_created_by_id_users"),
        sa.PrimaryKeyConstraint("id", name="pk_rate_card_versions"),
    )
    op.create_table(
        "rate_card_prices",
        _id(),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("flavor", sa.String(64), nullable=False),
        sa.Column("tier", sa.String(32), nullable=False),
        _micro("price"),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["rate_card_versions.id"],
            name="fk_rate_card_prices_version_id_rate_card_versions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_rate_card_prices"),
        sa.UniqueConstraint("version_id", "flavor", "tier", name="uq_rate_card_prices_version_id_flavor_tier"),
    )


def _grants() -> None:
    op.create_table(
        "grants",
        _id(),
        sa.Column("name", sa.String(NAME), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        _micro("amount"),
        sa.Column("currency", sa.String(16), nullable=False),
        sa.Column("flavors", sa.JSON(), nullable=True),
        sa.Column("start", _utc(), nullable=False),
        sa.Column("end", _utc(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("revoked_at", _utc(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint("amount > 0", name="ck_grants_amount_positive"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name="fk_grants_project_id_projects"),
        sa.ForeignKeyConstraint(["created_by_id"], ["users.id"], name="fk_grants_created_by_id_users"),
        sa.PrimaryKeyConstraint("id", name="pk_grants"),
    )
    op.create_index("ix_grants_project_id", "grants", ["project_id"])
    op.create_table(
        "grant_requests",
        _id(),
        sa.Column("grant_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        _micro("amount", nullable=True),
        sa.Column("new_end", _utc(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("requested_by_id", sa.Integer(), nullable=False),
        sa.Column("requested_at", _utc(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("decided_by_id", sa.Integer(), nullable=True),
        sa.Column("decided_at", _utc(), nullable=True),
        sa.Column("decision_comment", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["grant_id"], ["grants.id"], name="fk_grant_requests_grant_id_grants"),
        sa.ForeignKeyConstraint(["requested_by_id"], ["users.id"], name="fk_grant_requests_requested_by_id_users"),
        sa.ForeignKeyConstraint(["decided_by_id"], ["users.id"], name="fk_grant_requests_decided_by_id_users"),
        sa.PrimaryKeyConstraint("id", name="pk_grant_requests"),
    )
    op.create_index("ix_grant_requests_grant_id", "grant_requests", ["grant_id"])


def _usage() -> None:
    op.create_table(
        "usage_records",
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("attempt", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("t0", sa.Float(), nullable=False),
        sa.Column("t1", sa.Float(), nullable=False),
        sa.Column("start", _utc(), nullable=False),
        sa.Column("end", _utc(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("grant_id", sa.Integer(), nullable=True),
        sa.Column("flavor", sa.String(64), nullable=False),
        sa.Column("tier", sa.String(32), nullable=False),
        sa.Column("gpu_seconds", sa.Float(), nullable=False),
        _micro("charge"),
        sa.Column("currency", sa.String(16), nullable=False),
        sa.Column("final", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "attempt", "t0", name="pk_usage_records"),
    )
    op.create_index("ix_usage_records_grant_id_t0", "usage_records", ["grant_id", "t0"])
    op.create_index("ix_usage_records_project_id_t0", "usage_records", ["project_id", "t0"])
    op.create_table(
        "grant_alerts",
        _id(),
        sa.Column("grant_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("sent_at", _utc(), nullable=False),
        sa.Column("delivered", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["grant_id"], ["grants.id"], name="fk_grant_alerts_grant_id_grants", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_grant_alerts"),
        sa.UniqueConstraint("grant_id", "kind", name="uq_grant_alerts_grant_id_kind"),
    )


def downgrade() -> None:
    for table in ("grant_alerts", "usage_records", "grant_requests", "grants", "rate_card_prices",
                  "rate_card_versions"):  # fmt: skip
        op.drop_table(table)
