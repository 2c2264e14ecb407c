"""A programme's grant policy (what happens to a project without a grant to charge), and an index
on ``attempts.ended_at`` for metering (``GrantRepository.attempt_uses`` reads the attempts that
ended since its last pass).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

``programmes.grant_policy`` holds ``kumo.grants.standing.GrantPolicy`` as JSON (NULL: the defaults —
no grant required, new jobs of a spent project held, running jobs never stopped).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("programmes") as batch:
        batch.add_column(sa.Column("grant_policy", sa.JSON(), nullable=True))
    op.create_index("ix_attempts_ended_at", "attempts", ["ended_at"])


def downgrade() -> None:
    op.drop_index("ix_attempts_ended_at", table_name="attempts")
    with op.batch_alter_table("programmes") as batch:
        batch.drop_column("grant_policy")
