"""The API's request and response bodies, named the FastAPI-template way (``JobCreate``, ``JobPublic``).

Every input model forbids unknown fields and is strict (``"8"`` is not a GPU count, ``true`` is not
a number), and every number and list is bounded, so absurd input is a 422 naming the field
(``body.spec.gpus``) before anything reaches the store; the store then checks the combination of
fields (a job asking for both ``gpus`` and ``gpu_milli``) as the scheduler will read it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from kumo.store.repos.jobs import MAX_BULK

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$"  # kumo.core.resources.check_name
MODEL_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"  # kumo.core.resources.check_model
FLAVOR_PATTERN = r"^(gpu\.[a-z0-9][a-z0-9_-]{0,31}|cpu|mem)$"
JOB_ID_PATTERN = r"^j-[0-9]{6,18}$"
MAX_GPUS_PER_WORKER = 64
MAX_WORKERS = 4096
MAX_SECONDS = 10 * 365 * 86_400.0  # ten years

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
GpuModel = Annotated[str, StringConstraints(pattern=MODEL_PATTERN)]
Flavor = Annotated[str, StringConstraints(pattern=FLAVOR_PATTERN)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=255)]
Text = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f]+$", min_length=1, max_length=128)]
Seconds = Annotated[float, Field(gt=0, le=MAX_SECONDS, allow_inf_nan=False)]
Amount = Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)]
Weight = Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False)]
RoleName = Literal["admin", "programme_manager", "member", "viewer"]


class Input(BaseModel):
    """Base of every request body: unknown fields are refused, types are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --------------------------------------------------------------------------- inventory


class ClusterCreate(Input):
    name: Name
    region: Name


class ClusterPublic(Output):
    name: str
    region: str


class RegionPublic(Output):
    name: str
    clusters: list[str]
    nodes: int
    gpus: int


class NodeCreate(Input):
    name: Name
    cluster: Name
    gpu_model: GpuModel
    gpus: Annotated[int, Field(ge=1, le=MAX_GPUS_PER_WORKER)]
    region: Name | None = None
    zone: Name | Literal[""] = ""
    block: Name | Literal[""] = ""
    nvlink_domain: Name | Literal[""] = ""
    cpu_milli: Annotated[int, Field(ge=0, le=100_000_000)] = 0
    mem_mib: Annotated[int, Field(ge=0, le=1 << 30)] = 0
    labels: Annotated[dict[Label, Label], Field(max_length=64)] = Field(default_factory=dict)


class NodePublic(Output):
    name: str
    cluster: str
    region: str
    zone: str
    block: str
    nvlink_domain: str
    gpu_model: str
    gpus: int
    cpu_milli: int
    mem_mib: int
    state: str
    cordoned: bool
    labels: dict[str, Any]
    updated_at: datetime


# --------------------------------------------------------------------------- tenancy


class ProgrammeCreate(Input):
    name: Name
    weight: Weight = 1.0


class ProgrammePublic(Output):
    name: str
    weight: float


class ProjectCreate(Input):
    name: Name
    programme: Name
    weight: Weight = 1.0


class ProjectPublic(Output):
    name: str
    programme: str
    weight: float


class QuotaIn(Input):
    nominal: Amount = 0.0
    borrowing_limit: Amount | None = None
    lending_limit: Amount | None = None


Quotas = Annotated[dict[Flavor, QuotaIn], Field(max_length=64)]


class CohortCreate(Input):
    name: Name
    parent: Name | None = None
    quota: Quotas = Field(default_factory=dict)


class CohortPublic(Output):
    name: str
    parent: str | None
    quota: dict[str, Any]


class QueueCreate(Input):
    name: Name
    cohort: Name | None = None
    quota: Quotas = Field(default_factory=dict)


class QueuePublic(Output):
    name: str
    cohort: str | None
    quota: dict[str, Any]


class GrantIn(Input):
    role: RoleName
    programme: Name | None = None
    project: Name | None = None


class GrantPublic(Output):
    role: str
    programme: str | None = None
    project: str | None = None


class UserCreate(Input):
    name: Name
    roles: Annotated[list[GrantIn], Field(max_length=100)] = Field(default_factory=list)


class UserPublic(Output):
    name: str
    roles: list[GrantPublic]


class MemberCreate(Input):
    user: Name


class MemberPublic(Output):
    user: str
    project: str


class MembersPublic(Output):
    project: str
    items: list[MemberPublic]


