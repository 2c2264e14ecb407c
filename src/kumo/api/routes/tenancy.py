"""Tenancy: programmes, projects, cohorts, queues, users and project members.

Programmes, cohorts, queues and users are the admin's; a programme manager creates the projects of
its programme and adds members to them. Cohorts and queues share the ``queues.*`` actions.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from sqlalchemy.orm import Session

from kumo.api.authz import Principal
from kumo.api.deps import CurrentPrincipal, NowDep, ReadSessionDep, RemoteAddr, SessionDep, require
from kumo.api.routes._common import audit
from kumo.api.schemas import (
    NAME_PATTERN,
    CohortCreate,
    CohortPublic,
    GrantPublic,
    MemberCreate,
    MemberPublic,
    MembersPublic,
    ProgrammeCreate,
    ProgrammePublic,
    ProjectCreate,
    ProjectPublic,
    QueueCreate,
    QueuePublic,
    UserCreate,
    UserPublic,
)
from kumo.store import Cohort, Project, Queue, Role, TenancyRepository

router = APIRouter(tags=["tenancy"])
ProjectName = Annotated[str, Path(pattern=NAME_PATTERN, description="the project's name")]


def project_public(project: Project) -> ProjectPublic:
    return ProjectPublic(name=project.name, programme=project.programme.name, weight=project.weight)


def cohort_public(cohort: Cohort) -> CohortPublic:
    return CohortPublic(name=cohort.name, parent=None if cohort.parent is None else cohort.parent.name,
                        quota=dict(cohort.quota))


def queue_public(queue: Queue) -> QueuePublic:
    return QueuePublic(name=queue.name, cohort=None if queue.cohort is None else queue.cohort.name,
                       quota=dict(queue.quota))


# --------------------------------------------------------------------------- programmes and projects


@router.get("/programmes")
def list_programmes(who: CurrentPrincipal, session: ReadSessionDep) -> list[ProgrammePublic]:
    require(who, "programmes.read")
    return [ProgrammePublic(name=p.name, weight=p.weight) for p in TenancyRepository(session).list_programmes()]


@router.post("/programmes", status_code=status.HTTP_201_CREATED)
def create_programme(
    body: ProgrammeCreate, who: CurrentPrincipal, session: SessionDep, now: NowDep, addr: RemoteAddr
) -> ProgrammePublic:
    require(who, "programmes.write")
    row = TenancyRepository(session).create_programme(body.name, body.weight)
    audit(session, who, "programmes.create", f"programme/{row.name}", now=now, remote_addr=addr,
          data=body.model_dump())
    return ProgrammePublic(name=row.name, weight=row.weight)


@router.get("/projects")
def list_projects(
    who: CurrentPrincipal, session: ReadSessionDep,
    programme: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
) -> list[ProjectPublic]:  # fmt: skip
    require(who, "projects.read")
    return [project_public(p) for p in TenancyRepository(session).list_projects(programme)]


@router.post("/projects", status_code=status.HTTP_201_CREATED)
def create_project(
    body: ProjectCreate, who: CurrentPrincipal, session: SessionDep, now: NowDep, addr: RemoteAddr
) -> ProjectPublic:
    """A new project of a programme (its programme manager or an admin)."""
    require(who, "projects.write", programme=body.programme)
    row = TenancyRepository(session).create_project(body.name, body.programme, body.weight)
    audit(session, who, "projects.create", f"project/{row.name}", now=now, remote_addr=addr, data=body.model_dump())
    return project_public(row)


# --------------------------------------------------------------------------- cohorts and queues


@router.get("/cohorts")
def list_cohorts(who: CurrentPrincipal, session: ReadSessionDep) -> list[CohortPublic]:
    require(who, "queues.read")
    return [cohort_public(c) for c in TenancyRepository(session).list_cohorts()]


@router.post("/cohorts", status_code=status.HTTP_201_CREATED)
def create_cohort(
    body: CohortCreate, who: CurrentPrincipal, session: SessionDep, now: NowDep, addr: RemoteAddr
) -> CohortPublic:
    require(who, "queues.write")
    quota = {flavor: q.model_dump() for flavor, q in body.quota.items()}
    row = TenancyRepository(session).create_cohort(body.name, body.parent, quota)
    audit(session, who, "cohorts.create", f"cohort/{row.name}", now=now, remote_addr=addr, data=body.model_dump())
    return cohort_public(row)


@router.get("/queues")
def list_queues(who: CurrentPrincipal, session: ReadSessionDep) -> list[QueuePublic]:
    require(who, "queues.read")
    return [queue_public(q) for q in TenancyRepository(session).list_queues()]


@router.post("/queues", status_code=status.HTTP_201_CREATED)
def create_queue(
    body: QueueCreate, who: CurrentPrincipal, session: SessionDep, now: NowDep, addr: RemoteAddr
) -> QueuePublic:
    require(who, "queues.write")
    quota = {flavor: q.model_dump() for flavor, q in body.quota.items()}
    row = TenancyRepository(session).create_queue(body.name, body.cohort, quota)
    audit(session, who, "queues.create", f"queue/{row.name}", now=now, remote_addr=addr, data=body.model_dump())
    return queue_public(row)


# --------------------------------------------------------------------------- users and members


@router.post("/users", status_code=status.HTTP_201_CREATED)
def create_user(
    body: UserCreate, who: CurrentPrincipal, session: SessionDep, now: NowDep, addr: RemoteAddr
) -> UserPublic:
    """A new user with its roles (``programme_manager`` needs a programme, ``member`` a project)."""
    require(who, "users.write")
    repo = TenancyRepository(session)
    user = repo.create_user(body.name)
    for grant in body.roles:
        repo.add_membership(user, grant.role, programme=grant.programme, project=grant.project)
    audit(session, who, "users.create", f"user/{user.name}", now=now, remote_addr=addr, data=body.model_dump())
    roles = [GrantPublic(role=g.role.value, programme=g.programme, project=g.project) for g in repo.roles_of(user)]
    return UserPublic(name=user.name, roles=roles)


def _project_for(session: Session, who: Principal, action: str, name: str) -> Project:
    project = TenancyRepository(session).get_project(name)
    require(who, action, project.programme.name, project.name)
    return project


@router.get("/projects/{name:path}/members")
def list_members(name: ProjectName, who: CurrentPrincipal, session: ReadSessionDep) -> MembersPublic:
    """The users holding the member role in the project."""
    project = _project_for(session, who, "members.read", name)
    members = [MemberPublic(user=u.name, project=project.name) for u in TenancyRepository(session).members_of(project)]
    return MembersPublic(project=project.name, items=members)


@router.post("/projects/{name:path}/members", status_code=status.HTTP_201_CREATED)
def add_member(
    name: ProjectName, body: MemberCreate, who: CurrentPrincipal, session: SessionDep, now: NowDep, addr: RemoteAddr
) -> MemberPublic:
    """Make a user a member of the project (its programme's manager or an admin)."""
    project = _project_for(session, who, "members.write", name)
    TenancyRepository(session).add_membership(body.user, Role.MEMBER, project=project)
    audit(session, who, "members.add", f"project/{project.name}", now=now, remote_addr=addr,
          data={"user": body.user, "role": Role.MEMBER.value})
    return MemberPublic(user=body.user, project=project.name)
