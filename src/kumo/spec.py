"""Load a cluster and a workload from YAML into a :class:`kumo.core.Snapshot`.

``load_spec(path)`` returns a :class:`Spec`. Any problem raises one :class:`SpecError` naming the
file, the path inside it (``jobs[3].gpus``) and what was expected; mappings reject unknown fields.
Schema (``?``: optional; durations are seconds or ``"90s"``, ``"30m"``, ``"2h"``, ``"1h30m"``)::

    node_groups:   # count nodes named {name_prefix}{i:02d}, in blocks b{i // block_size}
      - {name_prefix: e-h200-, region: japan-east, zone?: japan-east-a, block_size?: 4,
         gpu_model: h200, gpus_per_node: 8, count: 8, cpu_cores?: 112, mem_gib?: 2048,
         nvlink_domain_size?: 1}          # zone: the region; block: the zone; NVLink: the node
    programmes: [{name: geniac, weight?: 3}]                      # weights default to 1
    projects: [{name: sakura, programme: geniac, weight?: 1}]
    cohorts: [{name: national, parent?: null, quota?: {...}}]
    queues:
      - name: geniac
        cohort?: national
        quota:     # flavor (gpu.<model>; cpu in cores; mem in MiB): nominal, or a mapping
          gpu.h200: 48
          gpu.h100: {nominal: 8, borrowing_limit?: 8, lending_limit?: 4}
    jobs:
      - {id: sakura-pretrain, queue: geniac, project: sakura,
         workers?: 4,                     # gang size (1)
         gpus?: 8, gpu_fraction?: 1/7,    # whole GPUs per worker (1), or a slice: "a/b" or 0.5
         cpu_cores?: 16, mem_gib?: 256,   # per worker
         priority?: 0, preemptible?: true,
         walltime_estimate?: 12h, walltime_limit?: 24h, checkpoint_interval?: 1h,
         regions?: [japan-east], gpu_models?: [h200],   # allowed, preferred first
         speeds?: {h200: 1.6, h100: 1.0}, topology?: block,  # node | nvlink | block | zone
         submit_time?: 0}
    running?:      # jobs already running: a job plus start_time and one node entry per worker
      - {id: ..., queue: ..., project: ..., start_time: -3600,
         nodes: [{node: e-h200-07, gpus: [0, 1]}]}

``Spec.now``, the latest submit or start time in the file, is a sensible moment to schedule at.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import pydantic
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from kumo.core import (
    GPU_MILLI,
    Allocation,
    Cohort,
    Job,
    Node,
    Placement,
    Programme,
    Project,
    Queue,
    Quota,
    Snapshot,
    Topology,
    ValidationError,
    WorkerPlacement,
)

T = TypeVar("T")


class SpecError(ValidationError):
    """A spec file that cannot be loaded: ``'<file>: <path>: <problem>'``."""

    def __init__(self, file: str, path: str, problem: str) -> None:
        self.file = file
        self.path = path
        super().__init__(f"{file}: {path}", problem)


# --------------------------------------------------------------------------- value parsers

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_UNIT_S = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION_HELP = "expected a duration such as 90, '30m', '2h' or '1h30m', got "


def _duration(value: object) -> object:
    if isinstance(value, str):
        text = value.replace(" ", "")
        parts = _DURATION_RE.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(_DURATION_HELP + repr(value))
        return sum(float(n) * _UNIT_S[u] for n, u in parts)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(_DURATION_HELP + repr(value))
    return value


def _fraction(value: object) -> object:
    """A GPU slice as milli-GPUs: '1/7' -> 142 (rounded down so that 7 fit), 0.5 -> 500."""
    expected = f"expected a fraction of one GPU such as '1/7' or 0.5, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(expected)
    try:
        frac = Fraction(value.replace(" ", "")) if isinstance(value, str) else Fraction(value)
    except (ValueError, ZeroDivisionError):
        raise ValueError(expected) from None
    if not 0 < frac < 1:
        raise ValueError(f"expected a fraction between 0 and 1 (gpus: whole GPUs), got {value!r}")
    milli = int(frac * GPU_MILLI)
    if milli < 1:
        raise ValueError(f"expected a slice of at least 1/{GPU_MILLI} GPU, got {value!r}")
    return milli


Name = Annotated[str, Field(min_length=1)]
Count = Annotated[int, Field(ge=1)]
Amount = Annotated[float, Field(ge=0)]
Weight = Annotated[float, Field(gt=0)]
Seconds = Annotated[float, BeforeValidator(_duration), Field(gt=0)]
SliceMilli = Annotated[int, BeforeValidator(_fraction)]


# --------------------------------------------------------------------------- schema models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class NodeGroupSpec(_Model):
    name_prefix: Name
    region: Name
    zone: Name | None = None
    block_size: Count | None = None
    gpu_model: Name
    gpus_per_node: Count
    count: Count
    cpu_cores: Amount = 0
    mem_gib: Amount = 0
    nvlink_domain_size: Count | None = None


class ProgrammeSpec(_Model):
    name: Name
    weight: Weight = 1.0


class ProjectSpec(_Model):
    name: Name
    programme: Name
    weight: Weight = 1.0


class QuotaSpec(_Model):
    nominal: Amount
    borrowing_limit: Amount | None = None
    lending_limit: Amount | None = None

    @model_validator(mode="before")
    @classmethod
    def _number_is_nominal(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return {"nominal": value}
        if not isinstance(value, dict):
            expected = "a number or {nominal, borrowing_limit?, lending_limit?}"
            raise ValueError(f"expected {expected}, got {value!r}")
        return value


class CohortSpec(_Model):
    name: Name
    parent: Name | None = None
    quota: dict[str, QuotaSpec] = Field(default_factory=dict)


class QueueSpec(_Model):
    name: Name
    cohort: Name | None = None
    quota: dict[str, QuotaSpec] = Field(default_factory=dict)


class JobSpec(_Model):
    id: Name
    queue: Name
    project: Name
    workers: Count = 1
    gpus: Count | None = None
    gpu_fraction: SliceMilli | None = None
    cpu_cores: Amount = 0
    mem_gib: Amount = 0
    priority: int = 0
    preemptible: bool = True
    walltime_estimate: Seconds | None = None
    walltime_limit: Seconds | None = None
    checkpoint_interval: Seconds | None = None
    regions: list[Name] = Field(default_factory=list)
    gpu_models: list[Name] = Field(default_factory=list)
    speeds: dict[str, Weight] = Field(default_factory=dict)
    topology: Literal["node", "nvlink", "block", "zone"] | None = None
    submit_time: float = 0.0

    @model_validator(mode="after")
    def _one_gpu_kind(self) -> JobSpec:
        if self.gpus is not None and self.gpu_fraction is not None:
            raise ValueError("give either gpus (whole GPUs) or gpu_fraction (a slice), not both")
        return self


class WorkerSpec(_Model):
    node: Name
    gpus: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]


class RunningSpec(JobSpec):
    start_time: float = 0.0
    nodes: Annotated[list[WorkerSpec], Field(min_length=1)]


class ClusterSpec(_Model):
    node_groups: Annotated[list[NodeGroupSpec], Field(min_length=1)]
    programmes: list[ProgrammeSpec] = Field(default_factory=list)
    projects: list[ProjectSpec] = Field(default_factory=list)
    cohorts: list[CohortSpec] = Field(default_factory=list)
    queues: Annotated[list[QueueSpec], Field(min_length=1)]
    jobs: list[JobSpec] = Field(default_factory=list)
    running: list[RunningSpec] = Field(default_factory=list)


# --------------------------------------------------------------------------- pydantic errors


def _unwrap(tp: Any) -> Any:
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, UnionType):
            tp = next(a for a in get_args(tp) if a is not type(None))
        else:
            return tp


def _walk(loc: tuple[int | str, ...]) -> tuple[str, Any]:
    """The printable path of a Pydantic ``loc`` and the type found at its end."""
    tp: Any = ClusterSpec
    path = ""
    for part in loc:
        origin = get_origin(tp)
        if isinstance(part, int):
            path += f"[{part}]"
            tp = _unwrap(get_args(tp)[0]) if origin is list else None
            continue
        path += f".{part}" if path else part
        if origin is dict:
            tp = _unwrap(get_args(tp)[1])
        elif isinstance(tp, type) and issubclass(tp, BaseModel) and part in tp.model_fields:
            tp = _unwrap(tp.model_fields[part].annotation)
        else:
            tp = None
    return path or "(top level)", tp


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _from_pydantic(file: str, err: pydantic.ValidationError) -> SpecError:
    errors = err.errors(include_url=False)
    first = errors[0]
    loc = tuple(first["loc"])
    if first["type"] == "extra_forbidden":
        parent = _walk(loc[:-1])[1]
        is_model = isinstance(parent, type) and issubclass(parent, BaseModel)
        fields = ", ".join(parent.model_fields) if is_model else "none"
        problem = f"unknown field; expected one of: {fields}"
    elif first["type"] == "missing":
        problem = "required field is missing"
    elif first["type"] == "value_error":
        problem = str(first["msg"]).removeprefix("Value error, ")
    else:
        msg = str(first["msg"]).replace("Input should be", "should be")
        problem = f"{msg}, got {_short(first.get('input'))}"
    if len(errors) > 1:
        problem += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return SpecError(file, _walk(loc)[0], problem)


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class Spec:
    """A loaded spec: where it came from, its snapshot and the moment to schedule at."""

    source: str
    snapshot: Snapshot
    now: float


def load_spec(path: str | Path) -> Spec:
    """Read, validate and build the spec in ``path``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(str(path), "(file)", f"cannot be read: {e.strerror or e}") from None
    return load_spec_text(text, str(path))


