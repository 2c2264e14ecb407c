"""Who may do what: roles, their scopes, and one table of actions.

Four roles (``docs/concepts/auth.md``):

- ``admin`` — everything;
- ``programme_manager`` of a programme — everything inside that programme: its projects, their
  members, jobs, logs and usage; reading the shared inventory (nodes, queues);
- ``member`` of a project — submit, see and cancel that project's jobs, read its logs, events and
  usage; read the shared inventory;
- ``viewer`` — read everything, change nothing.

Grants: members ask for grants, renewals and top-ups of their projects (``grants.request``) and
read their grants and usage reports; a programme manager of the programme (or an admin) creates,
revokes and decides (``grants.write``, ``grants.decide``) — never their own request, which the
store refuses; only admins change the rate card.

Every API route names one action of :data:`ACTIONS`; :func:`allowed` answers for a principal and
the programme/project the request touches. The decision is a pure function of its arguments, so
the same table drives the routes, the CLI's error messages and the authorization-matrix test.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Role(enum.StrEnum):
    ADMIN = "admin"
    PROGRAMME_MANAGER = "programme_manager"
    MEMBER = "member"
    VIEWER = "viewer"


@dataclass(frozen=True, slots=True)
class Grant:
    """One role, scoped to a programme (programme manager) or a project (member), or global."""

    role: Role
    programme: str | None = None
    project: str | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller and what it holds."""

    user: str
    grants: tuple[Grant, ...] = ()

    def has(self, role: Role) -> bool:
        return any(g.role is role for g in self.grants)

    def manages(self, programme: str | None) -> bool:
        return programme is not None and any(
            g.role is Role.PROGRAMME_MANAGER and g.programme == programme for g in self.grants)

    def member_of(self, project: str | None) -> bool:
        return project is not None and any(g.role is Role.MEMBER and g.project == project for g in self.grants)


class Scope(enum.Enum):
    """What part of the world an action touches, which decides who may do it."""

    GLOBAL_READ = "read anything shared"  # inventory, queues, programmes
    GLOBAL_WRITE = "change shared things"  # inventory, tenancy, tokens of others, audit
    PROGRAMME_WRITE = "change a programme's projects and members"
    PROJECT_READ = "read a project's jobs, logs, events, usage"
    PROJECT_WRITE = "submit or cancel a project's jobs"
    SELF = "one's own tokens"


ACTIONS: dict[str, Scope] = {
    "regions.read": Scope.GLOBAL_READ,
    "clusters.read": Scope.GLOBAL_READ,
    "clusters.write": Scope.GLOBAL_WRITE,
    "nodes.read": Scope.GLOBAL_READ,
    "nodes.write": Scope.GLOBAL_WRITE,  # register, cordon, drain
    "programmes.read": Scope.GLOBAL_READ,
    "programmes.write": Scope.GLOBAL_WRITE,
    "projects.read": Scope.GLOBAL_READ,
    "projects.write": Scope.PROGRAMME_WRITE,
    "queues.read": Scope.GLOBAL_READ,
    "queues.write": Scope.GLOBAL_WRITE,
    "members.read": Scope.PROJECT_READ,
    "members.write": Scope.PROGRAMME_WRITE,
    "users.write": Scope.GLOBAL_WRITE,
    "tokens.own": Scope.SELF,
    "tokens.write": Scope.GLOBAL_WRITE,  # tokens of other users
    "jobs.submit": Scope.PROJECT_WRITE,
    "jobs.read": Scope.PROJECT_READ,  # get, list, logs, events, why
    "jobs.cancel": Scope.PROJECT_WRITE,
    "usage.read": Scope.PROJECT_READ,
    "audit.read": Scope.GLOBAL_WRITE,
    "ratecard.read": Scope.GLOBAL_READ,
    "ratecard.write": Scope.GLOBAL_WRITE,  # add a version of the rate card
    "grants.read": Scope.PROJECT_READ,  # a project's grants, their requests, burn-down and forecast
    "grants.write": Scope.PROGRAMME_WRITE,  # create a grant directly, revoke one
    "grants.request": Scope.PROJECT_WRITE,  # ask for a new grant, a renewal or a top-up
    "grants.decide": Scope.PROGRAMME_WRITE,  # approve or deny a request (never one's own)
    "reports.read": Scope.PROJECT_READ,  # usage reports (CSV, Parquet, plots) of the visible projects
}


def allowed(who: Principal, action: str, programme: str | None = None, project: str | None = None) -> bool:
    """Whether ``who`` may perform ``action`` on something of ``programme`` / ``project``."""
    scope = ACTIONS[action]  # an unknown action is a programming error: KeyError
    if who.has(Role.ADMIN):
        return True
    if scope is Scope.SELF:
        return True
    if scope is Scope.GLOBAL_READ:
        return bool(who.grants)
    if scope is Scope.GLOBAL_WRITE:
        return False
    if scope is Scope.PROGRAMME_WRITE:
        return who.manages(programme)
    if scope is Scope.PROJECT_READ:
        return who.has(Role.VIEWER) or who.manages(programme) or who.member_of(project)
    return who.manages(programme) or who.member_of(project)  # PROJECT_WRITE


def visible_projects(who: Principal, projects: dict[str, str]) -> set[str] | None:
    """The projects (name -> programme) whose jobs ``who`` may list; ``None``: all of them."""
    if who.has(Role.ADMIN) or who.has(Role.VIEWER):
        return None
    return {p for p, g in projects.items() if who.member_of(p) or who.manages(g)}


def denial(who: Principal, action: str, programme: str | None = None, project: str | None = None) -> str:
    """A sentence for a 403 that says what was needed."""
    scope = ACTIONS[action]
    needs = {
        Scope.GLOBAL_READ: "any role",
        Scope.GLOBAL_WRITE: "the admin role",
        Scope.PROGRAMME_WRITE: f"admin, or programme manager of {programme!r}",
        Scope.PROJECT_READ: f"admin, viewer, programme manager of {programme!r} or member of {project!r}",
        Scope.PROJECT_WRITE: f"admin, programme manager of {programme!r} or member of {project!r}",
        Scope.SELF: "an account",
    }[scope]
    return f"user {who.user!r} may not {action.replace('.', ' ')} ({scope.value}): it needs {needs}"
