"""End to end: ``kumo up`` as a real server process, jobs as real local processes, over HTTP.

The server is killed with SIGKILL while a job runs and started again on the same data directory:
every accepted job is still there, the running one is adopted, and nothing runs twice.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tests.e2e._server import Server, api, wait_state


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
        # the new server adopted processes it did not start; their keepers recorded the exit code
        # (see docs/concepts/executors.md), so the job succeeds as if the server had never died
        assert (final["state"], final["exit_code"]) == ("succeeded", 0), final
        assert marker.read_text() == "x"  # it ran once
        kinds = [e["kind"] for e in api(server, token, "GET", f"/jobs/{slow}/events").json()["items"]]
        assert "adopted" in kinds
    finally:
        server.kill()
