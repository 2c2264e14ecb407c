"""End to end: ``kumo up`` as a real server process, jobs as real local processes, over HTTP.

The server is killed with SIGKILL while a job runs and started again on the same data directory:
every accepted job is still there, the running one is adopted, and nothing runs twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, data: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
        env.pop("KUMO_DATABASE_URL", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kumo.cli.app", "up", "--port", str(self.port), "--data-dir", str(data),
             "--lease-ttl", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
        self.token: str | None = None
        deadline = time.monotonic() + 60
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("admin token"):
                self.token = line.rsplit(" ", 1)[-1].strip()
            if line.startswith("kumo is up"):
                break
            assert line or self.proc.poll() is None, "kumo up exited early"
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("kumo up never answered /healthz")

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def data(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    for state in (tmp_path / "state").glob("*.json"):  # never leave a test's processes behind
        for w in json.loads(state.read_text()).get("workers", []):
            with contextlib.suppress(ProcessLookupError, PermissionError, KeyError):
                os.killpg(w["pgid"], signal.SIGKILL)


def api(server: Server, token: str, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, f"{server.url}/api/v1{path}", headers={"Authorization": f"Bearer {token}"},
                         timeout=10, **kw)


def wait_state(server: Server, token: str, job: str, states: set[str], timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = api(server, token, "GET", f"/jobs/{job}").json()
        if body["state"] in states:
            return dict(body)
        time.sleep(0.2)
    raise AssertionError(f"job {job} never reached {states}")


def test_submit_run_succeed_then_survive_a_sigkill(data: Path) -> None:
    server = Server(data)
    token = server.token
    assert token is not None and token.startswith("kumo_")
    try:
        spec = {"gpus": 1, "command": [sys.executable, "-c", "print('hello from kumo')"]}
        r = api(server, token, "POST", "/jobs", json={"project": "lab-agents", "queue": "research", "spec": spec})
        assert r.status_code == 201, r.text
        [quick] = r.json()["ids"]
        assert wait_state(server, token, quick, {"succeeded", "failed"})["state"] == "succeeded"
        assert "hello from kumo" in api(server, token, "GET", f"/jobs/{quick}/logs").text
        marker = data / "ran.txt"
        code = f"import time; open({str(marker)!r}, 'a').write('x'); time.sleep(8)"
        r = api(server, token, "POST", "/jobs", json={"project": "lab-agents", "queue": "research",
                                                      "spec": {"gpus": 1, "command": [sys.executable, "-c", code]}})
        [slow] = r.json()["ids"]
        wait_state(server, token, slow, {"running"})
        deadline = time.monotonic() + 10
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        server.kill()  # mid-run
        server = Server(data)
        assert server.token is None  # the admin token is shown only on the first start
        listed = api(server, token, "GET", "/jobs").json()["items"]
        assert {quick, slow} <= {j["id"] for j in listed}  # every accepted job is still there
        final = wait_state(server, token, slow, {"succeeded", "failed", "cancelled"}, timeout_s=40)
        assert final["attempts"] == 1  # adopted, not started again
        # the new server adopted processes it did not start: their exit status is unknown to it, so
        # the job ends saying so rather than running a second time (see docs/concepts/control-loop.md)
        assert final["state"] == "failed" and final["reason"].startswith("exit status unknown")
        assert marker.read_text() == "x"  # it ran once
        kinds = [e["kind"] for e in api(server, token, "GET", f"/jobs/{slow}/events").json()["items"]]
        assert "adopted" in kinds
    finally:
        server.kill()