# --------------------------------------------------------------------------- tokens


class TokenCreate(Input):
    name: Text
    user: Name | None = None


class TokenPublic(Output):
    id: int
    user: str
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class TokenCreated(TokenPublic):
    token: str = Field(description="the token itself; shown this once, kumo keeps only its SHA-256")


class TokensPublic(Output):
    items: list[TokenPublic]


# --------------------------------------------------------------------------- jobs


class JobSpec(Input):
    """What a job asks for and how to run it (``kumo.store.jobspec``), per worker."""

    workers: Annotated[int, Field(ge=1, le=MAX_WORKERS)] = 1
    gpus: Annotated[int, Field(ge=0, le=MAX_GPUS_PER_WORKER)] = 0
    gpu_milli: Annotated[int, Field(ge=0, le=999)] = 0
    cpu_milli: Annotated[int, Field(ge=0, le=100_000_000)] = 0
    mem_mib: Annotated[int, Field(ge=0, le=1 << 30)] = 0
    priority: Annotated[int, Field(ge=-1_000_000, le=1_000_000)] = 0
    preemptible: bool = True
    checkpoint_interval_s: Seconds | None = None
    walltime_estimate_s: Seconds | None = None
    walltime_limit_s: Seconds | None = None
    regions: Annotated[list[Name], Field(max_length=64)] = Field(default_factory=list)
    gpu_models: Annotated[list[GpuModel], Field(max_length=64)] = Field(default_factory=list)
    speeds: Annotated[dict[GpuModel, Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False)]],
                      Field(max_length=64)] = Field(default_factory=dict)
    topology: Literal["node", "nvlink", "block", "zone"] | None = None
    command: Annotated[list[Annotated[str, StringConstraints(max_length=65_536)]],
                       Field(min_length=1, max_length=4096)] | None = None
    env: Annotated[dict[Annotated[str, StringConstraints(min_length=1, max_length=1024)],
                        Annotated[str, StringConstraints(max_length=65_536)]], Field(max_length=1024)] | None = None
    restart: Literal["on-node-loss", "never"] | None = Field(
        None, description="when a node it runs on is lost: wait to run again (default) or fail")
    grant: Annotated[int, Field(ge=1, le=2**31 - 1, description="the id of the grant to charge")] | None = None

    def stored(self) -> dict[str, Any]:
        """The fields the caller gave (a null meaning "not given"), as the store takes them."""
        return self.model_dump(exclude_unset=True, exclude_none=True)


class JobCreate(Input):
    project: Name
    queue: Name
    spec: JobSpec
    array: Annotated[int, Field(ge=1, le=MAX_BULK, description="submit this many copies at once")] | None = None


class JobBatchCreate(Input):
    project: Name
    queue: Name
    specs: Annotated[list[JobSpec], Field(min_length=1, max_length=MAX_BULK)]


class JobsSubmitted(Output):
    count: int
    ids: list[str]


class JobPublic(Output):
    id: str
    project: str
    programme: str
    queue: str
    user: str
    state: str
    reason: str
    spec: dict[str, Any]
    submit_time: datetime
    started_at: datetime | None
    ended_at: datetime | None
    attempts: int
    attained_gpu_s: float
    exit_code: int | None
    cancel_requested: bool


class JobsPublic(Output):
    items: list[JobPublic]
    next_cursor: str | None


class JobEventPublic(Output):
    at: datetime
    kind: str
    message: str
    data: dict[str, Any]


class JobEventsPublic(Output):
    job: str
    items: list[JobEventPublic]


class JobWhy(Output):
    job: str
    state: str
    reason: str


# --------------------------------------------------------------------------- usage and audit


class UsageRow(Output):
    project: str
    gpu_model: str
    gpu_hours: float


class UsagePublic(Output):
    since: datetime | None
    until: datetime
    items: list[UsageRow]


class AuditEntryPublic(Output):
    seq: int
    at: datetime
    actor: str
    action: str
    target: str
    remote_addr: str | None
    data: dict[str, Any]
    hash: str


class AuditPublic(Output):
    items: list[AuditEntryPublic]
    next_after: int | None


class AuditProblemPublic(Output):
    seq: int
    kind: str
    message: str


class AuditVerifyPublic(Output):
    ok: bool
    problems: list[AuditProblemPublic]


class Health(Output):
    status: str
    database: str
    revision: str | None
