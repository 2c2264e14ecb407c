"""Bad input is a clear 4xx and writes nothing: rows in jobs and the audit log are counted around each."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from kumo.api.problems import PROBLEM
from kumo.store import AuditEntry, Job, TokenRepository
from tests.store.conftest import T0

from .conftest import Api

JOB = {"project": "sakura", "queue": "h200", "spec": {"gpus": 1}}
RAW = {"content-type": "application/json"}


def job(**spec: Any) -> dict[str, Any]:
    return {**JOB, "spec": spec}


# (id, role, method, path, request kwargs, status, text the detail contains)
CASES: list[tuple[str, str | None, str, str, dict[str, Any], int, str]] = [
    ("malformed JSON", "member-sakura", "POST", "/jobs", {"content": b'{"project": ', "headers": RAW}, 422, "body"),
    ("not an object", "member-sakura", "POST", "/jobs", {"json": [JOB]}, 422, "body"),
    ("no body", "member-sakura", "POST", "/jobs", {}, 422, "body: Field required"),
    ("unknown field", "member-sakura", "POST", "/jobs", {"json": {**JOB, "colour": "red"}}, 422, "body.colour"),
    ("unknown spec field", "member-sakura", "POST", "/jobs", {"json": job(gpus=1, colour="red")}, 422,
     "body.spec.colour"),
    ("negative GPUs", "member-sakura", "POST", "/jobs", {"json": job(gpus=-1)}, 422,
     "body.spec.gpus: Input should be greater than or equal to 0"),
    ("absurd GPUs", "member-sakura", "POST", "/jobs", {"json": job(gpus=10**12)}, 422,
     "body.spec.gpus: Input should be less than or equal to 64"),
    ("GPUs as text", "member-sakura", "POST", "/jobs", {"json": job(gpus="8")}, 422, "body.spec.gpus"),
    ("GPUs as a boolean", "member-sakura", "POST", "/jobs", {"json": job(gpus=True)}, 422, "body.spec.gpus"),
    ("fractional GPUs", "member-sakura", "POST", "/jobs", {"json": job(gpus=1.5)}, 422, "body.spec.gpus"),
    ("no workers", "member-sakura", "POST", "/jobs", {"json": job(gpus=1, workers=0)}, 422, "body.spec.workers"),
    ("too many workers", "member-sakura", "POST", "/jobs", {"json": job(gpus=1, workers=5000)}, 422,
     "body.spec.workers: Input should be less than or equal to 4096"),
    ("no GPU at all", "member-sakura", "POST", "/jobs", {"json": job(cpu_milli=1000)}, 422,
     "needs at least one GPU or a GPU slice per worker"),
    ("GPUs and a slice", "member-sakura", "POST", "/jobs", {"json": job(gpus=1, gpu_milli=500)}, 422,
     "give either gpus (whole) or gpu_milli (a slice), not both"),
    ("NaN walltime", "member-sakura", "POST", "/jobs",
     {"content": json.dumps(job(gpus=1, walltime_limit_s=float("nan"))).encode(), "headers": RAW}, 422,
     "body.spec.walltime_limit_s"),
    ("command as a string", "member-sakura", "POST", "/jobs", {"json": job(gpus=1, command="rm -rf /")}, 422,
     "body.spec.command"),
    ("array of 200000", "member-sakura", "POST", "/jobs", {"json": {**JOB, "array": 200_000}}, 422,
     "body.array: Input should be less than or equal to 100000"),
    ("array of 0", "member-sakura", "POST", "/jobs", {"json": {**JOB, "array": 0}}, 422, "body.array"),
    ("array of -3", "member-sakura", "POST", "/jobs", {"json": {**JOB, "array": -3}}, 422, "body.array"),
    ("empty batch", "member-sakura", "POST", "/jobs/batch",
     {"json": {"project": "sakura", "queue": "h200", "specs": []}}, 422, "body.specs"),
    ("batch of 100001", "member-sakura", "POST", "/jobs/batch",
     {"json": {"project": "sakura", "queue": "h200", "specs": [{"gpus": 1}] * 100_001}}, 422,
     "body.specs: List should have at most 100000 items"),
    ("one bad job in a batch", "member-sakura", "POST", "/jobs/batch",
     {"json": {"project": "sakura", "queue": "h200", "specs": [{"gpus": 1}] * 5 + [{"gpus": 99}]}}, 422,
     "body.specs[5].gpus"),
    ("body over 10 MiB", "member-sakura", "POST", "/jobs/batch",
     {"json": {"project": "sakura", "queue": "h200", "specs": [{"gpus": 1, "command": ["x" * 100]}] * 100_000}},
     413, "larger than 10 MiB"),
    ("deeply nested JSON", "member-sakura", "POST", "/jobs", {"content": b"[" * 100_000, "headers": RAW}, 400,
     "error parsing the body"),
    ("unknown project", "member-sakura", "POST", "/jobs", {"json": {**JOB, "project": "nope"}}, 404,
     "project 'nope' not found"),
    ("unknown queue", "member-sakura", "POST", "/jobs", {"json": {**JOB, "queue": "nope"}}, 404,
     "queue 'nope' not found"),
    ("another project", "member-tsubame", "POST", "/jobs", {"json": JOB}, 403, "may not jobs submit"),
    ("missing token", None, "POST", "/jobs", {"json": JOB}, 401, "missing bearer token"),
    ("revoked token", None, "POST", "/jobs", {"json": JOB, "headers": {"Authorization": "Bearer REVOKED"}}, 401,
     "unknown or revoked token"),
    ("bad name", "admin", "POST", "/programmes", {"json": {"name": "has space"}}, 422, "body.name"),
    ("NUL in a name", "admin", "POST", "/clusters", {"json": {"name": "a\x00b", "region": "x"}}, 422, "body.name"),
    ("NUL in a query", "admin", "GET", "/jobs", {"params": {"user": "a\x00b"}}, 422, "query.user"),
    ("node with 0 GPUs", "admin", "POST", "/nodes",
     {"json": {"name": "n", "cluster": "east", "gpu_model": "h200", "gpus": 0}}, 422, "body.gpus"),
    ("node with 65 GPUs", "admin", "POST", "/nodes",
     {"json": {"name": "n", "cluster": "east", "gpu_model": "h200", "gpus": 65}}, 422, "body.gpus"),
    ("negative quota", "admin", "POST", "/queues", {"json": {"name": "q", "quota": {"gpu.h200": {"nominal": -1}}}},
     422, "body.quota.gpu.h200.nominal"),
    ("unknown flavor", "admin", "POST", "/queues", {"json": {"name": "q", "quota": {"tpu": {"nominal": 1}}}}, 422,
     "body.quota.tpu"),
    ("limit 0", "admin", "GET", "/jobs", {"params": {"limit": 0}}, 422, "query.limit"),
    ("limit 5000", "admin", "GET", "/jobs", {"params": {"limit": 5000}}, 422, "query.limit"),
    ("unknown state", "admin", "GET", "/jobs", {"params": {"state": "sleeping"}}, 422, "query.state"),
    ("forged cursor", "admin", "GET", "/jobs", {"params": {"cursor": "YmVmb3JlOjE"}}, 422, "cursor"),
    ("overflowing cursor", "admin", "GET", "/jobs",
     {"params": {"cursor": base64.urlsafe_b64encode(b"after:" + b"9" * 30).decode()}}, 422, "cursor"),
    ("malformed job id", "admin", "GET", "/jobs/drop-table", {}, 422, "path.job_id"),
    ("huge token id", "admin", "DELETE", "/tokens/100000000000000000000", {}, 422, "path.token_id"),
    ("naive usage time", "admin", "GET", "/usage", {"params": {"since": "2025-04-01T00:00:00"}}, 422, "query.since"),
    ("usage window backwards", "admin", "GET", "/usage",
     {"params": {"since": "2025-04-02T00:00:00Z", "until": "2025-04-01T00:00:00Z"}}, 422, "must be before"),
    ("negative audit cursor", "admin", "GET", "/audit", {"params": {"after": -1}}, 422, "query.after"),
    ("log of attempt 0", "admin", "GET", "/jobs/j-000006/logs", {"params": {"attempt": 0}}, 422, "query.attempt"),
]


@pytest.fixture(scope="module")
def revoked(shared_api: Api) -> str:
    with shared_api.store.session() as s:
        row, plaintext = TokenRepository(s).create("mo", "old", now=T0)
        TokenRepository(s).revoke(row.id, now=T0)
    return plaintext


@pytest.mark.parametrize(("role", "method", "path", "kwargs", "status", "detail"),
                         [pytest.param(*case[1:], id=case[0]) for case in CASES])
def test_bad_input_is_a_clear_4xx_and_writes_nothing(
    shared_api: Api, revoked: str, role: str | None, method: str, path: str, kwargs: dict[str, Any], status: int,
    detail: str,
) -> None:  # fmt: skip
    api = shared_api
    if "headers" in kwargs and kwargs["headers"].get("Authorization") == "Bearer REVOKED":
        kwargs = {**kwargs, "headers": {"Authorization": f"Bearer {revoked}"}}
    before = api.count(Job), api.count(AuditEntry)
    r = api.call(role, method, path, **kwargs)
    assert r.status_code == status, r.text[:500]
    assert r.headers["content-type"] == PROBLEM
    assert detail in r.json()["detail"], r.json()["detail"]
    assert (api.count(Job), api.count(AuditEntry)) == before
