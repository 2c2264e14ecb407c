"""Migrations: an empty database goes to head, back to base and up again, and head matches models.py."""

from __future__ import annotations

import io

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select

from kumo.store import Base, Store, alembic_config
from kumo.store.models import Counter

TABLES = {
    "api_tokens", "attempts", "audit_log", "clusters", "cohorts", "counters", "job_events", "jobs", "leases",
    "memberships", "nodes", "programmes", "projects", "queues", "users",
    "rate_card_versions", "rate_card_prices", "grants", "grant_requests", "usage_records", "grant_alerts",
}  # fmt: skip
HEAD = "0003"


def tables(store: Store) -> set[str]:
    return set(inspect(store.engine).get_table_names()) - {"alembic_version"}


def test_revisions_form_one_line_to_the_head() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_heads() == [HEAD]
    assert [rev.revision for rev in script.walk_revisions()] == ["0003", "0002", "0001"]


def test_the_grant_policy_revision_goes_down_and_up_on_its_own(store: Store) -> None:
    store.downgrade("0002")
    assert "grant_policy" not in {c["name"] for c in inspect(store.engine).get_columns("programmes")}
    store.upgrade()
    assert "grant_policy" in {c["name"] for c in inspect(store.engine).get_columns("programmes")}


def test_upgrade_an_empty_database_to_head(empty_store: Store) -> None:
    assert empty_store.revision() is None
    assert tables(empty_store) == set()
    empty_store.upgrade()
    assert empty_store.revision() == HEAD
    assert tables(empty_store) == TABLES
    with empty_store.session() as s:
        counters = {name: value for name, value in s.execute(select(Counter.name, Counter.value))}
        assert counters == {"jobs": 0, "audit_log": 0}


def test_head_matches_the_models_exactly(store: Store) -> None:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_jobs_indexes(store: Store) -> None:
    indexes = {ix["name"]: ix["column_names"] for ix in inspect(store.engine).get_indexes("jobs")}
    assert indexes == {
        "ix_jobs_state_seq": ["state", "seq"],
        "ix_jobs_project_id_seq": ["project_id", "seq"],
        "ix_jobs_queue_id_seq": ["queue_id", "seq"],
        "ix_jobs_submitted_by_id_seq": ["submitted_by_id", "seq"],
    } | ({"uq_jobs_seq": ["seq"]} if store.dialect == "postgresql" else {})


def test_alembic_downgrade_to_base_and_up_again(store: Store) -> None:
    with store.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    assert store.revision() is None
    assert tables(store) == set()
    with store.engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")
    assert store.revision() == HEAD
    assert tables(store) == TABLES


def test_store_downgrade_and_upgrade(store: Store) -> None:
    store.downgrade("base")
    assert tables(store) == set()
    store.upgrade()
    assert store.revision() == HEAD
    store.upgrade()  # already at head: nothing to do
    assert store.revision() == HEAD


def test_alembic_without_a_connection_opens_its_own(empty_store: Store) -> None:
    """How the ``alembic`` command runs it: ``sqlalchemy.url`` names the database."""
    config = alembic_config()
    config.set_main_option("sqlalchemy.url", empty_store.url.render_as_string(hide_password=False))
    command.upgrade(config, "head")
    assert empty_store.revision() == HEAD
    assert tables(empty_store) == TABLES


@pytest.mark.parametrize(
    ("url", "dialect_sql"),
    [("sqlite:///unused.db", "CREATE TABLE jobs ("), ("postgresql+psycopg://u@h/db", "BIGSERIAL")],
)
def test_offline_mode_prints_the_sql(url: str, dialect_sql: str) -> None:
    """``alembic upgrade head --sql``: the DDL for a database administrator, no database needed."""
    out = io.StringIO()
    config = alembic_config()
    config.output_buffer = out
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "head", sql=True)
    ddl = out.getvalue()
    assert "CREATE TABLE audit_log (" in ddl
    assert dialect_sql in ddl
    assert "INSERT INTO counters (name, value) VALUES ('jobs', 0)" in ddl
