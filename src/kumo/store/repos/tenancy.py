"""Tenancy: programmes, projects, cohorts, queues, users and their roles.

Names and weights are checked as the core checks them (so every row converts to a core value);
quotas are stored as ``{flavor: {"nominal", "borrowing_limit", "lending_limit"}}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from kumo.core import model as core
from kumo.core.errors import InvalidValueError
from kumo.store.columns import quota_json
from kumo.store.errors import ConflictError
from kumo.store.models import NAME, Cohort, Membership, Programme, Project, Queue, Role, User
from kumo.store.repos._common import Repository, add_unique, by_name, check_text, resolve


@dataclass(frozen=True, slots=True)
class RoleGrant:
    """One role of a user and its scope: a programme (managers), a project (members), or none."""

    role: Role
    programme: str | None = None
    project: str | None = None


class TenancyRepository(Repository):
    """Create, get and list the tenancy rows; ``get_*`` raise ``NotFoundError``."""

    # ---- programmes and projects ------------------------------------------------------
    def create_programme(self, name: str, weight: float = 1.0) -> Programme:
        checked = core.Programme(name, weight)
        return add_unique(self.session, Programme(name=name, weight=checked.weight), f"programme {name!r}")

    def set_grant_policy(self, programme: Programme | str, policy: dict[str, Any] | None) -> Programme:
        """Store the programme's grant policy (checked by the caller: ``GrantPolicy.from_json``)."""
        row = resolve(self.session, Programme, "programme", programme)
        row.grant_policy = None if policy is None else dict(policy)
        self.session.flush()
        return row

    def get_programme(self, name: str) -> Programme:
        return by_name(self.session, Programme, "programme", name)

    def list_programmes(self) -> list[Programme]:
        return list(self.session.scalars(select(Programme).order_by(Programme.name)))

    def create_project(self, name: str, programme: Programme | str, weight: float = 1.0) -> Project:
        parent = resolve(self.session, Programme, "programme", programme)
        checked = core.Project(name, parent.name, weight)
        row = Project(name=name, programme=parent, weight=checked.weight)
        return add_unique(self.session, row, f"project {name!r}")

    def get_project(self, name: str) -> Project:
        return by_name(self.session, Project, "project", name)

    def list_projects(self, programme: Programme | str | None = None) -> list[Project]:
        stmt = select(Project).order_by(Project.name)
        if programme is not None:
            stmt = stmt.where(Project.programme_id == resolve(self.session, Programme, "programme", programme).id)
        return list(self.session.scalars(stmt))

    # ---- cohorts and queues -------------------------------------------------------------
    def create_cohort(
        self, name: str, parent: Cohort | str | None = None, quota: Mapping[str, Any] | None = None
    ) -> Cohort:
        up = None if parent is None else resolve(self.session, Cohort, "cohort", parent)
        core.Cohort(name, parent=None if up is None else up.name)
        row = Cohort(name=name, parent=up, quota=quota_json(quota))
        return add_unique(self.session, row, f"cohort {name!r}")

    def get_cohort(self, name: str) -> Cohort:
        return by_name(self.session, Cohort, "cohort", name)

    def list_cohorts(self) -> list[Cohort]:
        return list(self.session.scalars(select(Cohort).order_by(Cohort.name)))

    def create_queue(
        self, name: str, cohort: Cohort | str | None = None, quota: Mapping[str, Any] | None = None
    ) -> Queue:
        group = None if cohort is None else resolve(self.session, Cohort, "cohort", cohort)
        core.Queue(name, cohort=None if group is None else group.name)
        row = Queue(name=name, cohort=group, quota=quota_json(quota))
        return add_unique(self.session, row, f"queue {name!r}")

    def get_queue(self, name: str) -> Queue:
        return by_name(self.session, Queue, "queue", name)

    def list_queues(self, cohort: Cohort | str | None = None) -> list[Queue]:
        stmt = select(Queue).order_by(Queue.name)
        if cohort is not None:
            stmt = stmt.where(Queue.cohort_id == resolve(self.session, Cohort, "cohort", cohort).id)
        return list(self.session.scalars(stmt))

    # ---- users and roles ----------------------------------------------------------------
    def create_user(self, name: str) -> User:
        check_text("user name", name, NAME)
        return add_unique(self.session, User(name=name), f"user {name!r}")

    def get_user(self, name: str) -> User:
        return by_name(self.session, User, "user", name)

    def list_users(self) -> list[User]:
        return list(self.session.scalars(select(User).order_by(User.name)))

    def add_membership(
        self,
        user: User | str,
        role: Role | str,
        *,
        programme: Programme | str | None = None,
        project: Project | str | None = None,
    ) -> Membership:
        """Give ``user`` a role: ``programme_manager`` needs ``programme``, ``member`` needs
        ``project``, ``admin`` and ``viewer`` take neither."""
        who = resolve(self.session, User, "user", user)
        role = _role(role)
        _check_scope(role, programme, project)
        prog = None if programme is None else resolve(self.session, Programme, "programme", programme)
        proj = None if project is None else resolve(self.session, Project, "project", project)
        grant = RoleGrant(role, None if prog is None else prog.name, None if proj is None else proj.name)
        if grant in self.roles_of(who):
            raise ConflictError(f"user {who.name!r} already has {_describe(grant)}")
        row = Membership(user=who, role=role, programme=prog, project=proj)
        self.session.add(row)
        self.session.flush()
        return row

    def memberships(self, user: User | str) -> list[Membership]:
        who = resolve(self.session, User, "user", user)
        stmt = select(Membership).where(Membership.user_id == who.id).order_by(Membership.id)
        return list(self.session.scalars(stmt))

    def members_of(self, project: Project | str) -> list[User]:
        """The users holding the member role in ``project``, by name (one query)."""
        proj = resolve(self.session, Project, "project", project)
        stmt = (select(User).join(Membership, Membership.user_id == User.id)
                .where(Membership.role == Role.MEMBER, Membership.project_id == proj.id)
                .distinct().order_by(User.name))
        return list(self.session.scalars(stmt))

    def roles_of(self, user: User | str) -> list[RoleGrant]:
        """The user's roles with their scopes, in the order they were granted."""
        return [
            RoleGrant(
                m.role,
                None if m.programme is None else m.programme.name,
                None if m.project is None else m.project.name,
            )
            for m in self.memberships(user)
        ]


def _role(role: Role | str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise InvalidValueError("role", f"{role!r} is not one of {[r.value for r in Role]}") from None


def _check_scope(role: Role, programme: object, project: object) -> None:
    if role is Role.PROGRAMME_MANAGER:
        ok = programme is not None and project is None
    elif role is Role.MEMBER:
        ok = project is not None and programme is None
    else:
        ok = programme is None and project is None
    if not ok:
        raise InvalidValueError(
            f"role {role.value}",
            "a programme_manager needs a programme, a member a project; admin and viewer are global",
        )


def _describe(grant: RoleGrant) -> str:
    scope = grant.programme or grant.project
    return f"role {grant.role.value}" + (f" in {scope!r}" if scope else "")
