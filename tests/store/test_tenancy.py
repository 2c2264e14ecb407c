"""Tenancy: programmes, projects, cohorts, queues, users, memberships and roles."""

from __future__ import annotations

import pytest

from kumo.core import model as core
from kumo.core.errors import InvalidValueError
from kumo.store import ConflictError, NotFoundError, Role, RoleGrant, Store, TenancyRepository


def test_programmes_and_projects(store: Store) -> None:
    with store.session() as s:
        repo = TenancyRepository(s)
        geniac = repo.create_programme("geniac", weight=3)
        repo.create_programme("skilling")
        repo.create_project("sakura", geniac, weight=2)
        repo.create_project("course", "skilling")
        repo.create_project("fuji", "geniac")
    with store.session() as s:
        repo = TenancyRepository(s)
        assert [(p.name, p.weight) for p in repo.list_programmes()] == [("geniac", 3.0), ("skilling", 1.0)]
        assert [(p.name, p.programme.name, p.weight) for p in repo.list_projects()] == [
            ("course", "skilling", 1.0),
            ("fuji", "geniac", 1.0),
            ("sakura", "geniac", 2.0),
        ]
        assert [p.name for p in repo.list_projects("geniac")] == ["fuji", "sakura"]
        assert repo.get_project("sakura").to_core() == core.Project("sakura", "geniac", 2.0)
        assert repo.get_programme("geniac").to_core() == core.Programme("geniac", 3.0)


def test_names_are_unique_and_lookups_say_what_is_missing(store: Store) -> None:
    with store.session() as s:
        repo = TenancyRepository(s)
        repo.create_programme("geniac")
        with pytest.raises(ConflictError, match="programme 'geniac' already exists"):
            repo.create_programme("geniac")
        assert [p.name for p in repo.list_programmes()] == ["geniac"]  # the session is still usable
        with pytest.raises(NotFoundError, match="programme 'nope' not found"):
            repo.create_project("p", "nope")
        with pytest.raises(NotFoundError, match="queue 'nope' not found"):
            repo.get_queue("nope")


def test_values_are_checked_as_the_core_checks_them(store: Store) -> None:
    with store.session() as s:
        repo = TenancyRepository(s)
        with pytest.raises(InvalidValueError, match="weight must be a positive number"):
            repo.create_programme("geniac", weight=0)
        with pytest.raises(InvalidValueError, match="name"):
            repo.create_programme("has space")
        with pytest.raises(InvalidValueError, match="quota flavor 'gpu'"):
            repo.create_queue("q", quota={"gpu": 8})
        with pytest.raises(InvalidValueError, match="lending_limit 9 exceeds nominal 8"):
            repo.create_queue("q", quota={"gpu.h200": {"nominal": 8, "lending_limit": 9}})
        with pytest.raises(InvalidValueError, match="user name"):
            repo.create_user(" alice")


def test_cohorts_and_queues_store_quota_as_json(store: Store) -> None:
    with store.session() as s:
        repo = TenancyRepository(s)
        root = repo.create_cohort("national", quota={"gpu.h200": 64})
        repo.create_cohort("universities", parent=root)
        repo.create_queue(
            "tokyo",
            cohort="universities",
            quota={"gpu.h200": {"nominal": 16, "borrowing_limit": 8}, "cpu": core.Quota(128, lending_limit=64)},
        )
        repo.create_queue("free")
    with store.session() as s:
        repo = TenancyRepository(s)
        tokyo = repo.get_queue("tokyo")
        assert tokyo.quota == {
            "cpu": {"nominal": 128, "borrowing_limit": None, "lending_limit": 64},
            "gpu.h200": {"nominal": 16, "borrowing_limit": 8, "lending_limit": None},
        }
        assert tokyo.to_core() == core.Queue(
            "tokyo", {"gpu.h200": core.Quota(16, 8), "cpu": core.Quota(128, None, 64)}, cohort="universities"
        )
        assert repo.get_queue("free").to_core() == core.Queue("free")
        assert repo.get_cohort("universities").to_core() == core.Cohort("universities", parent="national")
        assert repo.get_cohort("national").quota == {
            "gpu.h200": {"nominal": 64, "borrowing_limit": None, "lending_limit": None}
        }
        assert [c.name for c in repo.list_cohorts()] == ["national", "universities"]
        assert [q.name for q in repo.list_queues()] == ["free", "tokyo"]
        assert [q.name for q in repo.list_queues(cohort="universities")] == ["tokyo"]


def test_users_memberships_and_roles(store: Store) -> None:
    with store.session() as s:
        repo = TenancyRepository(s)
        repo.create_programme("geniac")
        repo.create_project("sakura", "geniac")
        alice = repo.create_user("alice@example.org")
        repo.create_user("bob")
        repo.add_membership(alice, Role.PROGRAMME_MANAGER, programme="geniac")
        repo.add_membership("alice@example.org", "member", project="sakura")
        repo.add_membership("bob", Role.VIEWER)
    with store.session() as s:
        repo = TenancyRepository(s)
        assert repo.roles_of("alice@example.org") == [
            RoleGrant(Role.PROGRAMME_MANAGER, programme="geniac"),
            RoleGrant(Role.MEMBER, project="sakura"),
        ]
        assert repo.roles_of("bob") == [RoleGrant(Role.VIEWER)]
        assert [(m.role, m.user.name) for m in repo.memberships("bob")] == [(Role.VIEWER, "bob")]
        assert [u.name for u in repo.list_users()] == ["alice@example.org", "bob"]
        assert repo.get_user("bob").name == "bob"
        assert [u.name for u in repo.members_of("sakura")] == ["alice@example.org"]  # not bob, a viewer


@pytest.mark.parametrize(
    ("role", "scope"),
    [
        ("admin", {"programme": "geniac"}),
        ("viewer", {"project": "sakura"}),
        ("programme_manager", {}),
        ("programme_manager", {"project": "sakura"}),
        ("member", {"programme": "geniac"}),
        ("member", {"programme": "geniac", "project": "sakura"}),
    ],
)
def test_a_role_must_have_its_scope(store: Store, role: str, scope: dict[str, str]) -> None:
    with store.session() as s:
        repo = TenancyRepository(s)
        repo.create_programme("geniac")
        repo.create_project("sakura", "geniac")
        repo.create_user("alice")
        with pytest.raises(InvalidValueError, match="a programme_manager needs a programme, a member a project"):
            repo.add_membership("alice", role, **scope)


def test_unknown_and_duplicate_roles_are_refused(store: Store) -> None:
    with store.session() as s:
        repo = TenancyRepository(s)
        repo.create_user("alice")
        repo.add_membership("alice", "admin")
        with pytest.raises(ConflictError, match="user 'alice' already has role admin"):
            repo.add_membership("alice", Role.ADMIN)
        with pytest.raises(InvalidValueError, match="'owner' is not one of"):
            repo.add_membership("alice", "owner")
        assert repo.roles_of("alice") == [RoleGrant(Role.ADMIN)]