def load_spec_text(text: str, source: str) -> Spec:
    """Validate and build a spec given as YAML text; ``source`` names it in errors."""
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(YAML)"
        raise SpecError(source, where, f"invalid YAML: {e.problem or e}") from None
    except yaml.YAMLError as e:
        raise SpecError(source, "(YAML)", f"invalid YAML: {e}") from None
    if not isinstance(data, dict):
        expected = "a mapping with node_groups, queues, jobs, ..."
        raise SpecError(source, "(top level)", f"expected {expected}, got {_short(data)}")
    try:
        model = ClusterSpec.model_validate(data)
    except pydantic.ValidationError as e:
        raise _from_pydantic(source, e) from None
    return _Builder(source, model).build()


class _Builder:
    """Turns a validated :class:`ClusterSpec` into core objects, naming paths in every error."""

    def __init__(self, source: str, spec: ClusterSpec) -> None:
        self.source, self.spec = source, spec
        self.paths: dict[str, str] = {}  # a core error's "where" -> our path
        self.names = {k: {x.name for x in getattr(spec, k)}
                      for k in ("programmes", "projects", "cohorts", "queues")}

    def make(self, path: str, where: str, factory: Callable[..., T], *args: Any, **kw: Any) -> T:
        self.paths[where] = path
        try:
            return factory(*args, **kw)
        except ValidationError as e:
            raise SpecError(self.source, path, str(e)) from None

    def ref(self, path: str, kind: str, name: str | None, known: set[str]) -> None:
        if name is not None and name not in known:
            listed = ", ".join(sorted(known)) or "none defined"
            raise SpecError(self.source, path, f"{kind} {name!r} does not exist (known: {listed})")

    def build(self) -> Spec:
        s = self.spec
        nodes = [n for i, g in enumerate(s.node_groups) for n in self.nodes(i, g)]
        jobs = [self.job(f"jobs[{i}]", j) for i, j in enumerate(s.jobs)]
        by_name = {n.name: n for n in nodes}
        running = [self.running(f"running[{i}]", r, by_name) for i, r in enumerate(s.running)]
        programmes, projects = self.tenancy()
        queues, cohorts = self.queues(), self.cohorts()
        try:
            snapshot = Snapshot(nodes, queues, cohorts=cohorts, programmes=programmes,
                                projects=projects, jobs=jobs, running=running)
        except ValidationError as e:
            path = self.paths.get(e.where)
            raise SpecError(self.source, path or "(spec)", e.problem if path else str(e)) from None
        times = [j.submit_time for j in s.jobs] + [r.start_time for r in s.running]
        return Spec(self.source, snapshot, max(times, default=0.0))

    def nodes(self, i: int, g: NodeGroupSpec) -> list[Node]:
        bs, nv = g.block_size, g.nvlink_domain_size
        return [self.make(
            f"node_groups[{i}]", f"node {name!r}", Node, name, g.region, g.gpu_model,
            g.gpus_per_node,
            zone=g.zone or "", block=f"b{k // bs}" if bs else "",
            nvlink_domain=f"{g.name_prefix}nv{k // nv}" if nv else "",
            cpu_milli=round(g.cpu_cores * 1000), mem_mib=round(g.mem_gib * 1024),
        ) for k in range(g.count) for name in [f"{g.name_prefix}{k:02d}"]]

    def tenancy(self) -> tuple[list[Programme], list[Project]]:
        programmes = [self.make(f"programmes[{i}]", f"programme {p.name!r}", Programme, p.name,
                                p.weight) for i, p in enumerate(self.spec.programmes)]
        projects = []
        for i, p in enumerate(self.spec.projects):
            self.ref(f"projects[{i}].programme", "programme", p.programme, self.names["programmes"])
            projects.append(self.make(f"projects[{i}]", f"project {p.name!r}", Project, p.name,
                                      p.programme, p.weight))
        return programmes, projects

    def cohorts(self) -> list[Cohort]:
        out = []
        for i, c in enumerate(self.spec.cohorts):
            path = f"cohorts[{i}]"
            self.ref(f"{path}.parent", "cohort", c.parent, self.names["cohorts"])
            out.append(self.make(path, f"cohort {c.name!r}", Cohort, c.name, c.parent,
                                 self.quotas(path, c.quota)))
        return out

    def queues(self) -> list[Queue]:
        out = []
        for i, q in enumerate(self.spec.queues):
            path = f"queues[{i}]"
            self.ref(f"{path}.cohort", "cohort", q.cohort, self.names["cohorts"])
            out.append(self.make(path, f"queue {q.name!r}", Queue, q.name,
                                 self.quotas(path, q.quota), q.cohort))
        return out

    def quotas(self, path: str, quota: dict[str, QuotaSpec]) -> dict[str, Quota]:
        return {f: self.make(f"{path}.quota.{f}", "quota", Quota, _whole(q.nominal),
                             _whole(q.borrowing_limit), _whole(q.lending_limit))
                for f, q in quota.items()}

    def job(self, path: str, j: JobSpec, where: str = "job") -> Job:
        self.ref(f"{path}.queue", "queue", j.queue, self.names["queues"])
        self.ref(f"{path}.project", "project", j.project, self.names["projects"])
        self.paths[f"job {j.id!r}"] = path
        return self.make(
            path, f"{where} {j.id!r}", Job, j.id, j.queue, j.project, workers=j.workers,
            gpus=j.gpus or (0 if j.gpu_fraction else 1), gpu_milli=j.gpu_fraction or 0,
            cpu_milli=round(j.cpu_cores * 1000), mem_mib=round(j.mem_gib * 1024),
            priority=j.priority, preemptible=j.preemptible,
            checkpoint_interval_s=j.checkpoint_interval,
            walltime_estimate_s=j.walltime_estimate, walltime_limit_s=j.walltime_limit,
            regions=tuple(j.regions), gpu_models=tuple(j.gpu_models), speeds=dict(j.speeds),
            topology=Topology(j.topology) if j.topology else None, submit_time=j.submit_time,
        )

    def running(self, path: str, r: RunningSpec, nodes: dict[str, Node]) -> Allocation:
        job = self.job(path, r, "running job")
        if len(r.nodes) != r.workers:
            raise SpecError(self.source, f"{path}.nodes",
                            f"expected one entry per worker ({r.workers}), got {len(r.nodes)}")
        for k, w in enumerate(r.nodes):
            self.ref(f"{path}.nodes[{k}].node", "node", w.node, set(nodes))
        first = nodes[r.nodes[0].node]
        milli = GPU_MILLI if job.gpus else job.gpu_milli
        workers = tuple(WorkerPlacement(k, w.node, tuple(w.gpus), milli)
                        for k, w in enumerate(r.nodes))
        return Allocation(job, Placement(first.gpu_model, first.region, workers), r.start_time)


def _whole(x: Any) -> Any:
    """``8.0 -> 8`` so that messages show quotas as written."""
    return int(x) if x is not None and x.is_integer() else x
