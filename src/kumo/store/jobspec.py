"""A job's spec: the submitted request, stored as JSON, checked by building a core :class:`Job`.

The spec holds what a person asks for (``workers``, ``gpus`` or ``gpu_milli``, ``cpu_milli``,
``mem_mib``, ``priority``, ``preemptible``, ``checkpoint_interval_s``, ``walltime_estimate_s``,
``walltime_limit_s``, ``regions``, ``gpu_models``, ``speeds``, ``topology``) and how to run it
(``command``: a list of strings; ``env``: a mapping of strings; ``restart``: what happens when a
node it runs on is lost, :data:`RESTART_POLICIES`, default :data:`DEFAULT_RESTART`) and what pays
for it (``grant``: the id of one of its project's grants to charge; default: the project's grant
that ends first, see ``kumo.grants.metering``). The store
checks every spec the way the scheduler will read it, so a stored job always converts back to a
core job.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from kumo.core.errors import InvalidValueError
from kumo.core.model import Job as CoreJob

CORE_FIELDS: tuple[str, ...] = (
    "workers",
    "gpus",
    "gpu_milli",
    "cpu_milli",
    "mem_mib",
    "priority",
    "preemptible",
    "checkpoint_interval_s",
    "walltime_estimate_s",
    "walltime_limit_s",
    "regions",
    "gpu_models",
    "speeds",
    "topology",
)
RUN_FIELDS: tuple[str, ...] = ("command", "env", "restart", "grant")
# What happens to a running job when a node it runs on is lost (an executor reports the loss):
# "on-node-loss" -- its attempt ends ``lost`` and the job waits to run again (the default);
# "never" -- its attempt ends ``failed`` and so does the job.
RESTART_POLICIES: tuple[str, ...] = ("on-node-loss", "never")
DEFAULT_RESTART = "on-node-loss"
SPEC_FIELDS: frozenset[str] = frozenset(CORE_FIELDS + RUN_FIELDS)


def core_job(
    job_id: str,
    queue: str,
    project: str,
    spec: Mapping[str, Any],
    *,
    submit_time: float = 0.0,
    attained_gpu_s: float = 0.0,
    work_done_s: float = 0.0,
) -> CoreJob:
    """The core job a spec describes (raises ``InvalidValueError`` when the spec is not valid)."""
    fields = {name: spec[name] for name in CORE_FIELDS if name in spec}
    for name in ("regions", "gpu_models"):
        if isinstance(fields.get(name), list):
            fields[name] = tuple(fields[name])
    return CoreJob(
        id=job_id,
        queue=queue,
        project=project,
        submit_time=submit_time,
        attained_gpu_s=attained_gpu_s,
        work_done_s=work_done_s,
        **fields,
    )


def normalize_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-ready copy of ``spec`` holding only the fields it gave, each checked and normalised."""
    if not isinstance(spec, Mapping):
        raise InvalidValueError("job spec", f"must be a mapping of fields, got {type(spec).__name__}")
    unknown = sorted(set(spec) - SPEC_FIELDS)
    if unknown:
        raise InvalidValueError("job spec", f"unknown field(s) {unknown}; known: {sorted(SPEC_FIELDS)}")
    job = core_job("spec", "queue", "project", spec)
    out: dict[str, Any] = {}
    for name in CORE_FIELDS:
        if name in spec:
            out[name] = _json_value(name, getattr(job, name))
    if "command" in spec:
        out["command"] = _command(spec["command"])
    if "env" in spec:
        out["env"] = _env(spec["env"])
    if "restart" in spec:
        out["restart"] = _restart(spec["restart"])
    if "grant" in spec:
        out["grant"] = _grant(spec["grant"])
    return out


def restart_policy(spec: Mapping[str, Any]) -> str:
    """The spec's restart policy (one of :data:`RESTART_POLICIES`; :data:`DEFAULT_RESTART` if not given)."""
    policy = spec.get("restart")
    return policy if policy in RESTART_POLICIES else DEFAULT_RESTART


def normalize_specs(specs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """:func:`normalize_spec` of each spec. Identical specs (a bulk submission's usual case) are
    checked once and share one normalised dict, which callers must treat as read-only."""
    seen: dict[str, dict[str, Any]] = {}
    out = []
    for spec in specs:
        key = _key(spec)
        if key is None:
            out.append(normalize_spec(spec))
            continue
        checked = seen.get(key)
        if checked is None:
            checked = seen[key] = normalize_spec(spec)
        out.append(checked)
    return out


def copy_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a normalised spec sharing nothing mutable with it (its values nest one level)."""
    return {k: list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v for k, v in spec.items()}


def _key(spec: object) -> str | None:
    """A text that differs whenever two specs could normalise differently (1, 1.0 and True differ)."""
    try:
        return json.dumps(spec, sort_keys=True, default=_opaque)
    except (TypeError, ValueError):
        return None


def _opaque(value: object) -> str:
    return f"<{type(value).__module__}.{type(value).__qualname__}:{value!r}>"


def _json_value(name: str, value: Any) -> Any:
    if name in ("regions", "gpu_models"):
        return list(value)
    if name == "speeds":
        return dict(value)
    if name == "topology":
        return None if value is None else value.value
    return value


def _command(command: object) -> list[str]:
    if isinstance(command, str) or not isinstance(command, list | tuple) or not command:
        raise InvalidValueError("job spec", f"command must be a non-empty list of strings, got {command!r}")
    if not all(isinstance(part, str) for part in command):
        raise InvalidValueError("job spec", f"command must hold only strings, got {command!r}")
    return list(command)


def _env(env: object) -> dict[str, str]:
    if not isinstance(env, Mapping):
        raise InvalidValueError("job spec", f"env must be a mapping of strings, got {env!r}")
    bad = [k for k, v in env.items() if not isinstance(k, str) or not k or not isinstance(v, str)]
    if bad:
        raise InvalidValueError("job spec", f"env names and values must be strings; bad: {bad!r}")
    return dict(env)


def _grant(grant: object) -> int:
    if isinstance(grant, bool) or not isinstance(grant, int) or grant < 1:
        raise InvalidValueError("job spec", f"grant must be a grant id (an integer >= 1), got {grant!r}")
    return grant


def _restart(policy: object) -> str:
    if policy not in RESTART_POLICIES:
        raise InvalidValueError("job spec", f"restart must be one of {list(RESTART_POLICIES)}, got {policy!r}")
    return str(policy)
