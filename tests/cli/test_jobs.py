"""``kumo submit``, ``kumo jobs`` and friends, against the real app over a seeded SQLite store (in process)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

import kumo.cli.jobs as cli_jobs
from kumo.cli.app import app
from kumo.sdk import Client
from kumo.store import JobRepository
from tests.api.conftest import RUNNING, SUCCEEDED, Api, seeded_api

runner = CliRunner()


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    with seeded_api("sqlite", tmp_path) as made:
        monkeypatch.setattr(cli_jobs, "make_client", lambda url, token: Client(url, token, client=made.client))
        yield made


def kumo(api: Api, role: str | None, *args: str) -> Result:
    env: dict[str, str | None] = {"COLUMNS": "200", "KUMO_URL": None,
                                  "KUMO_TOKEN": api.tokens[role] if role else None}
    return runner.invoke(app, list(args), env=env)


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def one_line_error(result: Result) -> str:
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_submit_an_array_then_list_it(api: Api) -> None:
    r = kumo(api, "member-sakura", "submit", "--project", "sakura", "--queue", "h200", "--gpus", "1",
             "--array", "3", "--json", "--", "python", "train.py", "--lr", "3e-4")
    assert as_json(r) == {"count": 3, "ids": ["j-000008", "j-000009", "j-000010"]}
    job = as_json(kumo(api, "member-sakura", "show", "j-000010", "--json"))
    assert job["spec"] == {"gpus": 1, "command": ["python", "train.py", "--lr", "3e-4"]}
    listed = as_json(kumo(api, "member-sakura", "jobs", "--json"))
    assert [j["id"] for j in listed] == ["j-000001", "j-000002", "j-000003", RUNNING,
                                         "j-000008", "j-000009", "j-000010"]
    running = as_json(kumo(api, "member-sakura", "jobs", "--state", "running", "--json"))
    assert [(j["id"], j["state"], j["attempts"]) for j in running] == [(RUNNING, "running", 1)]

    table = kumo(api, "admin", "jobs", "--project", "tsubame")
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert [c.strip() for c in lines[1].split("┃")[1:-1]] == ["id", "project", "queue", "state", "attempts", "reason"]
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in lines if line.startswith("│")]
    assert rows == [["j-000004", "tsubame", "h200", "pending", "0", ""],
                    ["j-000005", "tsubame", "h200", "pending", "0", ""],
                    [SUCCEEDED, "tsubame", "h200", "succeeded", "1", ""]]

    plain = kumo(api, "member-sakura", "submit", "--project", "sakura", "--queue", "h200", "--workers", "2",
                 "--gpus", "8", "--priority", "5", "--walltime-limit", "3600", "--", "torchrun", "train.py")
    assert (plain.exit_code, plain.stdout) == (0, "submitted j-000011\n")
    assert as_json(kumo(api, "member-sakura", "show", "j-000011", "--json"))["spec"] == {
        "workers": 2, "gpus": 8, "priority": 5, "walltime_limit_s": 3600.0, "command": ["torchrun", "train.py"]}


def test_jobs_pages_through_everything(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    pages: list[str] = []
    api.client.event_hooks["request"].append(lambda r: pages.append(r.url.params.get("cursor", "first")))
    monkeypatch.setattr(Client, "jobs", _small_pages(Client.jobs))
    listed = as_json(kumo(api, "admin", "jobs", "--json"))
    assert [j["id"] for j in listed] == [f"j-{i:06d}" for i in range(1, 8)]
    assert len(pages) == 4 and pages[0] == "first"


def _small_pages(jobs: Any) -> Any:
    return lambda self, *args, **kwargs: jobs(self, *args, **{**kwargs, "limit": 2})


def test_submit_from_a_file_with_flags_overriding(api: Api, tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("project: sakura\nqueue: h200\ngpus: 4\nworkers: 2\narray: 2\n"
                    "command: [python, train.py]\nenv: {SEED: '1'}\n")
    r = kumo(api, "member-sakura", "submit", "--file", str(path), "--gpus", "8", "--json")
    assert as_json(r) == {"count": 2, "ids": ["j-000008", "j-000009"]}
    assert as_json(kumo(api, "member-sakura", "show", "j-000009", "--json"))["spec"] == {
        "gpus": 8, "workers": 2, "command": ["python", "train.py"], "env": {"SEED": "1"}}


def test_bad_job_files_are_one_line(api: Api, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("project: sakura\nqueue: [h200\n")
    line = one_line_error(kumo(api, "member-sakura", "submit", "--file", str(broken)))
    assert line.startswith(f"error: {broken}: not valid YAML (line ")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("project: sakura\nqueue: h200\ngpu: 1\n")
    line = one_line_error(kumo(api, "member-sakura", "submit", "--file", str(unknown)))
    assert line.startswith(f"error: {unknown}: unknown keys gpu; known: project, queue, array, workers, gpus")
    listed = tmp_path / "list.yaml"
    listed.write_text("- gpus: 1\n")
    assert one_line_error(kumo(api, "member-sakura", "submit", "--file", str(listed))).endswith("not a list")
    missing = tmp_path / "missing.yaml"
    assert one_line_error(kumo(api, "member-sakura", "submit", "--file", str(missing))).startswith(
        f"error: {missing}: cannot read")
    assert one_line_error(kumo(api, "member-sakura", "submit", "--queue", "h200", "--", "true")) == (
        "error: --project required (as flags or in --file)")
    assert one_line_error(kumo(api, "member-sakura", "submit", "--project", "sakura", "--queue", "h200",
                               "--gpus", "65")) == (
        "error: body.spec.gpus: Input should be less than or equal to 64 (HTTP 422)")


def test_cancel_why_and_logs(api: Api, tmp_path: Path) -> None:
    r = kumo(api, "member-sakura", "cancel", "j-000002")
    assert (r.exit_code, r.stdout) == (0, "cancellation of j-000002 requested (state pending)\n")
    assert as_json(kumo(api, "member-sakura", "show", "j-000002", "--json"))["cancel_requested"] is True
    assert one_line_error(kumo(api, "admin", "cancel", SUCCEEDED)) == (
        f"error: job '{SUCCEEDED}' has already ended (succeeded); nothing to cancel (HTTP 409)")

    with api.store.session() as s:
        job = JobRepository(s).get("j-000003")
        JobRepository(s).transition(job.id, job.version, reason="quota: needs 16 gpu.h200; queue h200 holds 2/16")
    r = kumo(api, "member-sakura", "why", "j-000003")
    assert (r.exit_code, r.stdout) == (0, "j-000003 pending: quota: needs 16 gpu.h200; queue h200 holds 2/16\n")
    assert as_json(kumo(api, "member-sakura", "why", "j-000003", "--json")) == {
        "job": "j-000003", "state": "pending", "reason": "quota: needs 16 gpu.h200; queue h200 holds 2/16"}

    r = kumo(api, "member-sakura", "logs", RUNNING, "--attempt", "1", "--rank", "0")
    assert (r.exit_code, r.stdout) == (0, "hello\n")
    assert one_line_error(kumo(api, "member-sakura", "logs", RUNNING, "--rank", "3")) == (
        f"error: no log yet for job '{RUNNING}', attempt 1, rank 3 (HTTP 404)")
    with api.store.session() as s:
        JobRepository(s).end_attempt(RUNNING, 2, "failed", now=api.clock.now, exit_code=1)
    r = kumo(api, "member-sakura", "logs", RUNNING, "-f")
    assert (r.exit_code, r.stdout) == (0, "hello\n")
    assert as_json(kumo(api, "member-sakura", "logs", RUNNING, "-f", "--json")) == {"line": "hello"}


def test_another_projects_job_and_missing_token(api: Api) -> None:
    for command in ("show", "cancel", "why", "logs"):
        assert one_line_error(kumo(api, "member-tsubame", command, "j-000001")) == (
            "error: job 'j-000001' not found (HTTP 404)")
    line = one_line_error(kumo(api, None, "jobs"))
    assert line.startswith("error: missing bearer token") and line.endswith(
        "(pass --token or set KUMO_TOKEN) (HTTP 401)")
    r = kumo(api, None, "jobs", "--token", api.tokens["member-tsubame"], "--json")
    assert [j["id"] for j in as_json(r)] == ["j-000004", "j-000005", SUCCEEDED]


def test_unreachable_server_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_jobs, "make_client", lambda url, token: Client(url, token))
    r = runner.invoke(app, ["nodes", "--url", "http://127.0.0.1:1", "--token", "kumo_x"])
    assert one_line_error(r).startswith("error: cannot reach the kumo server at http://127.0.0.1:1: ")


def test_nodes_queues_usage_and_audit(api: Api) -> None:
    nodes = as_json(kumo(api, "viewer", "nodes", "--json"))
    assert [(n["name"], n["cluster"], n["gpus"], n["state"]) for n in nodes] == [
        ("east-0", "east", 8, nodes[0]["state"]), ("east-1", "east", 8, nodes[1]["state"])]
    table = kumo(api, "viewer", "nodes")
    assert table.exit_code == 0 and "east-0" in table.stdout and "japan-east" in table.stdout
    assert as_json(kumo(api, "viewer", "queues", "--json")) == [{"name": "h200", "cohort": None, "quota": {
        "gpu.h200": {"nominal": 16, "borrowing_limit": 8, "lending_limit": None}}}]
    assert "h200" in kumo(api, "viewer", "queues").stdout
    usage = as_json(kumo(api, "admin", "usage", "--project", "tsubame", "--json"))
    assert usage["items"] == [{"project": "tsubame", "gpu_model": "h200", "gpu_hours": 2.0}]
    table = kumo(api, "admin", "usage", "--project", "tsubame")
    assert table.exit_code == 0 and "2.00" in table.stdout
    assert as_json(kumo(api, "admin", "audit", "verify", "--json")) == {"ok": True, "problems": []}
    r = kumo(api, "admin", "audit", "verify")
    assert (r.exit_code, r.stdout) == (0, "audit log ok\n")
    assert one_line_error(kumo(api, "member-sakura", "audit", "verify")).endswith("needs the admin role (HTTP 403)")
    assert as_json(kumo(api, "admin", "audit-verify", "--json"))["ok"] is True  # the old spelling still works


def test_url_and_token_given_once_before_the_command(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str | None]] = []

    def make(url: str, token: str | None) -> Client:
        seen.append((url, token))
        return Client(url, token, client=api.client)

    monkeypatch.setattr(cli_jobs, "make_client", make)
    admin, member = api.tokens["admin"], api.tokens["member-sakura"]
    r = kumo(api, None, "--url", "http://kumo.example:9000", "--token", admin, "audit", "verify", "--json")
    assert as_json(r) == {"ok": True, "problems": []}
    assert seen[-1] == ("http://kumo.example:9000", admin)
    # a command's own option wins over the root's; the root's over the environment
    r = kumo(api, "member-sakura", "--token", admin, "jobs", "--token", member, "--json")
    assert {j["project"] for j in as_json(r)} == {"sakura"} and seen[-1][1] == member
    r = kumo(api, "member-sakura", "--token", admin, "jobs", "--json")
    assert {j["project"] for j in as_json(r)} == {"sakura", "tsubame"} and seen[-1] == ("http://127.0.0.1:8080", admin)
